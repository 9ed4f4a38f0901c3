"""The Event Grid functions called directly, as the worker calls them, on Azurite."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

import function_app
from core.bootstrap import Services
from core.errors import EventInFlight
from core.ledger import DeadLetter, event_key
from tests.payloads import FUNCTION_OF, SAMPLES, sample, to_cloudevent

pytestmark = pytest.mark.integration
USER_FUNCTIONS = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}


def decoded(raw: dict) -> func.EventGridEvent | func.CloudEvent:
    """The trigger object exactly as the Python worker decodes it."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(raw), "json"), trigger_metadata={})


def record(services: Services, function: str, raw: dict) -> dict | None:
    source = str(raw.get("topic") or raw.get("source"))
    kind = str(raw.get("eventType") or raw.get("type"))
    entity = services.ledger.event_record(function, event_key(source, kind, raw["id"]))
    return None if entity is None else dict(entity.props)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_each_event_type_is_recorded(services: Services, kind: str, schema: str) -> None:
    raw = sample(kind)
    raw = raw if schema == "eventgrid" else to_cloudevent(raw)
    function = FUNCTION_OF[kind]
    USER_FUNCTIONS[function](decoded(raw))
    stored = record(services, function, raw)
    assert stored is not None and stored["status"] == "done"
    assert stored["event_id"] == raw["id"]
    [audit] = services.ledger.audit_records({"event_id": raw["id"]})
    assert audit["action"] == "event.processed" and audit["function"] == function


def test_duplicates_make_one_record(services: Services) -> None:
    raw = sample("ModelRegistered")
    for _ in range(3):
        USER_FUNCTIONS["on_model_registered"](decoded(raw))
    actions = [a["action"] for a in services.ledger.audit_records({"event_id": raw["id"]})]
    assert actions.count("event.processed") == 1
    assert actions.count("event.duplicate") == 2


def test_concurrent_deliveries_of_one_event_process_once(services: Services) -> None:
    raw = sample("BlobCreated")
    barrier = threading.Barrier(4)
    told_to_retry: list[EventInFlight] = []

    def deliver() -> None:
        barrier.wait()
        try:
            USER_FUNCTIONS["on_blob_created"](decoded(raw))
        except EventInFlight as exc:  # a loser that saw the winner still at work: Event Grid retries it
            told_to_retry.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    actions = [a["action"] for a in services.ledger.audit_records({"event_id": raw["id"]})]
    assert actions.count("event.processed") == 1
    assert len(actions) == 4
    assert told_to_retry == [] and actions.count("event.duplicate") == 3, "the copies waited for the winner"


def test_an_event_claimed_by_a_dead_delivery_fails_until_the_lease_runs_out_then_is_processed(
        services: Services) -> None:
    """A host that died mid-event leaves its claim under lease: a redelivery then must not be
    answered 2xx (Event Grid would stop retrying and the event would never be processed)."""
    raw = sample("ModelRegistered")
    function = "on_model_registered"
    key = event_key(str(raw["topic"]), str(raw["eventType"]), raw["id"])
    claim = services.ledger.claim(function, key, {"event_id": raw["id"]}, "the-delivery-that-died")
    assert claim.state == "won"
    with pytest.raises(EventInFlight):
        USER_FUNCTIONS[function](decoded(raw))
    assert (record(services, function, raw) or {})["status"] == "processing"
    expired = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    entity = services.ledger.event_record(function, key)
    assert entity is not None
    services.store.update(services.ledger.events_table, function, key, {"lease_until": expired}, entity.etag)
    USER_FUNCTIONS[function](decoded(raw))  # Event Grid's next retry, after the lease
    assert (record(services, function, raw) or {})["status"] == "done"
    actions = [a["action"] for a in services.ledger.audit_records({"event_id": raw["id"]})]
    assert actions.count("event.processed") == 1 and actions.count("event.in_flight") == 1


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e["data"].pop("ModelName"), "data.ModelName"),
    (lambda e: e["data"].update(ModelVersion={"v": 1}), "data.ModelVersion"),
    (lambda e: e.update(topic="/subscriptions/x/resourceGroups/y/providers/Contoso.Evil/things/z"), "topic"),
])
def test_invalid_events_become_dead_letters(services: Services, mutate, field: str) -> None:
    raw = sample("ModelRegistered")
    mutate(raw)
    USER_FUNCTIONS["on_model_registered"](decoded(raw))
    letters = [d for d in services.ledger.dead_letters("on_model_registered") if d.event_id == raw["id"]]
    [letter] = letters
    assert letter.field == field
    kept = json.loads(services.ledger.dead_letter_payload(letter))
    assert kept["id"] == raw["id"] and kept["data"] == raw["data"]
    assert record(services, "on_model_registered", raw) is None, "a rejected event is not claimed"


