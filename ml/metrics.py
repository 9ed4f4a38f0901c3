"""Regression metrics and which direction counts as better for each.

Kept in one place so training reports and the champion/challenger gate can never disagree on how a
metric is computed or compared.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from ml.errors import MLError

LOWER_IS_BETTER: dict[str, bool] = {"rmse": True, "mae": True, "r2": False}
METRICS: tuple[str, ...] = tuple(LOWER_IS_BETTER)


def compute(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {name: score(name, y_true, y_pred) for name in METRICS}


def score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    check_metric(metric)
    if not np.all(np.isfinite(y_pred)):
        # sklearn refuses non-finite predictions; a model that emits them is simply unusable
        return math.inf if LOWER_IS_BETTER[metric] else -math.inf
    if metric == "rmse":
        return float(root_mean_squared_error(y_true, y_pred))
    if metric == "mae":
        return float(mean_absolute_error(y_true, y_pred))
    return float(r2_score(y_true, y_pred))


def check_metric(metric: str) -> None:
    if metric not in LOWER_IS_BETTER:
        raise MLError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
