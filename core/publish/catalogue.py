"""Which decisions become which of our own events: a pure function of the audit record.

Every decision the app takes is already an audit record (retraining, releases, alerting each
write one, once, by the instance whose ETag-conditional write won). Reading the events off
those records means no service changes and no decision without its event:

    audit action                         CloudEvent type                   subject
    retrain.started                      mlops.reactor.RetrainStarted      models/{model}
    retrain.completed                    mlops.reactor.RetrainCompleted    models/{model}[:{registered}]
    retrain.failed | retrain.canceled    mlops.reactor.RetrainFailed       models/{model}
    release.created                      mlops.reactor.ReleaseStarted      models/{model}:{version}
    release.promoted                     mlops.reactor.ReleasePromoted     models/{model}:{version}
    release.rolled_back                  mlops.reactor.ReleaseRolledBack   models/{model}:{version}
    release.qa_failed | rejected |       mlops.reactor.ReleaseFailed       models/{model}:{version}
      expired | superseded                 (data.state says which)
    alert.firing                         mlops.reactor.AlertFired          alerts/{alertname}/{fingerprint}
    alert.resolved                       mlops.reactor.AlertResolved       alerts/{alertname}/{fingerprint}

The ``id`` is derived from the decision, never from the moment it was written: the retraining
decision id or job name, the release id and its end state, the alert's fingerprint and the
time of its transition. A retried step or a redelivered trigger that records the same decision
again yields the same id, which the outbox stores once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from core.ledger import AuditRecord
from core.publish.cloudevent import CloudEvent

PREFIX = "mlops.reactor."
TYPES = ("RetrainStarted", "RetrainCompleted", "RetrainFailed", "ReleaseStarted", "ReleasePromoted",
         "ReleaseRolledBack", "ReleaseFailed", "AlertFired", "AlertResolved")
MAX_TEXT = 1000  # characters of any one text value: an event stays small (Event Grid's limit is 1 MB)
_RELEASE_ENDS = {"qa_failed", "rejected", "expired", "superseded"}

Mapper = Callable[[AuditRecord, datetime, str], CloudEvent]


def event_for(record: AuditRecord, at: datetime, source: str) -> CloudEvent | None:
    """Our event for this audit record, or None when the record is not a published decision."""
    mapper = _MAPPERS.get(record.action)
    return mapper(record, at, source) if mapper else None


def _event(kind: str, key: str, record: AuditRecord, at: datetime, source: str, subject: str,
           data: Mapping[str, Any]) -> CloudEvent:
    return CloudEvent(id=f"{key}/{kind}", type=PREFIX + kind, source=source, subject=subject, time=at,
                      data=_small({k: v for k, v in data.items() if v not in ("", None)}),
                      correlation_id=record.correlation_id[:200])


# -- retraining --------------------------------------------------------------------------------
def _retrain_started(r: AuditRecord, at: datetime, source: str) -> CloudEvent:
    d = r.detail
    data = {"model": r.model, "job": d.get("job"), "decision_id": d.get("decision_id"), "reason": d.get("reason"),
            "trigger_count": d.get("trigger_count"), "files": d.get("files"), "bytes": d.get("bytes")}
    key = f"retrain/{r.model}/{d.get('decision_id') or d.get('job')}"
    return _event("RetrainStarted", key, r, at, source, f"models/{r.model}", data)


def _retrain_finished(r: AuditRecord, at: datetime, source: str) -> CloudEvent:
    d = r.detail
    status = str(d.get("action", ""))
    registered = str(d.get("reactor_registered_version", ""))
    data: dict[str, Any] = {"model": r.model, "job": d.get("job"), "decision_id": d.get("decision_id"),
                            "status": status, "job_url": d.get("reactor_job_url")}
    if status == "completed":
        data.update(registered_version=registered,
                    champion_kept=str(d.get("reactor_champion_kept", "")).lower() == "true",
                    verdict=d.get("reactor_verdict_reason"))
        subject = f"models/{r.model}:{registered}" if registered else f"models/{r.model}"
        return _event("RetrainCompleted", f"retrain/{r.model}/{d.get('job')}", r, at, source, subject, data)
    data["error"] = d.get("reactor_error")
    return _event("RetrainFailed", f"retrain/{r.model}/{d.get('job')}", r, at, source, f"models/{r.model}", data)


# -- releases ----------------------------------------------------------------------------------
def _release(kind: str) -> Mapper:
    def mapper(r: AuditRecord, at: datetime, source: str) -> CloudEvent:
        d = dict(r.detail)
        release = str(d.pop("release", "") or f"{r.model}:{r.version}")
        state = r.action.removeprefix("release.")
        data = {"model": r.model, "version": r.version, "release": release, "state": state,
                "note": d.pop("note", ""), "actor": r.actor}
        if d:
            data["figures"] = d  # the step's figures: error rate, p95, traffic...
        return _event(kind, f"release/{release}", r, at, source, f"models/{release}", data)
    return mapper


# -- alerting ----------------------------------------------------------------------------------
def _alert(kind: str) -> Mapper:
    def mapper(r: AuditRecord, at: datetime, source: str) -> CloudEvent:
        d = r.detail
        labels = dict(d.get("labels") or {})
        changed_at = str(d.get("changed_at") or at.isoformat())  # when the alert changed, not when we wrote it
        data = {"fingerprint": r.correlation_id, "alertname": labels.get("alertname", ""),
                "severity": labels.get("severity", ""), "labels": labels, "summary": d.get("summary"),
                "value": d.get("value"), "source": d.get("source"), "changed_at": changed_at}
        subject = f"alerts/{labels.get('alertname') or 'alert'}/{r.correlation_id}"
        return _event(kind, f"alert/{r.correlation_id}/{changed_at}", r, at, source, subject, data)
    return mapper


def _small(value: Any, depth: int = 0) -> Any:
    """Clip long texts and long lists: an event carries what a subscriber acts on, the audit the rest."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "...(truncated)"
    if isinstance(value, Mapping) and depth < 3:
        return {str(k): _small(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, (list, tuple)) and depth < 3:
        return [_small(v, depth + 1) for v in value[:20]]
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN
    if value is None or isinstance(value, (bool, int)):
        return value
    return _small(str(value), depth)


_MAPPERS: dict[str, Mapper] = {
    "retrain.started": _retrain_started,
    "retrain.completed": _retrain_finished,
    "retrain.failed": _retrain_finished,
    "retrain.canceled": _retrain_finished,
    "release.created": _release("ReleaseStarted"),
    "release.promoted": _release("ReleasePromoted"),
    "release.rolled_back": _release("ReleaseRolledBack"),
    **{f"release.{state}": _release("ReleaseFailed") for state in _RELEASE_ENDS},
    "alert.firing": _alert("AlertFired"),
    "alert.resolved": _alert("AlertResolved"),
}
# What every published decision's action starts with: the sweep asks storage for these rows only.
ACTION_PREFIXES = tuple(sorted({action.split(".", 1)[0] + "." for action in _MAPPERS}))
