"""Local event sources: the blob watcher standing in for Storage's Event Grid topic, and
``reactor send``, both delivering through the subscriptions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from core.adapters.local_eventgrid import EventGridEmulator
from core.bootstrap import Services
from core.events import BlobCreated, parse_event
from embedded.blob_events import BlobWatcher
from tests.conftest import ROOT, HostProcess
from tests.payloads import FIXTURES
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_uploaded_blob_arrives_once_as_blob_created(host: HostProcess, host_services: Services,
                                                    host_env: dict[str, str]) -> None:
    service = BlobServiceClient.from_connection_string(host_env["REACTOR_STORAGE_CONNECTION"])
    published: list[dict] = []
    grid = EventGridEmulator(host.url)

    def publish(events):
        published.extend(events)
        return grid.publish(events)

    watcher = BlobWatcher(service, publish)
    container = service.get_container_client("data")
    if not container.exists():
        container.create_container()
    container.upload_blob("incoming/batch-1.csv", b"age,sex\n1,2\n", overwrite=True)
    assert watcher.poll() >= 1
    [event] = [e for e in published if e["subject"].endswith("/incoming/batch-1.csv")]
    parsed = parse_event(event)
    assert isinstance(parsed, BlobCreated)
    assert (parsed.container, parsed.blob_name, parsed.content_length) == ("data", "incoming/batch-1.csv", 12)
    assert parsed.url.endswith("/data/incoming/batch-1.csv") and parsed.etag

    def processed() -> list[str]:
        return [a["action"] for a in host_services.ledger.audit_records({"event_id": event["id"]})]

    assert wait_for("the event to be processed", processed, timeout=15) == ["event.processed"]
    # A restarted watcher sees the same blob again: same event id, deduplicated by the app.
    BlobWatcher(service, grid.publish).poll()
    trail = wait_for("the duplicate", lambda: len(processed()) == 2 and processed(), timeout=15)
    assert trail == ["event.processed", "event.duplicate"]


def test_reactor_send_delivers_samples(host: HostProcess, host_services: Services, tmp_path: Path) -> None:
    event = json.loads((FIXTURES / "Microsoft.MachineLearningServices.ModelRegistered.eventgrid.json").read_text())
    event[0]["id"] = "reactor-send-test"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    out = subprocess.run([sys.executable, "-m", "cli.reactor", "--url", host.url, "send", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "on_model_registered" in out.stdout and "HTTP 202" in out.stdout
    records = host_services.ledger.audit_records({"event_id": "reactor-send-test"})
    assert [r["action"] for r in records] == ["event.processed"]


def test_reactor_send_handshake_and_unrouted(host: HostProcess, tmp_path: Path) -> None:
    handshake = FIXTURES / "Microsoft.EventGrid.SubscriptionValidationEvent.eventgrid.json"
    out = subprocess.run([sys.executable, "-m", "cli.reactor", "--url", host.url, "send", str(handshake)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.count("512d38b6-c7b8-40c8-89fe-f46f9e9622b6") == 5
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"eventType": "Contoso.Unknown", "id": "1"}))
    out = subprocess.run([sys.executable, "-m", "cli.reactor", "--url", host.url, "send", str(stray)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no subscription" in out.stderr
