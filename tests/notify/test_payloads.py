"""Each receiver's request, sent over real HTTP to the local receiver that checks it against
the documented format; and the limits: long text is clipped, never refused."""

from __future__ import annotations

import json

import pytest

from core.notify import opsgenie, pagerduty, teams
from core.notify.receivers import build
from core.notify.send import Sender
from tests.notify.conftest import T0, note, routes_for

KINDS = ("teams", "slack", "pagerduty", "opsgenie", "webhook")


def deliver(receiver, n):
    target = routes_for(receiver.url).receivers[n.labels["to"]]
    return build(n, target), Sender(timeout=5)(build(n, target), T0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", ["firing", "resolved", "info"])
def test_every_receiver_accepts_its_payload(receiver, kind, state):
    _request, verdict = deliver(receiver, note(to=kind, kind=state))
    assert verdict.outcome == "delivered", verdict.error
    [got] = receiver.of(kind)
    if not (kind == "opsgenie" and state == "resolved"):
        assert "diabetes" in json.dumps(got.body)  # model, version, endpoint reach the person


@pytest.mark.parametrize("kind", KINDS)
def test_huge_notifications_are_clipped_to_the_limits(receiver, kind):
    n = note(to=kind, title="T" * 3000, summary="S" * 100_000, dedup_key="k" * 600,
             fields={f"metric{i}": "v" * 3000 for i in range(40)})
    _request, verdict = deliver(receiver, n)
    assert verdict.outcome == "delivered", verdict.error


def test_teams_card_carries_values_links_and_runbook(receiver):
    request, _ = deliver(receiver, note(to="teams"))
    card = request.body["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["rmse"] == "61.2 (threshold 55)" and facts["version"] == "7" and facts["endpoint"] == "diabetes-prod"
    assert next(a["title"] for a in card["actions"]) == "Runbook"
    assert len(json.dumps(teams.build(note(to="teams", summary="x" * 60_000),
                                      request_target(receiver, "teams")).body)) <= teams.MAX_BYTES


def request_target(receiver, kind):
    return routes_for(receiver.url).receivers[kind]


def test_pagerduty_trigger_and_resolve_share_a_stable_dedup_key(receiver):
    target = request_target(receiver, "pagerduty")
    fired = pagerduty.build(note(to="pagerduty", dedup_key="g" * 400), target).body
    resolved = pagerduty.build(note(to="pagerduty", kind="resolved", dedup_key="g" * 400), target).body
    assert fired["event_action"] == "trigger" and resolved["event_action"] == "resolve"
    assert fired["dedup_key"] == resolved["dedup_key"] and len(fired["dedup_key"]) <= 255
    assert fired["payload"]["severity"] == "error" and fired["payload"]["custom_details"]["rmse"]
    assert {link["text"] for link in fired["links"]} == {"run", "dashboard", "runbook"}


def test_opsgenie_priority_alias_and_close_by_alias(receiver):
    target = request_target(receiver, "opsgenie")
    created = opsgenie.build(note(to="opsgenie", severity="critical"), target)
    closed = opsgenie.build(note(to="opsgenie", kind="resolved"), target)
    assert created.body["priority"] == "P1" and created.body["alias"] == "rmse-high/diabetes/opsgenie"
    assert created.url.endswith("/v2/alerts") and created.headers["Authorization"].startswith("GenieKey ")
    assert closed.url.endswith("/v2/alerts/rmse-high%2Fdiabetes%2Fopsgenie/close?identifierType=alias")
    assert "SECRET" not in repr(created)


def test_the_receiver_refuses_a_malformed_payload(receiver):
    import requests

    bad = requests.post(f"{receiver.url}/pagerduty/v2/enqueue", json={"event_action": "trigger"}, timeout=5)
    assert bad.status_code == 400 and "routing_key" in bad.text and receiver.of("pagerduty") == []
