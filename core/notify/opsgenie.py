"""Opsgenie Alert API v2: create with ``alias`` (dedups open alerts), close by alias.

Creating and closing are asynchronous on Opsgenie's side (202 with a requestId): a 2xx
means accepted, which is all a sender can know. The API key is the secret; ``target.url``
is the API base (``https://api.eu.opsgenie.com`` for EU accounts, a local receiver in tests).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from core.notify.message import clip, facts, headline, links, plain
from core.notify.model import Notification
from core.notify.pagerduty import dedup_key
from core.notify.request import Request, Target, label

API = "https://api.opsgenie.com"
PRIORITY = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}
_TAG = re.compile(r"[^A-Za-z0-9_.:=-]")


def build(n: Notification, target: Target) -> Request:
    base = (target.url or API).rstrip("/")
    alias = dedup_key(n.dedup_key)
    headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {target.secret}"}
    if n.kind == "resolved":
        url = f"{base}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
        body: dict[str, Any] = {"source": "mlops-reactor", "note": clip(f"{headline(n)}\n{n.summary}", 25_000)}
    else:
        url = f"{base}/v2/alerts"
        body = create_body(n, alias)
    return Request("POST", url, headers, body, label(target, url), (target.secret,))


def create_body(n: Notification, alias: str) -> dict[str, Any]:
    description = plain(n)
    return {
        "message": clip(headline(n), 130),
        "alias": alias,
        "description": clip(description, 15_000),
        "priority": PRIORITY[n.severity],
        "source": "mlops-reactor",
        "entity": clip(n.labels.get("model", ""), 512),
        "tags": tags(n),
        "details": {k: clip(v, 8000) for k, v in [*facts(n), *links(n)]},
    }


def tags(n: Notification) -> list[str]:
    """At most 20 tags of at most 50 characters (Opsgenie's limits)."""
    found = [_TAG.sub("_", f"{k}:{v}")[:50] for k, v in sorted(n.labels.items())]
    return [n.severity, *found][:20]
