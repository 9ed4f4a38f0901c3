"""What an operator wants at a glance: per model its champion (registered and in production),
its retraining state, releases in flight, endpoints and their traffic, firing alerts; the
dead-letter and notification backlogs. A platform that cannot be reached is reported per model, not raised:
the status page is most needed when something is down."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core.ledger import DeadLetter, Ledger
from core.ml_platform import MLPlatform, ModelVersion
from core.retraining import Retraining

if TYPE_CHECKING:
    from core.alerting import Alerting
    from core.feedback.quality import LiveQuality
    from core.notify.outbox import Outbox
    from core.release.service import Releases

STATE_FIELDS = ("window_id", "window_opened_at", "pending_files", "pending_bytes", "pending_total", "drift",
                "manual", "in_flight_job", "in_flight_since", "submitted", "job_url", "last_started_at",
                "last_job", "last_outcome")


def status(ledger: Ledger, retraining: Retraining, platform: MLPlatform, releases: Releases | None = None,
           alerting: Alerting | None = None, outbox: Outbox | None = None,
           quality: LiveQuality | None = None) -> dict[str, Any]:
    letters = list(ledger.dead_letters())
    models = sorted(set(retraining.policies) | set(releases.policies if releases else ()))
    firing = [s.value for s in alerting.alerts.alerts().values() if s.value.firing] if alerting else []
    out = []
    for m in models:
        row = model_status(m, retraining, platform)
        if releases is not None:
            row.update(release_status(m, releases))
        row["alerts_firing"] = [{"alertname": a.labels.get("alertname", ""), "severity": a.labels.get("severity", ""),
                                 "since": a.fired_at, "summary": a.annotations.get("summary", "")}
                                for a in firing if a.labels.get("model") == m]
        if quality is not None:
            row["live_quality"] = live_quality_status(m, row, quality)
        out.append(row)
    return {"models": out, "dead_letters": backlog(letters),
            "outbox": {"pending": outbox.backlog()} if outbox is not None else {}}


def release_status(model: str, releases: Releases) -> dict[str, Any]:
    facts = releases.store.facts(model).value
    found = releases.find(model)
    return {"production": {"version": facts.champion_version, "deployment": facts.champion_deployment,
                           "previous": facts.previous_deployment},
            "releases_in_flight": [{"id": r.id, "state": r.state, "step": r.step, "updated_at": r.updated_at}
                                   for r in found if r.active],
            "last_release": ({"id": found[0].id, "state": found[0].state, "reason": found[0].reason}
                             if found else None),
            "endpoints": releases.endpoints(model)}


def live_quality_status(model: str, row: dict[str, Any], quality: LiveQuality) -> dict[str, Any] | None:
    """RMSE and MAE of the version in production (else the champion) over labelled predictions."""
    version = (row.get("production") or {}).get("version") or (row.get("champion") or {}).get("version")
    if not version:
        return None
    try:
        return quality.status(model, str(version))
    except Exception as exc:  # storage trouble shows on the page, it does not hide the page
        return {"version": str(version), "error": f"{type(exc).__name__}: {exc}"[:300]}


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
