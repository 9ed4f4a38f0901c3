"""A generic JSON webhook: the whole notification, versioned, for anything we do not model."""

from __future__ import annotations

from typing import Any

from core.notify.message import headline
from core.notify.model import Notification
from core.notify.request import Request, Target, label

VERSION = "1"


def build(n: Notification, target: Target) -> Request:
    body: dict[str, Any] = {
        "version": VERSION, "id": n.id, "kind": n.kind, "title": n.title, "headline": headline(n),
        "summary": n.summary, "severity": n.severity, "dedup_key": n.dedup_key,
        "created_at": n.created_at.isoformat(), "alerts": n.alerts,
        "labels": dict(n.labels), "fields": dict(n.fields), "links": dict(n.links)}
    return Request("POST", target.secret, {"Content-Type": "application/json"}, body,
                   label(target, target.secret), (target.secret,))
