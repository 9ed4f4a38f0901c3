"""Peak memory (RSS) of the local Functions host process: at rest after start, and its high-water
mark after a load of Event Grid deliveries, a retraining decision and the admin reads.

    python bench/host_rss.py [--events 5000]

The host is ``python -m embedded.stack`` (what ``make dev`` runs) against its own Azurite; RSS is
read from /proc/<pid>/status (VmRSS now, VmHWM the peak). Azure's Flex Consumption instances have
512, 2048 or 4096 MB (infra: instanceMemoryMB, 2048 by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.adapters.local_eventgrid import EventGridEmulator
from embedded.azurite import Azurite
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.payloads import sample

POLICY = {"diabetes": {"container": "data", "prefix": "diabetes/", "test_container": "data",
                       "test_blob": "holdout/diabetes.csv", "window_seconds": 1, "min_new_files": 1,
                       "cooldown_seconds": 0}}


def memory_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def blob_event(i: int) -> dict:
    raw = sample("BlobCreated")
    raw["id"] = str(uuid.uuid4())
    raw["subject"] = f"/blobServices/default/containers/data/blobs/diabetes/rss/{i}.csv"
    raw["data"]["url"] = f"https://example.blob.core.windows.net/data/diabetes/rss/{i}.csv"
    return raw


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    azurite = Azurite.on_free_ports().start()
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(REACTOR_LOG_LEVEL="WARNING", REACTOR_RETRAIN_POLICIES=json.dumps(POLICY),
               REACTOR_RETRAIN_TICK_SCHEDULE="*/1 * * * * *", REACTOR_ML_PLATFORM="local")
    host = HostProcess(env)
    try:
        time.sleep(2)  # timers have ticked once: services wired
        rest = memory_mb(host.proc.pid)
        start = time.perf_counter()
        deliveries = EventGridEmulator(host.url, batch_size=100).publish([blob_event(i) for i in range(args.events)])
        took = time.perf_counter() - start
        assert all(d.ok for d in deliveries), [d for d in deliveries if not d.ok][:1]
        key = env["LOCAL_FUNCTION_KEYS"].split(",")[0].partition(":")[2]
        time.sleep(3)  # the window closes: a retraining job is decided and submitted
        for path in ("status", "dashboard", "audit?limit=1000", "releases", "openapi.json"):
            requests.get(f"{host.url}/api/{path}", headers={"x-functions-key": key}, timeout=60).raise_for_status()
        loaded = memory_mb(host.proc.pid)
    finally:
        host.stop()
        azurite.stop()
    print(f"host process RSS (python -m embedded.stack, timers on; 2-core machine, shared): "
          f"at rest {rest['VmRSS']:.0f} MB; after {args.events} events in {took:.1f} s + a retraining "
          f"decision + admin reads: now {loaded['VmRSS']:.0f} MB, peak {loaded['VmHWM']:.0f} MB "
          f"({loaded['VmHWM'] / rest['VmRSS']:.2f}x at rest; Flex Consumption default instance: 2048 MB)")


if __name__ == "__main__":
    main()
