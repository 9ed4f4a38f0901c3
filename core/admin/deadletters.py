"""Dead letters for operators: list them, and replay one on an operator's word.

The replay itself is ``Intake.replay`` (processed once, however often it is asked for); this
module checks the request, and records who asked when the caller lacks the role.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from core.admin.auth import Principal
from core.errors import RequestError
from core.intake import FUNCTION_EVENTS, Intake
from core.ledger import AuditRecord, Ledger

STATUSES = ("pending", "replayed")
PARAMS = frozenset({"function", "status", "code"})


def listing(ledger: Ledger, params: Mapping[str, str]) -> list[dict[str, Any]]:
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise RequestError(unknown[0], "is not a filter (use function, status)")
    function, wanted = params.get("function") or None, params.get("status", "")
    if function is not None and function not in FUNCTION_EVENTS:
        raise RequestError("function", f"must be one of {', '.join(sorted(FUNCTION_EVENTS))}")
    if wanted and wanted not in STATUSES:
        raise RequestError("status", f"must be one of {', '.join(STATUSES)}")
    letters = [dataclasses.asdict(d) for d in ledger.dead_letters(function)]
    return sorted((d for d in letters if not wanted or d["status"] == wanted), key=lambda d: d["received_at"])


def letter_id(function: str, key: str) -> str:
    """Ids are ``function/key``; the route carries them as two segments, so no %2F is needed."""
    if function not in FUNCTION_EVENTS:
        raise RequestError("function", f"must be one of {', '.join(sorted(FUNCTION_EVENTS))}")
    if not key.isalnum() or len(key) > 64:
        raise RequestError("id", "the dead letter key must be letters and digits")
    return f"{function}/{key}"


def replay(intake: Intake, letter: str, who: Principal) -> dict[str, Any]:
    """Raises KeyError when there is no such dead letter."""
    receipt = intake.replay(letter, who.actor)
    return {"id": letter, "result": receipt.status, "event_id": receipt.event_id,
            "correlation_id": receipt.correlation_id, "detail": dict(receipt.detail)}


def denied(ledger: Ledger, who: Principal, action: str, role: str) -> None:
    """A refused admin action is an admin action too: who tried, what, and the role missing."""
    ledger.audit(AuditRecord("admin.denied", f"admin:{who.actor}", actor=who.actor,
                             detail={"action": action, "needs_role": role, "via": who.via}))
