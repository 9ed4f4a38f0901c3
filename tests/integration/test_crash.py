"""The host is SIGKILLed in the middle of a burst; a new host gets the redeliveries (Event Grid
retries what was not acknowledged). Every event ends processed once; no claim blocks progress."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from core.adapters.local_eventgrid import EventGridEmulator
from core.bootstrap import build
from core.ledger import event_key
from core.settings import Settings
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.payloads import sample

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kill_after", [0.3, 1.0])
def test_kill_mid_burst_then_redeliver(azurite, kill_after: float) -> None:
    env = base_env(azurite.connection_string, unique_prefix())
    env["REACTOR_CLAIM_LEASE_SECONDS"] = "5"
    events = [sample("BlobCreated") for _ in range(300)]
    for e in events:
        e["id"] = str(uuid.uuid4())
    first = HostProcess(env)
    sender = threading.Thread(target=lambda: EventGridEmulator(first.url, retries=0, batch_size=20).publish(events))
    sender.start()
    time.sleep(kill_after)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    sender.join()
    second = HostProcess(env)
    try:
        time.sleep(5.5)  # the dead host's leases run out
        assert all(d.ok for d in EventGridEmulator(second.url, batch_size=50).publish(events))
    finally:
        second.stop()
    services = build(Settings.from_env(env))
    statuses = [services.ledger.event_record("on_blob_created", event_key(e["topic"], e["eventType"], e["id"]))
                for e in events]
    assert all(s is not None and s.props["status"] == "done" for s in statuses), "every event completed"
    processed = [r["event_id"] for r in services.ledger.audit_records({"function": "on_blob_created"})
                 if r["action"] == "event.processed"]
    assert len(processed) == len(set(processed)), "no event processed twice"
    # The finish and the audit line are one write: no kill can separate them.
    assert set(processed) == {e["id"] for e in events}, "every event has its audit line"
