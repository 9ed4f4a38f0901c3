"""The audit trail as operators ask for it: filtered, time-bounded, and as the lineage of a
model version (the data events, the job decision, the registration), oldest first.

A version's lineage is found through the correlation id its registration carries (the
decision id, tagged on the job and the model), and the trigger events the decision names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from core.errors import RequestError
from core.ledger import Ledger

FILTERS = ("model", "version", "event_id", "correlation_id")
PARAMS = frozenset({*FILTERS, "from", "to", "limit", "code"})
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MAX_VALUE = 256


@dataclass(frozen=True)
class AuditQuery:
    where: Mapping[str, str]
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> AuditQuery:
        """From a query string; a malformed parameter raises ``RequestError`` naming it."""
        unknown = sorted(set(params) - PARAMS)
        if unknown:
            raise RequestError(unknown[0], f"is not a filter (use {', '.join(sorted(PARAMS - {'code'}))})")
        where = {k: _text(k, params[k]) for k in FILTERS if params.get(k, "") != ""}
        if "version" in where and "model" not in where:
            raise RequestError("version", "needs model as well")
        return cls(where, _time("from", params.get("from", "")), _time("to", params.get("to", "")),
                   _limit(params.get("limit", "")))


def query(ledger: Ledger, q: AuditQuery) -> list[dict[str, Any]]:
    """Matching records, oldest first; the most recent ``limit`` of them."""
    rows = lineage(ledger, q.where) if "version" in q.where else ledger.audit_records(q.where)
    rows = [r for r in rows if _within(r, q)]
    return rows[-q.limit:]


def lineage(ledger: Ledger, where: Mapping[str, str]) -> list[dict[str, Any]]:
    """A version's registration, the decision and job that made it, and the data that fed them."""
    own = ledger.audit_records(where)
    extra = {k: v for k, v in where.items() if k not in ("model", "version")}
    correlations = {str(r["correlation_id"]) for r in own if r.get("correlation_id")}
    related = [r for c in sorted(correlations) for r in ledger.audit_records({**extra, "correlation_id": c})]
    triggers = {t for r in related if r.get("action") == "retrain.started"
                for t in r.get("detail", {}).get("triggers", []) if isinstance(t, str)}
    data = [r for t in sorted(triggers) for r in ledger.audit_records({"event_id": t})]
    unique = {str(r["id"]): r for r in [*own, *related, *data]}
    return [unique[k] for k in sorted(unique)]


def _text(name: str, value: str) -> str:
    if len(value) > MAX_VALUE or any(ord(ch) < 32 for ch in value):
        raise RequestError(name, f"must be at most {MAX_VALUE} printable characters")
    return value


def _time(name: str, value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise RequestError(name, "is not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _limit(value: str) -> int:
    if not value:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise RequestError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def _within(row: Mapping[str, Any], q: AuditQuery) -> bool:
    if q.since is None and q.until is None:
        return True
    at = datetime.fromisoformat(str(row["at"]))
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return (q.since is None or at >= q.since) and (q.until is None or at <= q.until)
