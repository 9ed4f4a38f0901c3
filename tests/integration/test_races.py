"""Two host processes on the same storage receive the same event stream: one job, not two."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timezone

import pytest

from core.adapters.local_eventgrid import EventGridEmulator
from core.bootstrap import build
from core.settings import Settings
from embedded.blob_events import blob_created_event
from tests.conftest import HostProcess, base_env, unique_prefix

pytestmark = pytest.mark.integration


def test_two_hosts_same_stream_one_job(azurite) -> None:
    policy = {"diabetes": {"container": "data", "prefix": "diabetes/", "test_container": "data",
                           "test_blob": "holdout/diabetes.csv", "window_seconds": 30, "min_new_files": 1,
                           "cooldown_seconds": 0}}
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(REACTOR_RETRAIN_POLICIES=json.dumps(policy), REACTOR_RETRAIN_TICK_SCHEDULE="*/1 * * * * *")
    hosts = [HostProcess(env), HostProcess(env)]
    try:
        now = datetime.now(timezone.utc)
        events = [blob_created_event(container="data", name=f"diabetes/race/{i}.csv", etag=f'"0x{i:x}"', size=10,
                                     content_type="text/csv", sequence=i, when=now,
                                     url=f"http://127.0.0.1/devstoreaccount1/data/diabetes/race/{i}.csv")
                  for i in range(100)]

        def deliver(host: HostProcess, seed: int) -> None:
            stream = events * 2
            random.Random(seed).shuffle(stream)
            assert all(d.ok for d in EventGridEmulator(host.url, batch_size=25).publish(stream))

        threads = [threading.Thread(target=deliver, args=(h, i)) for i, h in enumerate(hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        services = build(Settings.from_env(env))

        def started() -> list[dict]:
            return [r for r in services.ledger.audit_records({"model": "diabetes"})
                    if r["action"] == "retrain.started"]

        deadline = time.monotonic() + 60
        while not started() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # both hosts' timers tick on: still one
        [job] = started()
        assert job["detail"]["trigger_count"] == 100
        processed = [r for r in services.ledger.audit_records({"function": "on_blob_created"})
                     if r["action"] == "event.processed"]
        assert len(processed) == 100, "each event processed once across both hosts"
    finally:
        for host in hosts:
            host.stop()
