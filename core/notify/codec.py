"""A notification as one Table Storage row and back.

A Table string property holds at most 32K characters, so a notification that would not fit
loses text from its summary and field values (never its identity, labels or links): it is
stored whole enough to be delivered rather than refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.notify.message import clip
from core.notify.model import Notification

MAX_CHARS = 30_000


def to_props(n: Notification) -> dict[str, Any]:
    text = _dump(n)
    for summary, value in ((4000, 2000), (1000, 300), (200, 80)):
        if len(text) <= MAX_CHARS:
            break
        text = _dump(replace(n, summary=clip(n.summary, summary),
                             fields={k: clip(v, value) for k, v in n.fields.items()}))
    return {"notification_id": n.id, "kind": n.kind, "severity": n.severity,
            "created_at": n.created_at.isoformat(), "body": text}


def from_props(props: Mapping[str, Any]) -> Notification:
    doc = json.loads(str(props["body"]))
    return Notification(id=doc["id"], kind=doc["kind"], title=doc["title"], summary=doc["summary"],
                        severity=doc["severity"], dedup_key=doc["dedup_key"],
                        created_at=datetime.fromisoformat(doc["created_at"]), labels=doc["labels"],
                        fields=doc["fields"], links=doc["links"], alerts=int(doc["alerts"]))


def _dump(n: Notification) -> str:
    return json.dumps({"id": n.id, "kind": n.kind, "title": n.title, "summary": n.summary,
                       "severity": n.severity, "dedup_key": n.dedup_key, "created_at": n.created_at.isoformat(),
                       "labels": dict(n.labels), "fields": dict(n.fields), "links": dict(n.links),
                       "alerts": n.alerts}, sort_keys=True)
