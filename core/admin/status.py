"""What an operator wants at a glance: per model its champion, its retraining state, and the
dead-letter backlog. A platform that cannot be reached is reported per model, not raised:
the status page is most needed when something is down."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from core.ledger import DeadLetter, Ledger
from core.ml_platform import MLPlatform, ModelVersion
from core.retraining import Retraining

STATE_FIELDS = ("window_id", "window_opened_at", "pending_files", "pending_bytes", "pending_total", "drift",
                "manual", "in_flight_job", "in_flight_since", "submitted", "job_url", "last_started_at",
                "last_job", "last_outcome")


def status(ledger: Ledger, retraining: Retraining, platform: MLPlatform) -> dict[str, Any]:
    letters = list(ledger.dead_letters())
    return {"models": [model_status(m, retraining, platform) for m in sorted(retraining.policies)],
            "dead_letters": backlog(letters)}


def model_status(model: str, retraining: Retraining, platform: MLPlatform) -> dict[str, Any]:
    state = retraining.state(model)
    out: dict[str, Any] = {"model": model, "retrain": {k: state.get(k) for k in STATE_FIELDS}}
    try:
        versions = platform.list_models(model)
    except Exception as exc:  # the platform's own failure, shown to the operator, not a 500
        return {**out, "champion": None, "versions": [], "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {**out, "champion": version_view(versions[-1]) if versions else None,
            "versions": [v.version for v in versions]}


def version_view(v: ModelVersion) -> dict[str, Any]:
    return {"version": v.version, "created_at": v.created_at.isoformat() if v.created_at else "",
            "tags": dict(v.tags)}


def backlog(letters: Iterable[DeadLetter]) -> dict[str, Any]:
    pending = [d for d in letters if d.status == "pending"]
    return {"pending": len(pending), "by_function": dict(Counter(d.function for d in pending))}
