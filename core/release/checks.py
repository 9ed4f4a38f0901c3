"""The two checks a release passes: the QA smoke test and the canary's health check.

Both are pure judgements over measured figures, so they are tested without endpoints; the
service feeds them real scoring results (smoke) and the deployment's served traffic (canary).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.ml_platform import DeploymentHealth, ScoreResult
from core.release.policy import Canary, SmokeTest


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (what Azure Monitor's RequestLatency_P95 reports)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def rows_of(body: bytes) -> int:
    """How many rows a scoring request holds: the number of predictions it must get back."""
    try:
        doc = json.loads(body)
    except ValueError:
        return 0
    data = doc.get("data") if isinstance(doc, dict) else None
    return len(data) if isinstance(data, list) else 0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    figures: dict[str, Any]


def judge_smoke(results: Sequence[ScoreResult], expected_rows: int, policy: SmokeTest) -> Verdict:
    """Every answer 200 with one finite number per input row, and the p95 latency within bound."""
    problems = [problem for r in results if (problem := _answer_problem(r, expected_rows))]
    latency = p95([r.latency_ms for r in results if r.status])
    figures = {"requests": len(results), "failed": len(problems), "p95_ms": _round(latency),
               "p95_bound_ms": policy.p95_ms}
    if problems:
        return Verdict(False, f"{len(problems)} of {len(results)} smoke requests failed; first: {problems[0]}",
                       figures)
    if latency is not None and latency > policy.p95_ms:
        return Verdict(False, f"smoke p95 latency {latency:.0f} ms is above {policy.p95_ms:g} ms", figures)
    return Verdict(True, f"{len(results)} smoke requests passed, p95 {_round(latency)} ms", figures)


def _answer_problem(r: ScoreResult, rows: int) -> str:
    if r.status == 0:
        return f"no answer ({r.error})"
    if r.status != 200:
        return f"HTTP {r.status}: {r.body[:200].decode(errors='replace')}"
    try:
        doc = json.loads(r.body)
    except ValueError:
        return "the answer is not JSON"
    predictions = doc.get("predictions") if isinstance(doc, dict) else doc
    if not isinstance(predictions, list) or len(predictions) != rows:
        return f"expected {rows} predictions, got {_shape(predictions)}"
    if not all(isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) for p in predictions):
        return "predictions are not all finite numbers"
    return ""


def _shape(value: Any) -> str:
    return f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__


Health = str  # "bad" | "good" | "wait" | "thin" (not enough traffic, waited long enough)


@dataclass(frozen=True)
class HealthVerdict:
    outcome: Health
    reason: str
    figures: dict[str, Any]


def judge_health(health: DeploymentHealth, policy: Canary, elapsed: float, step_seconds: int) -> HealthVerdict:
    """Bad as soon as enough requests show it; good once the step has lasted and had enough
    traffic; a step short of traffic waits, up to ``max_wait_factor`` times its length."""
    figures = {"requests": health.requests, "errors": health.errors, "error_rate": round(health.error_rate, 4),
               "p95_ms": _round(health.p95_ms), "seconds": round(elapsed, 1),
               "bounds": {"max_error_rate": policy.max_error_rate, "max_p95_ms": policy.max_p95_ms}}
    enough = health.requests >= max(policy.min_requests, 1)
    if enough and health.error_rate > policy.max_error_rate:
        return HealthVerdict("bad", f"error rate {health.error_rate:.1%} above {policy.max_error_rate:.1%} "
                             f"({health.errors} of {health.requests} requests)", figures)
    if enough and health.p95_ms is not None and health.p95_ms > policy.max_p95_ms:
        return HealthVerdict("bad", f"p95 latency {health.p95_ms:.0f} ms above {policy.max_p95_ms:g} ms", figures)
    if elapsed < step_seconds:
        return HealthVerdict("wait", "step in progress", figures)
    if enough:
        return HealthVerdict("good", f"{health.requests} requests, error rate {health.error_rate:.1%}, "
                             f"p95 {_round(health.p95_ms)} ms", figures)
    if elapsed < step_seconds * policy.max_wait_factor:
        return HealthVerdict("wait", f"only {health.requests} of {policy.min_requests} requests so far", figures)
    return HealthVerdict("thin", f"only {health.requests} requests in {elapsed:.0f} s: no evidence against it, "
                         "going on", figures)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
