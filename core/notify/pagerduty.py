"""PagerDuty Events API v2: one alert group is one incident, keyed by ``dedup_key``.

``firing`` and ``info`` trigger, ``resolved`` resolves the same ``dedup_key``. The routing
key is the secret; ``target.url`` only overrides the endpoint (a local receiver in tests).
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.notify.message import clip, context, facts, headline, links
from core.notify.model import Notification
from core.notify.request import Request, Target, label

ENDPOINT = "https://events.pagerduty.com/v2/enqueue"
MAX_DEDUP = 255
MAX_SUMMARY = 1024


def build(n: Notification, target: Target) -> Request:
    url = target.url or ENDPOINT
    body: dict[str, Any] = {
        "routing_key": target.secret,
        "event_action": "resolve" if n.kind == "resolved" else "trigger",
        "dedup_key": dedup_key(n.dedup_key),
        "payload": {
            "summary": clip(headline(n), MAX_SUMMARY),
            "source": clip(context(n) or "mlops-reactor", 255),
            "severity": n.severity,
            "timestamp": n.created_at.isoformat(),
            "component": n.labels.get("model", ""),
            "group": n.labels.get("endpoint", ""),
            "class": n.labels.get("alertname", n.title)[:255],
            "custom_details": {"summary": n.summary, **dict(facts(n)), "alerts": n.alerts},
        },
        "client": "mlops-reactor",
        "links": [{"href": u, "text": name} for name, u in links(n)],
    }
    if "dashboard" in n.links:
        body["client_url"] = n.links["dashboard"]
    return Request("POST", url, {"Content-Type": "application/json"}, body, label(target, url), (target.secret,))


def dedup_key(key: str) -> str:
    """Stable and at most 255 characters: a longer key keeps its head and a hash of the whole."""
    if len(key) <= MAX_DEDUP:
        return key
    return key[: MAX_DEDUP - 41] + "-" + hashlib.sha256(key.encode()).hexdigest()[:40]
