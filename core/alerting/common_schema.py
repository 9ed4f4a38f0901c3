"""Azure Monitor's common alert schema (metric, log search and activity log alerts) turned into
alerts for the same handling as our own rules. Azure has already applied its own ``for``: Fired is
firing, Resolved is resolved. The fingerprint is the alert rule plus the target resource, so Fired
and Resolved of one alert meet, whatever else their payloads carry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.alerting.store import fingerprint
from core.errors import RequestError

_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")
SEVERITY = {"Sev0": "critical", "Sev1": "error", "Sev2": "warning", "Sev3": "info", "Sev4": "info"}
CONDITIONS = {"Fired": "firing", "Resolved": "resolved"}
CUSTOM_LABELS = ("model", "endpoint", "deployment", "team", "version")
SOURCE = "azure-monitor"


@dataclass(frozen=True)
class ReceivedAlert:
    fingerprint: str
    labels: dict[str, str]
    state: str  # firing | resolved
    at: datetime  # the sender's time of this condition
    annotations: dict[str, str]


def parse_common_alert(body: Mapping[str, Any]) -> list[ReceivedAlert]:
    """One alert per target resource; ``RequestError`` naming the field when malformed."""
    if body.get("schemaId") != "azureMonitorCommonAlertSchema":
        raise RequestError("schemaId", "must be 'azureMonitorCommonAlertSchema' (enable the common alert schema)")
    data = _object(body, "data", "data")
    e = _object(data, "essentials", "data.essentials")
    rule, condition = _text(e, "alertRule"), _text(e, "monitorCondition")
    if condition not in CONDITIONS:
        raise RequestError("data.essentials.monitorCondition", "must be Fired or Resolved")
    severity = SEVERITY.get(_text(e, "severity"))
    if severity is None:
        raise RequestError("data.essentials.severity", f"must be one of {', '.join(SEVERITY)}")
    at = _time(e, "resolvedDateTime" if condition == "Resolved" else "firedDateTime")
    targets = e.get("alertTargetIDs")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise RequestError("data.essentials.alertTargetIDs", "must be a non-empty list of resource ids")
    custom = data.get("customProperties") or {}
    extra = {k: str(custom[k]) for k in CUSTOM_LABELS if isinstance(custom, Mapping) and custom.get(k)}
    notes = {"summary": _describe(e, data.get("alertContext")), "alert_id": str(e.get("alertId", "")),
             "description": str(e.get("description") or "")}
    return [_alert(rule, target.lower(), severity, CONDITIONS[condition], at, e, extra, notes) for target in targets]


def _alert(rule: str, target: str, severity: str, state: str, at: datetime, e: Mapping[str, Any],
           extra: dict[str, str], notes: dict[str, str]) -> ReceivedAlert:
    identity = {"alertname": rule, "resource": target, "source": SOURCE}
    labels = {**extra, **identity, "severity": severity, "signal": str(e.get("signalType", ""))}
    return ReceivedAlert(fingerprint(identity), labels, state, at, notes)


def _describe(e: Mapping[str, Any], context: Any) -> str:
    """One line a person can read: what crossed which threshold, or which operation happened."""
    ctx = context if isinstance(context, Mapping) else {}
    condition = ctx.get("condition")
    condition = condition if isinstance(condition, Mapping) else {}
    parts = [_criterion(c) for c in condition.get("allOf", []) if isinstance(c, Mapping)]
    if ctx.get("operationName"):
        parts.append(f"{ctx.get('operationName')} {ctx.get('status', '')} by {ctx.get('caller', 'unknown')}".strip())
    return f"{e.get('alertRule')} {e.get('monitorCondition')}: " + ("; ".join(parts) or str(e.get("signalType", "")))


def _criterion(c: Mapping[str, Any]) -> str:
    what = c.get("metricName") or (c.get("searchQuery") and "log search") or "condition"
    agg = c.get("timeAggregation", "")
    return f"{what} {agg} = {c.get('metricValue')} ({c.get('operator', '')} {c.get('threshold', '')})".strip()


def _object(body: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = body.get(key)
    if not isinstance(value, Mapping):
        raise RequestError(where, "is required and must be an object")
    return value


def _text(e: Mapping[str, Any], key: str) -> str:
    value = e.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"data.essentials.{key}", "is required and must be non-empty text")
    return value.strip()


def _time(e: Mapping[str, Any], key: str) -> datetime:
    text = _text(e, key)
    found = _ISO.match(text)  # Azure writes seven fractional digits; Python reads at most six
    try:
        if found is None:
            raise ValueError(text)
        head, frac, zone = found.groups()
        return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}{'+00:00' if zone in (None, 'Z') else zone}")
    except ValueError:
        raise RequestError(f"data.essentials.{key}", f"{text!r} is not an ISO 8601 time") from None
