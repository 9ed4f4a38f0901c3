"""A status answer and releases as the admin API returns them mid-canary, for rendering tests
that need no host: the figures a real release records (core.release.checks), through the real
``Release.view``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.release.store import Release

T0 = "2026-11-22T10:00:00.123456+00:00"


def at(minute: int) -> str:
    return f"2026-11-22T10:{minute:02d}:00.000000+00:00"


def canary_release() -> dict[str, Any]:
    r = Release("diabetes", "2", deployment="diabetes-v2", previous="diabetes-v1", qa_endpoint="diabetes-qa",
                prod_endpoint="diabetes-prod", step=0, decided_by="ana@contoso.com", created_at=T0)
    r = (r.with_step(at(0), "pending", "version 2 registered")
         .with_step(at(1), "qa_deploying", "deploying diabetes-v2 to diabetes-qa")
         .with_step(at(3), "smoke_testing", "diabetes-v2 is up on diabetes-qa")
         .with_step(at(4), "smoke_testing", "20 smoke requests passed, p95 41.2 ms", requests=20, failed=0,
                    p95_ms=41.2)
         .with_step(at(4), "awaiting_approval", "waiting for an approver until 2026-11-23T10:04:00+00:00")
         .with_step(at(9), "approved", "approved (by ana@contoso.com)")
         .with_step(at(10), "prod_deploying", "deploying diabetes-v2 to diabetes-prod")
         .with_step(at(13), "canary", "10% of production traffic to diabetes-v2",
                    traffic={"diabetes-v2": 10, "diabetes-v1": 90}))
    return r.view()


def failed_release() -> dict[str, Any]:
    r = Release("diabetes", "1", deployment="diabetes-v1", created_at="2026-11-21T09:00:00+00:00")
    r = r.with_step("2026-11-21T09:00:00+00:00", "pending", "version 1 registered")
    reason = "1 of 20 smoke requests failed; first: HTTP 500"
    return replace(r, reason=reason).with_step(
        "2026-11-21T09:05:00+00:00", "qa_failed", reason, requests=20, failed=1, p95_ms=0.8123).view()


def status() -> dict[str, Any]:
    retrain = {"window_id": "", "window_opened_at": "", "pending_files": 0, "pending_total": 0, "drift": False,
               "manual": False, "in_flight_job": "", "last_job": "retrain-diabetes-1", "last_outcome": "completed"}
    prod = {"name": "diabetes-prod", "state": "succeeded", "traffic": {"diabetes-v2": 10, "diabetes-v1": 90},
            "mirror": {}, "scoring_uri": "http://127.0.0.1:41000/score"}
    qa = {"name": "diabetes-qa", "state": "succeeded", "traffic": {"diabetes-v2": 100}, "mirror": {},
          "scoring_uri": "http://127.0.0.1:41001/score"}
    diabetes = {"model": "diabetes", "retrain": retrain, "champion": {"version": "2"}, "versions": ["1", "2"],
                "production": {"version": "1", "deployment": "diabetes-v1", "previous": ""},
                "releases_in_flight": [{"id": "diabetes:2", "state": "canary", "step": 0, "updated_at": at(13)}],
                "last_release": {"id": "diabetes:2", "state": "canary", "reason": ""},
                "endpoints": {"qa": qa, "production": prod},
                "alerts_firing": [{"alertname": "diabetes-p95-latency", "severity": "warning", "since": at(12),
                                   "summary": "p95 latency 812 ms > 500 ms on diabetes-prod"}]}
    churn: dict[str, Any] = {
        "model": "churn", "retrain": {**retrain, "last_job": "", "last_outcome": ""}, "champion": None,
        "versions": [], "production": {"version": "", "deployment": "", "previous": ""},
        "releases_in_flight": [], "last_release": None,
        "endpoints": {"qa": {"name": "churn-qa", "state": "absent"},
                      "production": {"name": "churn-prod", "error": "ConnectionError: unreachable"}},
        "alerts_firing": []}
    return {"models": [churn, diabetes], "dead_letters": {"pending": 1, "by_function": {"on_blob_created": 1}},
            "outbox": {"pending": 3}}


def promoted_releases(count: int) -> list[dict[str, Any]]:
    """Older releases of another model, each promoted in its turn."""
    out = []
    for n in range(count, 0, -1):
        r = Release("churn", str(n), deployment=f"churn-v{n}", created_at=f"2026-11-{n:02d}T08:00:00+00:00")
        r = r.with_step(r.created_at, "pending", f"version {n} registered").with_step(
            r.created_at, "promoted", f"churn-v{n} serves 100% of churn-prod", deleted=[f"churn-v{n - 2}"])
        out.append(r.view())
    return out
