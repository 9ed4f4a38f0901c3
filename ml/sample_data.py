"""Synthetic CSV batches for demos and tests, drawn from scikit-learn's bundled diabetes data.

The reactor needs a stream of realistic batches without downloading anything: good ones to retrain
on, poor ones whose model must lose the champion/challenger gate, shifted ones to trip drift
detection, and one fixed held-out test set that no training batch ever draws from. Everything is
deterministic in the seed so a demo or a test can be replayed exactly.

    python -m ml.sample_data --out DIR --files N --rows R --seed S [--kind good|poor|shifted]
    python -m ml.sample_data --out DIR --holdout
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

from ml.dataset import FEATURES, write_csv

KINDS: tuple[str, ...] = ("good", "poor", "shifted")
HOLDOUT_FILE = "holdout.csv"
HOLDOUT_FRACTION = 0.2
# The split must not depend on a batch's seed, or a batch could contain held-out rows.
_SPLIT_SEED = 20_190_509
_FEATURE_NOISE = 0.05  # fraction of each feature's standard deviation
_TARGET_NOISE = 0.02  # fraction of the target's standard deviation
_SHIFTED = ("bmi", "bp", "s5")
_SHIFT = 1.0  # in standard deviations: large enough for any drift test to notice


@cache
def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    data = load_diabetes()
    if tuple(data.feature_names) != FEATURES:
        raise RuntimeError(f"scikit-learn's diabetes columns changed: {data.feature_names}")
    return data.data, data.target


@cache
def split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the diabetes data used for training batches and for the held-out set."""
    X, _ = _diabetes()
    order = np.random.default_rng(_SPLIT_SEED).permutation(X.shape[0])
    n_holdout = round(HOLDOUT_FRACTION * X.shape[0])
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def holdout_rows() -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out test set: exact diabetes rows, no noise."""
    X, y = _diabetes()
    _, held = split_indices()
    return X[held], y[held]


def make_batch(rows: int, seed: int, kind: str = "good", index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One batch of ``rows`` resampled training rows with small noise, altered according to ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    X_all, y_all = _diabetes()
    train_idx, _ = split_indices()
    # seeding per (seed, index) makes file i the same however many files are written
    rng = np.random.default_rng((seed, index))
    pick = rng.choice(train_idx, size=rows, replace=True)
    X = X_all[pick] + rng.normal(size=(rows, len(FEATURES))) * (_FEATURE_NOISE * X_all.std(axis=0))
    # sex is a two-valued code in the source data; noise would turn it into a continuous value
    sex = FEATURES.index("sex")
    X[:, sex] = X_all[pick, sex]
    y = y_all[pick] + rng.normal(size=rows) * (_TARGET_NOISE * y_all.std())
    if kind == "poor":
        y = rng.permutation(y)
    elif kind == "shifted":
        cols = [FEATURES.index(c) for c in _SHIFTED]
        X[:, cols] += _SHIFT * X_all[:, cols].std(axis=0)
    return X, y


def write_batches(out_dir: str | Path, files: int, rows: int, seed: int, kind: str = "good") -> list[Path]:
    """Write ``files`` CSV batches into ``out_dir`` and return their paths."""
    if files < 1:
        raise ValueError(f"files must be at least 1, got {files}")
    out = Path(out_dir)
    paths = []
    for i in range(files):
        X, y = make_batch(rows, seed, kind, index=i)
        paths.append(write_csv(out / f"diabetes-{kind}-seed{seed}-{i:03d}.csv", X, y))
    return paths


def write_holdout(out_dir: str | Path) -> Path:
    X, y = holdout_rows()
    return write_csv(Path(out_dir) / HOLDOUT_FILE, X, y)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.sample_data", description="Write synthetic diabetes CSVs.")
    parser.add_argument("--out", required=True, type=Path, help="directory to write CSV files into")
    parser.add_argument("--files", type=int, help="number of batch files (default 3)")
    parser.add_argument("--rows", type=int, help="rows per batch file (default 100)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--kind", choices=KINDS, default="good", help="good, poor (shuffled labels), shifted")
    parser.add_argument("--holdout", action="store_true", help=f"write only the fixed test set as {HOLDOUT_FILE}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.holdout:
        # kept apart from batches so a training directory can never end up holding the test set
        if args.files is not None or args.rows is not None or args.seed is not None or args.kind != "good":
            parser.error("--holdout writes the fixed test set only; drop --files/--rows/--seed/--kind")
        paths = [write_holdout(args.out)]
    else:
        files = 3 if args.files is None else args.files
        rows = 100 if args.rows is None else args.rows
        seed = 0 if args.seed is None else args.seed
        try:
            paths = write_batches(args.out, files, rows, seed, args.kind)
        except ValueError as exc:
            parser.error(str(exc))
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
