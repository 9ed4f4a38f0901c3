"""Train the diabetes ridge regression and write a self-describing model directory.

The same module runs on a laptop and as the Azure ML ``train`` step, so everything downstream
(evaluation, registration, drift checks, deployment smoke tests) reads only the files written here:

    model.pkl          fitted sklearn Ridge (joblib)
    model.json         training record: parameters, data files with sha256, metrics
    baseline.json      per-feature training distribution for drift checks
    sample_input.json  a few rows in the scoring request format, for smoke tests

    python -m ml.train --data PATH [PATH ...] --out MODEL_DIR [--alpha 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import Ridge

from ml import baseline, metrics
from ml._cli import run, write_json
from ml.dataset import FEATURES, TARGET, Batch, fingerprint, load_batches
from ml.errors import DataError, MLError
from ml.model_io import BASELINE_FILE, CARD_FILE, MODEL_FILE, SAMPLE_FILE

ALGORITHM = "sklearn.linear_model.Ridge"
SAMPLE_ROWS = 3
# r2 is undefined on a single row, and a model fitted on one row is meaningless anyway
MIN_ROWS = 2


def train(data: Sequence[str | Path], out_dir: str | Path, alpha: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Fit Ridge on every CSV behind ``data``, write the model directory and return the model.json record."""
    if not math.isfinite(alpha) or alpha < 0:
        raise MLError(f"alpha must be a finite number >= 0, got {alpha}")
    batches = load_batches(data)
    X = np.vstack([b.X for b in batches])
    y = np.concatenate([b.y for b in batches])
    if X.shape[0] < MIN_ROWS:
        raise DataError(f"training data has {X.shape[0]} row; at least {MIN_ROWS} are needed")
    model = Ridge(alpha=alpha, random_state=seed).fit(X, y)
    sample = _sample_rows(X, seed)
    card = _card(model, batches, y, model.predict(X), sample, alpha, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / MODEL_FILE)
    write_json(out / CARD_FILE, card)
    write_json(out / BASELINE_FILE, baseline.summarize(X))
    write_json(out / SAMPLE_FILE, {"data": sample.tolist()})
    return card


def _sample_rows(X: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.choice(X.shape[0], size=min(SAMPLE_ROWS, X.shape[0]), replace=False)
    return X[np.sort(picks)]


def _card(
    model: Ridge,
    batches: list[Batch],
    y: np.ndarray,
    fitted: np.ndarray,
    sample: np.ndarray,
    alpha: float,
    seed: int,
) -> dict[str, Any]:
    return {
        "algorithm": ALGORITHM,
        "sklearn_version": sklearn.__version__,
        "alpha": alpha,
        "seed": seed,
        "features": list(FEATURES),
        "target": TARGET,
        "training_rows": int(y.shape[0]),
        "training_files": [
            {"name": b.path.name, "path": str(b.path), "sha256": b.sha256, "rows": b.rows} for b in batches
        ],
        "training_data_sha256": fingerprint([b.sha256 for b in batches]),
        "train_metrics": metrics.compute(y, fitted),
        # expected answers for sample_input.json, so a smoke test can check a deployment end to end
        "sample_predictions": model.predict(sample).tolist(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description="Train the diabetes ridge model.")
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="CSV files or directories of CSVs")
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--alpha", type=float, default=0.5, help="ridge regularisation strength (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the solver and sample rows (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def go() -> int:
        card = train(args.data, args.out, alpha=args.alpha, seed=args.seed)
        m = card["train_metrics"]
        print(
            f"trained {ALGORITHM} on {card['training_rows']} rows from {len(card['training_files'])} files: "
            f"rmse={m['rmse']:.3f} mae={m['mae']:.3f} r2={m['r2']:.3f} -> {args.out}"
        )
        return 0

    return run(go, "ml.train")


if __name__ == "__main__":
    sys.exit(main())
