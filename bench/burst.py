"""Burst coalescing: N BlobCreated events for one model through the local host (a real process,
Azurite) inside one batching window -> how many retraining jobs start (target: 1), and the
events/s the host sustained.

    python bench/burst.py [--events 10000] [--clients 8] [--batch 50] [--window 240]

The window must outlast the delivery, or the burst is (correctly) split into several windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.adapters.local_eventgrid import EventGridEmulator
from core.bootstrap import build
from core.settings import Settings
from embedded.azurite import Azurite
from embedded.blob_events import blob_created_event
from tests.conftest import HostProcess, base_env, unique_prefix


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--window", type=int, default=240)
    args = parser.parse_args()
    policy = {"diabetes": {"container": "data", "prefix": "diabetes/", "test_container": "data",
                           "test_blob": "holdout/diabetes.csv", "window_seconds": args.window,
                           "min_new_files": 1, "cooldown_seconds": 0}}
    azurite = Azurite.on_free_ports().start()
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(REACTOR_LOG_LEVEL="WARNING", REACTOR_RETRAIN_POLICIES=json.dumps(policy),
               REACTOR_RETRAIN_TICK_SCHEDULE="*/1 * * * * *")
    host = HostProcess(env)
    services = build(Settings.from_env(env))
    try:
        now = datetime.now(timezone.utc)
        events = [blob_created_event(container="data", name=f"diabetes/burst/{i}.csv", etag=f'"0x{i:x}"',
                                     size=1000, content_type="text/csv", sequence=i, when=now,
                                     url=f"http://127.0.0.1/devstoreaccount1/data/diabetes/burst/{i}.csv")
                  for i in range(args.events)]
        batches = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
        failures: list[int] = []

        def client(share: list[list[dict]]) -> None:
            grid = EventGridEmulator(host.url, batch_size=args.batch)
            for batch in share:
                failures.extend(d.status for d in grid.publish(batch) if not d.ok)

        threads = [threading.Thread(target=client, args=(batches[i::args.clients],)) for i in range(args.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        delivery = time.perf_counter() - start
        started_during = _jobs(services)
        deadline = time.monotonic() + args.window + 30
        while not _jobs(services) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3)  # a tick or two more: no second job may start
        jobs = _jobs(services)
    finally:
        host.stop()
        azurite.stop()
    print(f"burst: {args.events} BlobCreated events for one model, {args.clients} clients x {args.batch} per request,"
          f" window {args.window} s")
    print(f"  delivered in {delivery:.1f} s: {args.events / delivery:.0f} events/s sustained, "
          f"{len(failures)} failed deliveries")
    print(f"  jobs started while the window was open: {len(started_during)}; after it closed: {len(jobs)} "
          f"(target 1) with {jobs[0]['detail']['trigger_count'] if jobs else 0} triggers")
    print(f"  delivered within 60 s: {'yes' if delivery <= 60 else 'NO'} ({60 / delivery:.2f} of target pace)")


def _jobs(services) -> list[dict]:
    return [r for r in services.ledger.audit_records({"model": "diabetes"}) if r["action"] == "retrain.started"]


if __name__ == "__main__":
    main()
