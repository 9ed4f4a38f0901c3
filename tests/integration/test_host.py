"""The local host as a real process on loopback, with Azurite: what Event Grid and callers see."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import requests

from core.bootstrap import Services
from tests.conftest import HostProcess
from tests.payloads import FUNCTION_OF, SAMPLES, load, sample, to_cloudevent

pytestmark = pytest.mark.integration
NOTIFY = {"aeg-event-type": "Notification", "Content-Type": "application/json"}


def deliver(host: HostProcess, function: str, body, headers=None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{host.url}/runtime/webhooks/eventgrid", params={"functionName": function},
                         data=data, headers=headers or NOTIFY, timeout=30)


def actions(services: Services, event_id: str) -> list[str]:
    return [a["action"] for a in services.ledger.audit_records({"event_id": event_id})]


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_sample_in_both_schemas_over_http(host: HostProcess, host_services: Services, kind: str) -> None:
    eg = sample(kind)
    ce = to_cloudevent(sample(kind))
    assert deliver(host, FUNCTION_OF[kind], [eg]).status_code == 202
    ce_headers = {"aeg-event-type": "Notification", "Content-Type": "application/cloudevents-batch+json"}
    assert deliver(host, FUNCTION_OF[kind], [ce], ce_headers).status_code == 202
    assert actions(host_services, eg["id"]) == ["event.processed"]
    assert actions(host_services, ce["id"]) == ["event.processed"]


def test_batch_is_split_per_event(host: HostProcess, host_services: Services) -> None:
    batch = [sample("BlobCreated") for _ in range(25)]
    assert deliver(host, "on_blob_created", batch).status_code == 202
    for event in batch:
        assert actions(host_services, event["id"]) == ["event.processed"]


def test_same_event_three_times_one_record(host: HostProcess, host_services: Services) -> None:
    event = sample("ModelRegistered")
    for _ in range(3):
        assert deliver(host, "on_model_registered", [event]).status_code == 202
    assert sorted(actions(host_services, event["id"])) == ["event.duplicate", "event.duplicate",
                                                           "event.processed"]


def test_two_concurrent_deliveries_one_record(host: HostProcess, host_services: Services) -> None:
    event = sample("RunStatusChanged")
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def post() -> None:
        barrier.wait()
        codes.append(deliver(host, "on_run_status_changed", [event]).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [202, 202]
    assert actions(host_services, event["id"]).count("event.processed") == 1


def test_validation_handshake(host: HostProcess) -> None:
    body = load("Microsoft.EventGrid.SubscriptionValidationEvent.eventgrid.json")
    expected = load("Microsoft.EventGrid.SubscriptionValidationEvent.response.json")
    resp = deliver(host, "on_blob_created", body, {"aeg-event-type": "SubscriptionValidation"})
    assert resp.status_code == 200 and resp.json() == expected


def test_cloudevents_options_handshake(host: HostProcess) -> None:
    resp = requests.options(f"{host.url}/runtime/webhooks/eventgrid", timeout=10,
                            headers={"WebHook-Request-Origin": "eventemitter.example.com"})
    assert resp.status_code == 200
    assert resp.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com"


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"\xff\xfe", "body"),
    (b'[1, 2]', "[0]"),
    (b'[{"id": "1", "eventTime": "not a time", "eventType": "x", "topic": "t", "data": {}}]', "[0]"),
])
def test_malformed_bodies_get_400_with_problem(host: HostProcess, body: bytes, field: str) -> None:
    resp = deliver(host, "on_blob_created", body)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["field"] == field


def test_unknown_function_and_event_type_header(host: HostProcess) -> None:
    assert deliver(host, "no_such_function", [sample("BlobCreated")]).status_code == 404
    resp = deliver(host, "on_blob_created", [sample("BlobCreated")], {"aeg-event-type": "Surprise"})
    assert resp.status_code == 400 and resp.json()["field"] == "aeg-event-type"


@pytest.mark.parametrize("case", ["missing field", "wrong type", "unknown type", "unexpected topic"])
def test_invalid_events_are_accepted_and_dead_lettered(host: HostProcess, host_services: Services,
                                                       case: str) -> None:
    event = sample("ModelRegistered")
    if case == "missing field":
        del event["data"]["ModelName"]
    elif case == "wrong type":
        event["data"]["ModelVersion"] = [3]
    elif case == "unknown type":
        event["eventType"] = "Microsoft.MachineLearningServices.ModelRetired"
    else:
        event["topic"] = "/subscriptions/1/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/other"
    assert deliver(host, "on_model_registered", [event]).status_code == 202
    assert actions(host_services, event["id"]) == ["event.rejected"]
    assert any(d.event_id == event["id"] for d in host_services.ledger.dead_letters("on_model_registered"))


def test_two_megabyte_body(host: HostProcess, host_services: Services) -> None:
    event = sample("ModelRegistered")
    event["data"]["ModelProperties"] = {"padding": "x" * (2 * 1024 * 1024)}
    resp = deliver(host, "on_model_registered", [event])
    assert resp.status_code == 202
    assert actions(host_services, event["id"]) == ["event.processed"]


def test_http_routes_and_keys(host: HostProcess, host_env: dict[str, str]) -> None:
    health = requests.get(f"{host.url}/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert requests.post(f"{host.url}/api/health", timeout=10).status_code == 405
    assert requests.get(f"{host.url}/api/nothing-here", timeout=10).status_code == 404
    assert requests.get(f"{host.url}/admin/host/status", timeout=10).status_code == 401
    master = host_env["LOCAL_MASTER_KEY"]
    status = requests.get(f"{host.url}/admin/host/status", headers={"x-functions-key": master}, timeout=10)
    assert status.json()["functions"]["on_blob_created"] == "eventGridTrigger"


def test_run_event_function_by_hand(host: HostProcess, host_env: dict[str, str], host_services: Services) -> None:
    event = sample("DatasetDriftDetected")
    resp = requests.post(f"{host.url}/admin/functions/on_drift_detected", timeout=10,
                         json={"input": json.dumps(event)}, params={"code": host_env["LOCAL_MASTER_KEY"]})
    assert resp.status_code == 202
    assert actions(host_services, event["id"]) == ["event.processed"]
    denied = requests.post(f"{host.url}/admin/functions/on_drift_detected", json={"input": "{}"}, timeout=10,
                           params={"code": host_env["LOCAL_FUNCTION_KEYS"].split(":", 1)[1]})
    assert denied.status_code == 401


def test_no_5xx_and_no_traceback_in_host_log(host: HostProcess) -> None:
    deliver(host, "on_blob_created", [{"id": str(uuid.uuid4())}])
    assert "Traceback" not in host.logs()
