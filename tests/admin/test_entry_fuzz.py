"""Hostile input against every entry point the app registers (issue 8, item 5), through the real host.

The entry points come from the ``FunctionApp`` object itself, so a function added later is fuzzed
without touching this file: every Event Grid function and every HTTP route with each of its
methods. Route parameters, query strings, bodies and the principal header are hostile (unicode,
huge strings, path tricks, deep nesting, wrong types); the key is valid, forged or missing.
The answer must never be a 5xx, every refusal must be a problem+json naming what is wrong, and
the host must still be serving afterwards. An oversized mixed delivery must have each of its
events either processed or dead-lettered, and the dead letters must replay.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedded.function_index import FunctionIndex, HttpRoute
from tests.admin.conftest import KEYS, MASTER, AdminHost
from tests.apps import load_function_app
from tests.payloads import sample
from tests.unit.test_fuzz_intake import json_values, mutated_samples

pytestmark = pytest.mark.integration


INDEX = FunctionIndex(load_function_app("_fuzz_function_app"))
ROUTES: list[tuple[HttpRoute, str]] = sorted(((r, m) for r in INDEX.routes for m in r.methods),
                                             key=lambda rm: (rm[0].template, rm[1]))
EVENT_FUNCTIONS = sorted(INDEX.of_kind("eventGridTrigger"))
PARAM = "{"  # route templates name their parameters in braces

hostile_text = st.one_of(
    st.text(alphabet=string.printable + "\u00e9\u4e2d\U0001f600\u202e\u0000", max_size=200),
    st.sampled_from(["..", "../../etc/passwd", "%2e%2e", "%00", "a" * 5000, "diabetes:7", "diabetes:",
                     ":7", "PartitionKey eq 'x'", "' or 1 eq 1", "\u00e9" * 400, "-1", "1e309"]),
)
principals = st.one_of(
    st.none(),
    st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["not base64!!", base64.b64encode(b'{"claims": "nope"}').decode(),
                     base64.b64encode(json.dumps({"auth_typ": "aad", "claims": [
                         {"typ": "roles", "val": "approver"}] * 3}).encode()).decode()]),
)
keys = st.sampled_from([KEYS["lead"], KEYS["default"], MASTER, "forged-key", "", None])
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["comment", "reason", "model", "version", "matchers", "until", "ends_at",
                                     "starts_at", "id", "data"]), json_values, max_size=5)
    .map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=30, max_value=400).map(lambda depth: ("{\"a\":" * depth + "1" + "}" * depth).encode()),
)


def _path(route: HttpRoute, values: list[str]) -> str:
    """The route's template with each ``{param}`` replaced by a hostile value, percent-encoded as a
    client would send it. A slash would address another route (raw, or as %2F, which the host decodes
    into a separator as Azure does), and so would an empty value; urllib3 removes '.' and '..'
    segments, so dots are sent encoded."""
    parts, it = [], iter(values)
    for segment in route.template.split("/"):
        if segment.startswith(PARAM):
            segment = quote(next(it, "").replace("/", "_") or "x", safe="").replace(".", "%2E")
        parts.append(segment)
    return "/".join(parts)


def _assert_refusal_is_a_problem(resp: requests.Response) -> None:
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"
    if resp.status_code >= 400:
        assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers
        assert resp.json()["title"], resp.text[:300]


@given(st.sampled_from(ROUTES), st.lists(hostile_text, min_size=3, max_size=3),
       st.dictionaries(hostile_text, hostile_text, max_size=4), bodies, keys, principals)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_every_http_route_refuses_hostile_input_without_a_5xx(
        admin_host: AdminHost, route_method: tuple[HttpRoute, str], values: list[str], query: dict[str, str],
        body: bytes, key: str | None, principal: str | None) -> None:
    route, method = route_method
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-functions-key"] = key
    if principal is not None:
        headers["x-ms-client-principal"] = principal
        headers["x-ms-client-principal-name"] = "fuzzer@example.com"
    resp = requests.request(method, f"{admin_host.url}/api/{_path(route, values)}", params=query,
                            data=None if method in ("GET", "DELETE") else body, headers=headers, timeout=30)
    _assert_refusal_is_a_problem(resp)
    if route.auth_level != "anonymous" and key in ("forged-key", "", None):
        assert resp.status_code == 401, f"{method} /api/{route.template} let a {key!r} key in: {resp.status_code}"


@given(st.sampled_from(EVENT_FUNCTIONS), st.lists(st.one_of(mutated_samples(), json_values), min_size=1,
                                                  max_size=5), st.sampled_from(["Notification", "", "Unknown"]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_every_event_grid_function_refuses_hostile_deliveries_without_a_5xx(
        admin_host: AdminHost, function: str, events: list[Any], kind: str) -> None:
    resp = requests.post(f"{admin_host.url}/runtime/webhooks/eventgrid", params={"functionName": function},
                         data=json.dumps(events).encode(), headers={"aeg-event-type": kind,
                                                                    "Content-Type": "application/json"},
                         timeout=60)
    _assert_refusal_is_a_problem(resp)


def test_an_oversized_mixed_delivery_is_processed_or_dead_lettered_event_by_event(admin_host: AdminHost,
                                                                                  admin_services: Any) -> None:
    """500 events in one request, every fifth one valid JSON that fails validation: each valid one is
    processed, each invalid one is a dead letter with a reason, and replaying one of them is refused
    again for the same reason (it is still invalid), never lost."""
    assert requests.get(f"{admin_host.url}/api/health", timeout=30).status_code == 200  # still serving
    function = "on_run_status_changed"
    events, bad_ids = [], set()
    for n in range(500):
        raw = sample("RunStatusChanged")
        raw["id"] = f"fuzz-batch-{n}"
        if n % 5 == 0:
            raw["data"] = {"runStatus": ["not", "a", "status"], "runId": "\u4e2d" * 3000}
            bad_ids.add(raw["id"])
        events.append(raw)
    resp = requests.post(f"{admin_host.url}/runtime/webhooks/eventgrid", params={"functionName": function},
                         json=events, headers={"aeg-event-type": "Notification"}, timeout=300)
    assert resp.status_code == 202, resp.text[:300]
    letters = {d.event_id: d for d in admin_services.ledger.dead_letters(function) if d.event_id in bad_ids}
    assert set(letters) == bad_ids
    assert all(d.reason and d.field for d in letters.values())
    processed = {r["event_id"] for r in admin_services.ledger.audit_records({"function": function})
                 if r["action"] == "event.processed" and r["event_id"].startswith("fuzz-batch-")}
    assert processed == {e["id"] for e in events} - bad_ids
    one = letters[min(bad_ids)]
    again = admin_host.call("POST", f"deadletters/{one.id}/replay", KEYS["ops"])
    assert again.status_code < 500, again.text[:300]
    assert json.loads(admin_services.ledger.dead_letter_payload(one))["id"] == one.event_id
