"""Grouping and dedup: alerts sharing the ``group_by`` labels make one group, and a group makes at
most one notification per flush, however many alerts it holds (a thousand firing alerts for one
endpoint are one message with ``alerts=1000``).

A new group waits ``group_wait`` before its first message, then is looked at every
``group_interval``; an unchanged firing set is re-sent only after ``repeat_interval``; when every
alert of a notified group has resolved, one resolved message is sent (``send_resolved``).

The notification id is derived from the group, its kind, its firing set and its sequence number,
and the outbox stores an id once: an instance that dies between enqueueing and recording the flush,
or two instances flushing together, produce the same id, so nobody is paged twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core.alerting.lifecycle import AlertState
from core.alerting.rules import AlertingConfig
from core.alerting.store import GroupState
from core.notify.model import SEVERITIES, Kind, Notification, Severity

MAX_LISTED = 5  # alerts named in a summary; the count says the rest


@dataclass(frozen=True)
class GroupView:
    """One group at a flush: its alerts split by what the mute stages decided."""

    key: str
    labels: dict[str, str]
    firing: list[AlertState]  # to notify
    muted: int  # firing but silenced or inhibited


def group_key(labels: Mapping[str, str], group_by: Sequence[str]) -> tuple[str, dict[str, str]]:
    values = {name: labels.get(name, "") for name in group_by}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:32], values


def due(g: GroupState, config: AlertingConfig, now: datetime) -> bool:
    if not g.created_at:
        return False
    if g.sent_kind != "firing":
        return now >= _at(g.created_at) + timedelta(seconds=config.group_wait)
    return now >= _at(g.flushed_at) + timedelta(seconds=config.group_interval)


def decide(g: GroupState, view: GroupView, config: AlertingConfig,
           now: datetime) -> tuple[GroupState, Notification | None]:
    """The group after a due flush, and the notification to enqueue, if any."""
    flushed = replace(g, flushed_at=now.isoformat())
    if view.firing:
        digest = _digest(view.firing)
        repeat = g.sent_at and now >= _at(g.sent_at) + timedelta(seconds=config.repeat_interval)
        if g.sent_kind == "firing" and g.sent_hash == digest and not repeat:
            return flushed, None
        return _sent(flushed, "firing", digest, view.firing, now)
    if view.muted:
        return flushed, None  # everything still firing is muted: nothing to say, nothing resolved
    closed = replace(flushed, created_at="")  # the episode is over; the next one waits group_wait again
    if g.sent_kind != "firing":
        return closed, None  # nothing was notified, so nothing to resolve
    if not config.send_resolved:
        return replace(closed, sent_kind="resolved"), None
    return _sent(closed, "resolved", "", [], now)


def _sent(g: GroupState, kind: Kind, digest: str, firing: list[AlertState],
          now: datetime) -> tuple[GroupState, Notification]:
    severity = _worst(firing) if firing else g.severity
    count = len(firing) if firing else g.sent_count
    new = replace(g, sent_kind=kind, sent_hash=digest, sent_count=count, sent_at=now.isoformat(),
                  severity=severity, seq=g.seq + 1)
    return new, _notification(new, kind, firing, now)


def _notification(g: GroupState, kind: Kind, firing: list[AlertState], now: datetime) -> Notification:
    ident = hashlib.sha256(f"{g.key}|{kind}|{g.sent_hash}|{g.seq}".encode()).hexdigest()[:40]
    where = ", ".join(f"{k}={v}" for k, v in sorted(g.labels.items()) if v) or "all alerts"
    names = sorted({a.labels.get("alertname", "") for a in firing})
    title = f"[{kind.upper()}:{g.sent_count}] {', '.join(names[:3]) or 'alerts'} ({where})"
    summary = _summary(kind, firing, g.sent_count, where)
    common = _common_labels(firing) if firing else dict(g.labels)
    runbooks = {a.annotations.get("runbook", "") for a in firing} - {""}
    fields = {"alerts": str(g.sent_count)}
    if len(firing) == 1 and firing[0].value:
        fields["value"] = firing[0].value
    return Notification(id=ident, kind=kind, title=title[:250], summary=summary, severity=_severity(g.severity),
                        dedup_key=f"reactor-alerts-{g.key}", created_at=now, labels={**common, **g.labels},
                        fields=fields, links={"runbook": runbooks.pop()} if len(runbooks) == 1 else {},
                        alerts=g.sent_count)


def _summary(kind: Kind, firing: list[AlertState], count: int, where: str) -> str:
    if kind == "resolved":
        return f"All {count} alert(s) of {where} have resolved."
    listed = [a.annotations.get("summary") or a.labels.get("alertname", a.fingerprint) for a in firing[:MAX_LISTED]]
    more = f" and {len(firing) - MAX_LISTED} more" if len(firing) > MAX_LISTED else ""
    return f"{len(firing)} alert(s) firing for {where}: {'; '.join(listed)}{more}."[:1000]


def _common_labels(alerts: list[AlertState]) -> dict[str, str]:
    first = alerts[0].labels
    return {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in alerts[1:])}


def _worst(alerts: list[AlertState]) -> str:
    return min((a.labels.get("severity", "info") for a in alerts), key=_rank)


def _rank(severity: str) -> int:
    return SEVERITIES.index(_severity(severity))


def _severity(text: str) -> Severity:
    return next((s for s in SEVERITIES if s == text), "info")


def _digest(alerts: list[AlertState]) -> str:
    return hashlib.sha256("\n".join(sorted(a.fingerprint for a in alerts)).encode()).hexdigest()[:32]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
