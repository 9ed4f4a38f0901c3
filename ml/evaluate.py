"""Champion/challenger gate: does the newly trained model beat the one in production?

Both models are scored on the same held-out test data, which no training batch draws from. The
verdict is data, not an exit code: the step succeeds either way and the register step decides what
to do with it, so a rejected model still leaves a readable record of why.

    python -m ml.evaluate --challenger DIR [--champion DIR] --test CSV [--metric rmse|mae|r2]
                          [--min-improvement 0.0] --out verdict.json
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml import metrics
from ml._cli import run, write_json
from ml.dataset import fingerprint, load_batches, sha256_file
from ml.errors import MLError
from ml.model_io import MODEL_FILE, find_model_dir, load_estimator


@dataclass(frozen=True)
class Verdict:
    """Outcome of the gate. ``improvement`` is relative: 0.02 means 2 % better than the champion."""

    passed: bool
    metric: str
    challenger: float
    champion: float | None
    improvement: float | None
    min_improvement: float
    reason: str
    test_rows: int
    test_sha256: str
    # binds the verdict to the exact model file, so register cannot package a different model
    challenger_sha256: str
    champion_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinity; a model with non-finite predictions is reported as null
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


def evaluate(
    challenger_dir: str | Path,
    champion_dir: str | Path | None,
    test_path: str | Path,
    metric: str = "rmse",
    min_improvement: float = 0.0,
) -> Verdict:
    """Score challenger and (optional) champion on the test data and decide whether the challenger passes."""
    metrics.check_metric(metric)
    if not math.isfinite(min_improvement):
        raise MLError(f"min_improvement must be a finite number, got {min_improvement}")
    batches = load_batches([test_path])
    X = np.vstack([b.X for b in batches])
    y = np.concatenate([b.y for b in batches])
    challenger = metrics.score(metric, y, load_estimator(challenger_dir).predict(X))
    champion = None if champion_dir is None else metrics.score(metric, y, load_estimator(champion_dir).predict(X))
    passed, improvement, reason = decide(metric, challenger, champion, min_improvement)
    return Verdict(
        passed=passed,
        metric=metric,
        challenger=challenger,
        champion=champion,
        improvement=improvement,
        min_improvement=min_improvement,
        reason=reason,
        test_rows=int(y.shape[0]),
        test_sha256=fingerprint([b.sha256 for b in batches]),
        challenger_sha256=model_sha256(challenger_dir),
        champion_sha256=None if champion_dir is None else model_sha256(champion_dir),
    )


def decide(
    metric: str, challenger: float, champion: float | None, min_improvement: float
) -> tuple[bool, float | None, str]:
    """The gate's rule, separate from I/O: returns (passed, relative improvement, reason)."""
    ours = f"challenger {metric}={challenger:.4g}"
    if not math.isfinite(challenger):
        return False, None, f"{ours}: the challenger's predictions are not finite"
    if champion is None:
        return True, None, f"{ours}; no champion to beat"
    theirs = f"champion {metric}={champion:.4g}"
    if not math.isfinite(champion):
        return True, None, f"{ours}, {theirs}: the champion's predictions are not finite"
    improvement = relative_improvement(metric, challenger, champion)
    if improvement is None:
        # a perfect champion (error 0, or r2 0 by coincidence) leaves no ratio; only matching it passes
        passed = challenger == champion and min_improvement <= 0
        return passed, None, f"{ours}, {theirs}: champion is 0, relative improvement undefined"
    passed = improvement >= min_improvement
    verb = "meets" if passed else "misses"
    return passed, improvement, f"{ours}, {theirs}: {improvement:+.2%} {verb} the required {min_improvement:+.2%}"


def relative_improvement(metric: str, challenger: float, champion: float) -> float | None:
    if champion == 0:
        return None
    gain = champion - challenger if metrics.LOWER_IS_BETTER[metric] else challenger - champion
    return gain / abs(champion)


def model_sha256(model_dir: str | Path) -> str:
    return sha256_file(find_model_dir(model_dir) / MODEL_FILE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.evaluate", description="Compare challenger and champion.")
    parser.add_argument("--challenger", required=True, type=Path, help="model directory of the new model")
    parser.add_argument("--champion", type=Path, help="model directory of the current model (omit if none)")
    parser.add_argument("--test", required=True, type=Path, help="held-out test CSV (or directory of CSVs)")
    parser.add_argument("--metric", choices=metrics.METRICS, default="rmse", help="metric to compare (default rmse)")
    parser.add_argument(
        "--min-improvement", type=float, default=0.0, help="required relative improvement, 0.02 = 2%% (default 0)"
    )
    parser.add_argument("--out", required=True, type=Path, help="verdict JSON file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def go() -> int:
        verdict = evaluate(args.challenger, args.champion, args.test, args.metric, args.min_improvement)
        write_json(args.out, verdict.to_dict())
        print(f"{'PASSED' if verdict.passed else 'FAILED'}: {verdict.reason}")
        return 0

    return run(go, "ml.evaluate")


if __name__ == "__main__":
    sys.exit(main())
