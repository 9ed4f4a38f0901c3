"""Our own events as CloudEvents 1.0, and the check that an event is one.

``problems`` checks a CloudEvent in the JSON format (structured mode) against the spec: the
required attributes (``specversion`` "1.0", ``id``, ``source``, ``type``), the types of the
optional ones (``subject``, ``time`` as an RFC 3339 timestamp, ``datacontenttype``,
``dataschema``), extension names (lower-case letters and digits) and ``data`` against
``data_base64``. The local topic, the local receiver and the tests all use it, so what we
publish and what the local topic accepts are held to one reading of the spec.

In the outbox an event travels as a ``Notification`` (the outbox stores and retries those):
id -> id, title -> type, summary -> subject, created_at -> time, labels -> source and the
correlation id, fields["data"] -> the data as JSON. ``as_notification`` and ``from_notification``
are the only two places that know it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from core.notify.model import Notification

SPECVERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type")
OPTIONAL = ("subject", "time", "datacontenttype", "dataschema")
# RFC 3339 date-time: a date, "T", a time with optional fraction, and a zone (Z or +hh:mm).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_EXTENSION = re.compile(r"^[a-z0-9]{1,20}$")
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class CloudEvent:
    id: str  # deterministic per decision: the same decision recorded twice is one event
    type: str  # mlops.reactor.<PastTense>
    source: str
    subject: str
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str = ""  # the extension attribute ``correlationid``

    def to_dict(self) -> dict[str, Any]:
        """The JSON format (structured mode), as a subscriber receives it."""
        doc: dict[str, Any] = {"specversion": SPECVERSION, "id": self.id, "source": self.source,
                               "type": self.type, "subject": self.subject, "time": rfc3339(self.time),
                               "datacontenttype": "application/json", "data": dict(self.data)}
        if self.correlation_id:
            doc["correlationid"] = self.correlation_id
        return doc

    def as_notification(self) -> Notification:
        return Notification(id=self.id, kind="info", title=self.type, summary=self.subject, severity="info",
                            dedup_key=self.id[:255], created_at=self.time,
                            labels={"source": self.source, "correlation_id": self.correlation_id},
                            fields={"data": json.dumps(dict(self.data), sort_keys=True, default=str)})


def from_notification(n: Notification) -> CloudEvent:
    return CloudEvent(id=n.id, type=n.title, source=n.labels["source"], subject=n.summary, time=n.created_at,
                      data=json.loads(n.fields.get("data", "{}")), correlation_id=n.labels.get("correlation_id", ""))


def rfc3339(when: datetime) -> str:
    """UTC with milliseconds and a Z, as Event Grid writes times."""
    utc = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def problems(event: Any, where: str = "") -> list[str]:
    """Every way ``event`` (a parsed JSON value) is not a CloudEvents 1.0 event; [] when it is one."""
    if not isinstance(event, Mapping):
        return [f"{where or 'event'} must be a JSON object"]
    at = f"{where}." if where else ""
    found = [f"{at}{name} is required" for name in REQUIRED if name not in event]
    for name in (*REQUIRED, *OPTIONAL):
        if name in event and (not isinstance(event[name], str) or not event[name]):
            found.append(f"{at}{name} must be a non-empty string")
    if isinstance(event.get("specversion"), str) and event["specversion"] != SPECVERSION:
        found.append(f"{at}specversion must be {SPECVERSION!r} (got {event['specversion']!r})")
    found += _formats(event, at)
    for name, value in event.items():
        if name in (*REQUIRED, *OPTIONAL, "data", "data_base64"):
            continue
        if not _EXTENSION.match(str(name)):
            found.append(f"{at}{name}: extension attribute names are 1-20 lower-case letters or digits")
        elif not isinstance(value, (str, int, bool)) or value == "":
            found.append(f"{at}{name}: an extension attribute is a non-empty string, an integer or a boolean")
    if "data" in event and "data_base64" in event:
        found.append(f"{at}data and data_base64 are mutually exclusive")
    return found


def _formats(event: Mapping[str, Any], at: str) -> list[str]:
    found = []
    time = event.get("time")
    if isinstance(time, str) and time and not _valid_time(time):
        found.append(f"{at}time must be an RFC 3339 timestamp (got {time[:40]!r})")
    media = event.get("datacontenttype")
    if isinstance(media, str) and media and not _MEDIA_TYPE.match(media):
        found.append(f"{at}datacontenttype must be a media type (RFC 2046)")
    schema = event.get("dataschema")
    if isinstance(schema, str) and schema and not _URI_SCHEME.match(schema):
        found.append(f"{at}dataschema must be an absolute URI")
    if any(c.isspace() for c in str(event.get("source", ""))):
        found.append(f"{at}source must be a URI-reference (no whitespace)")
    return found


def _valid_time(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13
        return False
    return True
