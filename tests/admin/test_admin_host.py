"""The admin routes on a real local host: who may call what, malformed requests, dead-letter
replay, audit lineage and the OpenAPI document. Never a 5xx."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from core.ledger import AuditRecord
from tests.admin.conftest import KEYS, MASTER, MODEL
from tests.payloads import sample

pytestmark = pytest.mark.integration
NO_LETTER = "deadletters/on_blob_created/0123456789abcdef/replay"
READS = ["status", "audit", "deadletters", "openapi.json", "dashboard"]
FORGED = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "operator"},
                                                 {"typ": "name", "val": "mallory"}]}).encode()).decode()

# (method, path, key) -> expected status
MATRIX = [
    *[(("GET", p), key, code) for p in READS
      for key, code in [(None, 401), ("wrong", 401), (KEYS["default"], 200), (KEYS["ops"], 200)]],
    *[(("POST", NO_LETTER), key, code)
      for key, code in [(None, 401), ("wrong", 401), (KEYS["default"], 403), (KEYS["ops"], 404),
                        (KEYS["lead"], 404), (MASTER, 404)]],
]


@pytest.mark.parametrize(("route", "key", "expected"), MATRIX, ids=lambda v: str(v))
def test_authorization_matrix(admin_host, route, key, expected) -> None:
    method, path = route
    resp = admin_host.call(method, path, key)
    assert resp.status_code == expected, resp.text
    if expected >= 400:
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.json()["title"]


@pytest.mark.parametrize("path", [*READS, NO_LETTER])
def test_a_principal_header_is_refused_when_easy_auth_is_off(admin_host, path) -> None:
    method = "POST" if path == NO_LETTER else "GET"
    for principal in (FORGED, "%%%not-base64"):
        resp = admin_host.call(method, path, KEYS["ops"], headers={"X-MS-CLIENT-PRINCIPAL": principal})
        assert resp.status_code == 401, resp.text
        assert resp.json()["field"] == "X-MS-CLIENT-PRINCIPAL"


def test_a_client_cannot_claim_a_key_name(admin_host) -> None:
    resp = admin_host.call("POST", NO_LETTER, KEYS["default"], headers={"X-Reactor-Key-Name": "ops"})
    assert resp.status_code == 403


def test_a_refusal_is_audited_with_the_caller(admin_host, admin_services) -> None:
    admin_host.call("POST", NO_LETTER, KEYS["default"])
    denied = admin_services.ledger.audit_records({"action": "admin.denied"})
    assert denied and denied[-1]["actor"] == "key:default" and denied[-1]["detail"]["needs_role"] == "operator"


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", "audit?limit=abc", "limit"), ("GET", "audit?limit=0", "limit"), ("GET", "audit?limit=5000", "limit"),
    ("GET", "audit?from=yesterday", "from"), ("GET", "audit?to=2024-13-45", "to"),
    ("GET", "audit?colour=blue", "colour"), ("GET", f"audit?version=3&x={'a' * 10}", "x"),
    ("GET", "audit?version=3", "version"), ("GET", "audit?model=%01", "model"),
    ("GET", "deadletters?function=nope", "function"), ("GET", "deadletters?status=weird", "status"),
    ("GET", "deadletters?foo=1", "foo"),
    ("POST", "deadletters/on_blob_created/not-hex!/replay", "id"),
    ("POST", "deadletters/no_such_function/abc/replay", "function"),
])
def test_malformed_requests_name_the_parameter(admin_host, method, path, field) -> None:
    resp = admin_host.call(method, path, KEYS["ops"])
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.json()["field"] == field


def test_status_shows_each_model_and_the_backlog(admin_host) -> None:
    body = admin_host.call("GET", "status", KEYS["default"]).json()
    [model] = body["models"]
    assert model["model"] == MODEL and model["champion"] is None and model["versions"] == []
    assert set(model["retrain"]) >= {"window_id", "pending_files", "in_flight_job", "last_outcome"}
    assert set(body["dead_letters"]) == {"pending", "by_function"}


def deliver(admin_host, function: str, event: dict) -> None:
    resp = requests.post(f"{admin_host.url}/runtime/webhooks/eventgrid", params={"functionName": function},
                         headers={"aeg-event-type": "Notification"}, json=[event], timeout=30)
    assert resp.status_code == 202, resp.text


def test_an_invalid_event_replayed_stays_dead_lettered(admin_host, admin_services) -> None:
    raw = sample("ModelRegistered")
    del raw["data"]["ModelName"]
    deliver(admin_host, "on_model_registered", raw)
    listed = admin_host.call("GET", "deadletters?function=on_model_registered", KEYS["default"]).json()
    [letter] = [d for d in listed["dead_letters"] if d["event_id"] == raw["id"]]
    function, key = letter["id"].split("/")
    for _ in range(2):
        resp = admin_host.call("POST", f"deadletters/{function}/{key}/replay", KEYS["ops"])
        assert resp.status_code == 200 and resp.json()["result"] == "dead_lettered"
    still = admin_services.ledger.get_dead_letter(letter["id"])
    assert still is not None and still.status == "pending"
    replays = [r for r in admin_services.ledger.audit_records({"action": "deadletter.replayed"})
               if r["detail"]["dead_letter"] == letter["id"]]
    assert [r["actor"] for r in replays] == ["key:ops", "key:ops"]


def test_a_version_lineage_comes_in_order(admin_host, admin_services) -> None:
    ledger, model, decision = admin_services.ledger, "lineage-model", "d" * 32
    for event_id in ("data-1", "data-2"):
        ledger.audit(AuditRecord("event.processed", f"k-{event_id}", function="on_blob_created", event_id=event_id))
    ledger.audit(AuditRecord("retrain.started", decision, model=model,
                             detail={"triggers": ["data-1", "data-2"], "job": "retrain-x"}))
    ledger.audit(AuditRecord("event.processed", decision, function="on_model_registered", event_id="reg-4",
                             model=model, version="4"))
    ledger.audit(AuditRecord("retrain.completed", decision, model=model))
    ledger.audit(AuditRecord("event.processed", "other", function="on_model_registered", model=model, version="5"))
    body = admin_host.call("GET", f"audit?model={model}&version=4", KEYS["default"]).json()
    got = [(r["action"], r["event_id"]) for r in body["records"]]
    assert got == [("event.processed", "data-1"), ("event.processed", "data-2"), ("retrain.started", ""),
                   ("event.processed", "reg-4"), ("retrain.completed", "")]
    limited = admin_host.call("GET", f"audit?model={model}&version=4&limit=2", KEYS["default"]).json()
    assert [r["action"] for r in limited["records"]] == ["event.processed", "retrain.completed"]
    start = body["records"][2]["at"]
    since = admin_host.call("GET", "audit", KEYS["default"],
                            params={"model": model, "version": "4", "from": start}).json()
    assert since["records"][0]["action"] == "retrain.started"


def test_openapi_describes_every_route_the_host_serves(admin_host) -> None:
    doc = admin_host.call("GET", "openapi.json", KEYS["default"]).json()
    status = requests.get(f"{admin_host.url}/admin/host/status", headers={"x-functions-key": MASTER}, timeout=10)
    assert status.status_code == 200
    assert doc["openapi"].startswith("3.0")
    assert {"functionKeyHeader", "functionKeyQuery"} <= set(doc["components"]["securitySchemes"])
    assert {"/health", "/retrain", "/status", "/audit", "/deadletters", "/deadletters/{function}/{key}/replay",
            "/openapi.json", "/dashboard"} <= set(doc["paths"])
