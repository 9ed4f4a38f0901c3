"""The admin routes on a real local host: who may call what, malformed requests, dead-letter
replay, audit lineage, releases (list, show, approve, reject, roll back) and the OpenAPI
document. Never a 5xx."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from core.ledger import AuditRecord
from tests.admin.conftest import KEYS, MASTER, MODEL, OTHER, PENDING, seed_release
from tests.payloads import sample

pytestmark = pytest.mark.integration
NO_LETTER = "deadletters/on_blob_created/0123456789abcdef/replay"
READS = ["status", "audit", "deadletters", "openapi.json", "dashboard"]
FORGED = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "operator"},
                                                 {"typ": "name", "val": "mallory"}]}).encode()).decode()

ANYONE = [(None, 401), ("wrong", 401)]
ROLE = {"reason": "the matrix"}

# (method, path[, body]), key -> expected status
MATRIX = [
    *[(("GET", p), key, code) for p in READS
      for key, code in [*ANYONE, (KEYS["default"], 200), (KEYS["ops"], 200)]],
    *[(("POST", NO_LETTER), key, code)
      for key, code in [*ANYONE, (KEYS["default"], 403), (KEYS["ops"], 404), (KEYS["lead"], 404), (MASTER, 404)]],
    # Releases: reads need a key only; deciding needs approver, rolling back operator or approver.
    # diabetes:7 is pending (no platform answers), so an approver's decision is refused with 409.
    *[(("GET", p), key, code) for p in ("releases", f"releases?model={MODEL}", f"releases/{PENDING}")
      for key, code in [*ANYONE, (KEYS["default"], 200), (KEYS["ops"], 200)]],
    *[(("GET", f"releases/{MODEL}:999"), key, code) for key, code in [*ANYONE, (KEYS["default"], 404)]],
    *[(("POST", f"releases/{PENDING}/approve", {}), key, code)
      for key, code in [*ANYONE, (KEYS["default"], 403), (KEYS["ops"], 403), (KEYS["lead"], 409), (MASTER, 409)]],
    *[(("POST", f"releases/{PENDING}/reject", ROLE), key, code)
      for key, code in [*ANYONE, (KEYS["default"], 403), (KEYS["ops"], 403), (KEYS["lead"], 409), (MASTER, 409)]],
    *[(("POST", f"releases/{MODEL}:999/{action}", ROLE), key, code) for action in ("approve", "reject")
      for key, code in [(KEYS["default"], 403), (KEYS["lead"], 404)]],
    # No production deployment to go back to: 409 for whoever may ask.
    *[(("POST", f"models/{MODEL}/rollback", ROLE), key, code)
      for key, code in [*ANYONE, (KEYS["default"], 403), (KEYS["ops"], 409), (KEYS["lead"], 409), (MASTER, 409)]],
    *[(("POST", "models/no-such-model/rollback", ROLE), key, code)
      for key, code in [(KEYS["default"], 403), (KEYS["ops"], 404)]],
]


@pytest.mark.parametrize(("route", "key", "expected"), MATRIX, ids=lambda v: str(v))
def test_authorization_matrix(admin_host, pending_release, route, key, expected) -> None:
    method, path, *body = route
    resp = admin_host.call(method, path, key, **({"json": body[0]} if body else {}))
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
    assert [m["model"] for m in body["models"]] == sorted([MODEL, OTHER])
    [model] = [m for m in body["models"] if m["model"] == MODEL]
    assert model["model"] == MODEL and model["champion"] is None and model["versions"] == []
    assert set(model["retrain"]) >= {"window_id", "pending_files", "in_flight_job", "last_outcome"}
    assert set(body["dead_letters"]) == {"pending", "by_function"}
    assert body["outbox"] == {"pending": 0}
    # No platform answers: each endpoint says so instead of failing the whole status.
    assert set(model["endpoints"]) == {"qa", "production"}
    assert "ConnectionError" in model["endpoints"]["production"]["error"]


def test_an_invalid_event_replayed_stays_dead_lettered(admin_host, admin_services) -> None:
    raw = sample("ModelRegistered")
    del raw["data"]["ModelName"]
    admin_host.deliver("on_model_registered", raw)
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


# -- releases -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("GET", "releases?state=weird", None, "state"),
    ("GET", "releases/not-a-release-id", None, "release"),
    ("POST", "releases/not-a-release-id/approve", {}, "release"),
    ("POST", f"releases/{PENDING}/approve", b"not json", "body"),
    ("POST", f"releases/{PENDING}/approve", [1], "body"),
    ("POST", f"releases/{PENDING}/approve", {"comment": 5}, "comment"),
    ("POST", f"releases/{PENDING}/reject", {}, "reason"),
    ("POST", f"releases/{PENDING}/reject", b"{", "body"),
    ("POST", f"releases/{PENDING}/reject", {"reason": "   "}, "reason"),
    ("POST", f"releases/{PENDING}/reject", {"reason": "x" * 501}, "reason"),
    ("POST", f"models/{MODEL}/rollback", {"why": "no reason field"}, "reason"),
    ("POST", f"models/{MODEL}/rollback", b"reason=bad", "body"),
    ("POST", f"models/{MODEL}/rollback", None, "body"),
])
def test_malformed_release_requests_name_the_field(admin_host, pending_release, method, path, body, field) -> None:
    sent = {"data": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    resp = admin_host.call(method, path, KEYS["lead"], **sent)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.json()["field"] == field


def test_a_registered_version_is_listed_and_shown_with_its_timeline(admin_host, pending_release) -> None:
    listed = admin_host.call("GET", f"releases?model={MODEL}&state=pending", KEYS["default"]).json()
    assert [r["id"] for r in listed["releases"]] == [PENDING] and listed["count"] == 1
    release = admin_host.call("GET", f"releases/{PENDING}", KEYS["default"]).json()
    assert release["state"] == "pending" and release["deployment"] == "diabetes-v7"
    assert release["timeline"][0]["note"] == "version 7 registered"
    assert admin_host.call("GET", "releases?state=promoted", KEYS["default"]).json()["count"] == 0


def test_a_denied_approval_is_audited_with_the_caller(admin_host, admin_services, pending_release) -> None:
    resp = admin_host.call("POST", f"releases/{PENDING}/approve", KEYS["ops"], json={"comment": "ship it"})
    assert resp.status_code == 403 and resp.json()["field"] == "role"
    denied = [r for r in admin_services.ledger.audit_records({"action": "admin.denied"})
              if r["detail"]["action"] == "approve"]
    assert denied and denied[-1]["actor"] == "key:ops" and denied[-1]["detail"]["needs_role"] == "approver"
    assert admin_services.releases.get(PENDING).state == "pending"


def test_an_approver_decides_releases_awaiting_approval(admin_host, admin_services) -> None:
    approve, reject = seed_release(admin_services, "1"), seed_release(admin_services, "2")
    resp = admin_host.call("POST", f"releases/{approve}/approve", KEYS["lead"], json={"comment": "looks good"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # Approved; the production deploy that follows fails (no platform answers) and waits for the next tick.
    assert body["state"] == "approved" and body["decided_by"] == "key:lead"
    assert body["timeline"][-1]["note"] == "looks good (by key:lead)"
    again = admin_host.call("POST", f"releases/{approve}/approve", KEYS["lead"])
    assert again.status_code == 409 and "not awaiting approval" in again.json()["detail"]
    resp = admin_host.call("POST", f"releases/{reject}/reject", KEYS["lead"], json={"reason": "p95 too high"})
    assert resp.status_code == 200 and resp.json()["state"] == "rejected"
    assert resp.json()["reason"] == "p95 too high"
    decided = [(r["action"], r["actor"]) for r in admin_services.ledger.audit_records({"model": OTHER})
               if r["detail"].get("release") in (approve, reject)
               and r["action"] in ("release.approved", "release.rejected")]
    assert decided == [("release.approved", "key:lead"), ("release.rejected", "key:lead")]


def test_whoever_requested_a_model_may_not_approve_its_release(admin_host, admin_services) -> None:
    rid = seed_release(admin_services, "3", requested_by="key:lead")
    resp = admin_host.call("POST", f"releases/{rid}/approve", KEYS["lead"])
    assert resp.status_code == 403 and "separation of duties" in resp.json()["detail"]
    assert admin_host.call("POST", f"releases/{rid}/approve", MASTER).status_code == 200


def test_a_percent_encoded_release_id_is_decoded_as_azure_does(admin_host, admin_services) -> None:
    """`diabetes%3A1` is `diabetes:1` on the real host; so it must be on ours (and the CLI sends it so)."""
    rid = seed_release(admin_services, "21")
    encoded = rid.replace(":", "%3A")
    shown = admin_host.call("GET", f"releases/{encoded}", KEYS["default"])
    assert shown.status_code == 200, shown.text
    assert shown.json()["id"] == rid
    approved = admin_host.call("POST", f"releases/{encoded}/approve", KEYS["lead"], json={})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    # %2F separates segments in Azure too: the id never reaches the function whole.
    assert admin_host.call("GET", f"releases/{OTHER}%2F21%3A1", KEYS["default"]).status_code == 404
