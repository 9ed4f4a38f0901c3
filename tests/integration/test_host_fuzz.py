"""Hostile bodies against the real host's Event Grid endpoint: never a 5xx."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import HostProcess
from tests.unit.test_fuzz_intake import json_values, mutated_samples

pytestmark = pytest.mark.integration

bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(mutated_samples(), min_size=1, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=60).map(lambda depth: ("[" * depth * 20 + "]" * depth * 20).encode()),
)


@given(bodies, st.sampled_from(["on_blob_created", "on_model_registered", "on_run_status_changed", "nope"]),
       st.sampled_from(["Notification", "SubscriptionValidation", "", "Unsubscribe"]))
@settings(max_examples=150, deadline=None)
def test_no_body_gets_a_5xx(host: HostProcess, body: bytes, function: str, kind: str) -> None:
    resp = requests.post(f"{host.url}/runtime/webhooks/eventgrid", params={"functionName": function}, data=body,
                         headers={"aeg-event-type": kind, "Content-Type": "application/json"}, timeout=30)
    assert resp.status_code < 500, resp.text[:300]
    if resp.status_code >= 400:
        assert resp.headers["Content-Type"] == "application/problem+json" and resp.json()["title"]