def test_event_for_another_function_is_dead_lettered(services: Services) -> None:
    raw = sample("BlobCreated")
    USER_FUNCTIONS["on_model_registered"](decoded(raw))
    [letter] = [d for d in services.ledger.dead_letters("on_model_registered") if d.event_id == raw["id"]]
    assert letter.field == "type" and "not handled by on_model_registered" in letter.reason


def test_handler_failure_is_recorded_and_kept(services: Services) -> None:
    from core.events import DatasetDriftDetected

    def explode(event, ctx):
        raise RuntimeError("platform unreachable")

    services.intake.handle(DatasetDriftDetected, explode)
    raw = sample("DatasetDriftDetected")
    USER_FUNCTIONS["on_drift_detected"](decoded(raw))  # no exception escapes
    stored = record(services, "on_drift_detected", raw)
    assert stored is not None and stored["status"] == "failed"
    [letter] = [d for d in services.ledger.dead_letters("on_drift_detected") if d.event_id == raw["id"]]
    assert "platform unreachable" in letter.reason


def test_health_reports_reachable_storage(services: Services) -> None:
    req = func.HttpRequest("GET", "/api/health", body=b"")
    resp = USER_FUNCTIONS["health"](req)
    assert resp.status_code == 200
    assert json.loads(resp.get_body()) == {"status": "healthy", "storage": "reachable"}


def test_health_names_bad_settings_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import bootstrap

    bootstrap.install(None)
    monkeypatch.setenv("REACTOR_STORAGE_CONNECTION", "")
    monkeypatch.setenv("REACTOR_STORAGE_ACCOUNT", "")
    monkeypatch.setenv("REACTOR_STORAGE_EVENT_SOURCES", "x")
    monkeypatch.setenv("REACTOR_ML_EVENT_SOURCES", "x")
    resp = USER_FUNCTIONS["health"](func.HttpRequest("GET", "/api/health", body=b""))
    assert resp.status_code == 503
    assert "REACTOR_STORAGE_CONNECTION" in json.loads(resp.get_body())["settings"][0]
    bootstrap.install(None)


def test_three_deliveries_one_side_effect(services: Services) -> None:
    from core.events import ModelRegistered

    effects: list[str] = []

    def act(event, ctx):
        effects.append(event.id)
        return {"action": "counted"}

    services.intake.handle(ModelRegistered, act)
    raw = sample("ModelRegistered")
    for _ in range(3):
        USER_FUNCTIONS["on_model_registered"](decoded(raw))
    assert effects == [raw["id"]]


@dataclass
class FailedDelivery:
    """A drift event whose handler failed (the platform was down), kept as a dead letter."""

    letter: DeadLetter
    raw: dict
    effects: list[str]
    fail: dict[str, bool]


def failed_delivery(services: Services) -> FailedDelivery:
    from core.events import DatasetDriftDetected

    effects: list[str] = []
    fail = {"now": True}

    def flaky(event, ctx):
        if fail["now"]:
            raise ConnectionError("ML platform down")
        effects.append(event.id)
        return {"action": "retrained"}

    services.intake.handle(DatasetDriftDetected, flaky)
    raw = sample("DatasetDriftDetected")
    USER_FUNCTIONS["on_drift_detected"](decoded(raw))
    [letter] = [d for d in services.ledger.dead_letters("on_drift_detected") if d.event_id == raw["id"]]
    return FailedDelivery(letter, raw, effects, fail)


def test_failed_event_replays_once_after_the_fault_is_gone(services: Services) -> None:
    failed = failed_delivery(services)
    letter, raw, effects = failed.letter, failed.raw, failed.effects
    failed.fail["now"] = False
    first = services.intake.replay(letter.id, actor="ops@example.com")
    second = services.intake.replay(letter.id, actor="ops@example.com")
    assert (first.status, second.status) == ("processed", "duplicate")
    assert effects == [raw["id"]]
    replayed = services.ledger.get_dead_letter(letter.id)
    assert replayed is not None and replayed.status == "replayed"


def test_invalid_event_replays_still_invalid_and_stays_pending(services: Services) -> None:
    raw = sample("ModelRegistered")
    del raw["data"]["ModelName"]
    USER_FUNCTIONS["on_model_registered"](decoded(raw))
    [letter] = [d for d in services.ledger.dead_letters("on_model_registered") if d.event_id == raw["id"]]
    assert services.intake.replay(letter.id, actor="ops").status == "dead_lettered"
    still = services.ledger.get_dead_letter(letter.id)
    assert still is not None and still.status == "pending"
    with pytest.raises(KeyError):
        services.intake.replay("on_model_registered/nope", actor="ops")


def test_deeply_nested_data_is_dead_lettered_not_raised(services: Services) -> None:
    raw = sample("ModelRegistered")
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    raw["data"]["ModelProperties"] = deep
    receipt = services.intake.receive("on_model_registered", raw)
    assert receipt.status == "dead_lettered" and receipt.detail["field"] == "data.ModelProperties"
