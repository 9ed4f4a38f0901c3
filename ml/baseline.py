"""Per-feature summary of the training data, saved next to the model for later drift checks.

Drift detection compares new batches against what the model was trained on. Storing quantile bin
edges and counts (rather than the raw rows) keeps the model package small and free of training
records while still allowing a population-stability or chi-square comparison per feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.dataset import FEATURES

BINS = 10


def summarize(X: np.ndarray) -> dict[str, Any]:
    if X.ndim != 2 or X.shape[1] != len(FEATURES) or X.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, {len(FEATURES)}) array, got shape {X.shape}")
    return {
        "rows": int(X.shape[0]),
        "bins": BINS,
        "features": {name: summarize_column(X[:, i]) for i, name in enumerate(FEATURES)},
    }


def summarize_column(values: np.ndarray) -> dict[str, Any]:
    edges, counts = quantile_histogram(values)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "edges": edges,
        "counts": counts,
    }


def quantile_histogram(values: np.ndarray, bins: int = BINS) -> tuple[list[float], list[int]]:
    """Equal-frequency bin edges and the training counts in each bin.

    A column with at most ``bins`` distinct values (``sex`` is a two-valued code) gets one bin per
    value instead, edges halfway between them: quantiles would collapse onto those values and leave
    a single bin, hiding any change in their proportions.
    """
    distinct = np.unique(values)
    if distinct.size == 1:
        return [float(distinct[0]), float(distinct[0])], [int(values.size)]
    if distinct.size <= bins:
        edges = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2, distinct[-1:]])
    else:
        # heavy ties can still merge some quantiles; dropping the duplicates avoids zero-width bins
        edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    counts, _ = np.histogram(values, bins=edges)
    return [float(e) for e in edges], [int(c) for c in counts]
