"""The admin handlers called directly (no host): a handler failure replayed once, and the
OpenAPI document held against every route the app registers."""

from __future__ import annotations

import json
from types import ModuleType

import azure.functions as func
import pytest

import function_app
from core.admin import openapi
from core.bootstrap import Services
from functions import admin, dashboard
from tests.functions.test_event_functions import failed_delivery

pytestmark = pytest.mark.integration


def request(method: str, url: str, key_name: str = "master", **kw) -> func.HttpRequest:
    return func.HttpRequest(method, url, headers={"x-reactor-key-name": key_name}, body=b"", **kw)


def test_a_failed_event_replayed_through_the_api_is_processed_once(services: Services) -> None:
    failed = failed_delivery(services)
    letter, raw, effects = failed.letter, failed.raw, failed.effects
    function, key = letter.id.split("/")
    failed.fail["now"] = False
    results = []
    for _ in range(2):
        resp = admin.replay(request("POST", f"/api/deadletters/{function}/{key}/replay",
                                    route_params={"function": function, "key": key}))
        assert resp.status_code == 200
        results.append(json.loads(resp.get_body())["result"])
    assert results == ["processed", "duplicate"] and effects == [raw["id"]]
    replayed = services.ledger.get_dead_letter(letter.id)
    assert replayed is not None and replayed.status == "replayed"
    [first, _] = [r for r in services.ledger.audit_records({"action": "deadletter.replayed"})
                  if r["detail"]["dead_letter"] == letter.id]
    assert first["actor"] == "key:master" and first["detail"]["result"] == "processed"


def test_storage_down_is_a_503_not_a_500(services: Services, monkeypatch) -> None:
    def down(*a, **kw):
        raise ConnectionError("storage unreachable")

    monkeypatch.setattr(services.ledger, "dead_letters", down)
    resp = admin.get_deadletters(request("GET", "/api/deadletters"))
    assert resp.status_code == 503 and resp.mimetype == "application/problem+json"


def test_openapi_covers_every_route_of_the_app() -> None:
    """Every blueprint function_app.py registers (plus the admin ones, until it does)."""
    blueprints = [m.bp for m in vars(function_app).values() if isinstance(m, ModuleType) and hasattr(m, "bp")]
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for bp in {id(b): b for b in (*blueprints, admin.bp, dashboard.bp)}.values():
        app.register_functions(bp)
    routes = {"/" + str(getattr(t, "route", None) or f.get_function_name()).strip("/") for f in app.get_functions()
              if (t := f.get_trigger()) is not None and t.get_binding_name() == "httpTrigger"}
    assert routes == set(openapi.PATHS), "describe every route in core/admin/openapi.py"
