"""The metric-rule half of ``make demo``: an alert rule on the production endpoint's error metric,
evaluated by the ``alerts_tick`` timer on the local metrics source, while production traffic flows.

    errors injected into production traffic (the control plane's fault toggle on the serving deployment)
    -> the rule pends (``for``) -> fires -> one grouped notification per receiver
    -> errors stop -> the condition clears (``keep_firing_for``) -> resolve notifications

The rule is written as for Azure Monitor (the endpoint's resource id, ``RequestsPerMinute`` split by
``statusCodeClass`` and ``deployment``); locally its values come from the endpoint's own request
records. The fault toggle exists only on the local control plane (``embedded/serving_faults.py``): a
running deployment's ``REACTOR_SCORE_FAULT`` cannot change, so the router answers 500 for a share of
the deployment's requests instead, and records them as the errors they are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

MODEL, PROD = "diabetes", "diabetes-prod"
RULE = "diabetes-prod-5xx"
NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
PROD_RESOURCE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/reactor-local/providers/"
                 f"Microsoft.MachineLearningServices/workspaces/local/onlineEndpoints/{PROD}")
FAULT = "error-percent:30"
THRESHOLD = 60  # 5xx answers per minute, averaged over the window
# Demo timings: a 10 s window, 3 s pending, 2 s of hysteresis. group_by names the alert too, so the
# rule's episode is its own group (the releases' incidents on the same endpoint are other groups).
RULE_DOC: dict[str, Any] = {
    "name": RULE, "kind": "metric", "resource_ids": [PROD_RESOURCE], "namespace": NAMESPACE,
    "metric": "RequestsPerMinute", "aggregation": "average", "window": "10s",
    "dimensions": {"statusCodeClass": "5xx", "deployment": f"{MODEL}-v1"}, "operator": ">", "threshold": THRESHOLD,
    "for": "3s", "keep_firing_for": "2s", "severity": "error",
    "labels": {"model": MODEL, "endpoint": PROD, "deployment": f"{MODEL}-v1", "team": "ml"},
    "runbook": "https://wiki.example/runbooks/endpoint-5xx"}
ALERT_RULES = {"group_by": ["endpoint", "alertname"], "group_wait": "1s", "group_interval": "2s", "rules": [RULE_DOC]}
Say = Callable[..., None]


class MetricAlert:
    def __init__(self, services: Any, receiver: Any, say: Say,
                 wait_for: Callable[..., Any]) -> None:
        self.services, self.receiver, self.say, self.wait_for = services, receiver, say, wait_for

    def run(self) -> float:
        """The whole round trip; returns its seconds."""
        t0 = time.monotonic()
        rule = RULE_DOC
        self.say(f"alert rule {RULE}: {rule['metric']} {{statusCodeClass=5xx, deployment={MODEL}-v1}} "
                 f"average over {rule['window']} > {THRESHOLD}/min for {rule['for']}",
                 "(local metrics: the endpoint's own request records)")
        before = len(self.receiver.received)
        self._fault(FAULT)
        self.say("errors injected into production traffic", f"{FAULT} on {MODEL}-v1 (local control plane fault toggle)")
        pending = self.wait_for("the rule to pend", lambda: self._audit("alert.pending"), timeout=30)
        self.say(f"rule {RULE}: PENDING", f"{pending['detail']['value']} errors/min (for {rule['for']})")
        firing = self.wait_for("the rule to fire", lambda: self._audit("alert.firing"), timeout=30)
        self.say(f"rule {RULE}: FIRING", f"{firing['detail']['value']} errors/min")
        firing_notes = self.wait_for("the firing notifications", lambda: self._notes(before, "firing"), timeout=30)
        self.say(f"one grouped notification per receiver for {RULE}: "
                 f"{', '.join(sorted(n.kind for n in firing_notes))}")
        self._fault("")
        self.say("errors stopped", f"fault cleared on {MODEL}-v1")
        self.wait_for("the rule to resolve", lambda: self._audit("alert.resolved"), timeout=45)
        self.say(f"rule {RULE}: RESOLVED", f"below {THRESHOLD}/min for keep_firing_for={rule['keep_firing_for']}")
        resolved = self.wait_for("the resolve notifications", lambda: self._notes(before, "resolved"), timeout=30)
        took = time.monotonic() - t0
        self.say(f"resolve notification reached each receiver for {RULE}: "
                 f"{', '.join(sorted(n.kind for n in resolved))}", f"(metric alert round trip {took:.1f} s)")
        return took

    def _fault(self, fault: str) -> None:
        url = f"{self.services.serving.base_url}/endpoints/{PROD}/deployments/{MODEL}-v1/fault"
        requests.put(url, json={"fault": fault}, timeout=10).raise_for_status()

    def _audit(self, action: str) -> dict[str, Any] | None:
        found = [r for r in self.services.ledger.audit_records({"action": action})
                 if r["detail"].get("labels", {}).get("alertname") == RULE]
        return found[-1] if found else None

    def _notes(self, before: int, kind: str) -> list[Any]:
        """One notification of ``kind`` about the rule at each of the three receivers, or []."""
        found = [r for r in self.receiver.received[before:] if RULE in json.dumps(r.body) and _kind(r) == kind]
        return found if len({r.kind for r in found}) >= 3 else []


def _kind(received: Any) -> str:
    """Whether a received message says firing or resolved, as each format puts it."""
    body = received.body
    if received.kind == "pagerduty":
        return "resolved" if body.get("event_action") == "resolve" else "firing"
    return "resolved" if "RESOLVED" in json.dumps(body) else "firing"
