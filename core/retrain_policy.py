"""Per-model retraining policy, from the ``REACTOR_RETRAIN_POLICIES`` setting (a JSON object).

    {"diabetes": {"container": "data", "prefix": "diabetes/",
                  "test_container": "data", "test_blob": "holdout/diabetes.csv",
                  "window_seconds": 60, "min_new_files": 1, "min_new_bytes": 0,
                  "cooldown_seconds": 300, "metric": "rmse", "min_improvement": 0.0,
                  "monitors": ["diabetes-drift"]}}

``container`` + ``prefix`` say which new data feeds the model (CSV files only); the window
debounces a burst of files into one retrain; the thresholds and the cooldown keep a trickle
of data from paying for a job each time. Every problem is reported with its JSON path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.json_setting import per_model

METRICS = ("rmse", "mae", "r2")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


@dataclass(frozen=True)
class RetrainPolicy:
    model: str
    container: str
    prefix: str
    test_container: str
    test_blob: str
    window_seconds: int = 60
    min_new_files: int = 1
    min_new_bytes: int = 0
    cooldown_seconds: int = 300
    metric: str = "rmse"
    min_improvement: float = 0.0
    monitors: tuple[str, ...] = ()  # drift monitors (v1 DataDriftName, v2 experiment) watching it

    def feeds(self, container: str, blob_name: str) -> bool:
        """Does this new blob count as training data for the model?"""
        return (container == self.container and blob_name.startswith(self.prefix)
                and blob_name.lower().endswith(".csv"))


_INTS = {"window_seconds": (0, 86_400), "min_new_files": (0, 1_000_000), "min_new_bytes": (0, 10**12),
         "cooldown_seconds": (0, 7 * 86_400)}
_TEXTS = ("container", "prefix", "test_container", "test_blob")


def parse_policies(text: str) -> tuple[dict[str, RetrainPolicy], list[str]]:
    """(policies by model, problems). Empty text means no model is retrained automatically."""
    doc, problems = per_model(text, "REACTOR_RETRAIN_POLICIES", "policy")
    if problems:
        return {}, problems
    policies, problems = {}, []
    for model, raw in doc.items():
        policy, found = _policy(str(model), raw)
        problems += found
        if policy is not None:
            policies[policy.model] = policy
    return policies, problems


def _policy(model: str, raw: Any) -> tuple[RetrainPolicy | None, list[str]]:
    where = f"REACTOR_RETRAIN_POLICIES.{model}"
    if not _MODEL.match(model):
        return None, [f"{where}: not a valid model name"]
    if not isinstance(raw, Mapping):
        return None, [f"{where} must be an object"]
    problems = [f"{where}.{k}: unknown key" for k in raw if k not in _INTS and k not in _TEXTS
                and k not in ("metric", "min_improvement", "monitors")]
    values: dict[str, Any] = {"model": model}
    for key in _TEXTS:
        value = raw.get(key, "" if key == "prefix" else None)
        if not isinstance(value, str) or (key != "prefix" and not value):
            problems.append(f"{where}.{key}: required text")
        values[key] = value
    for key, (low, high) in _INTS.items():
        value = raw.get(key, RetrainPolicy.__dataclass_fields__[key].default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{where}.{key}: an integer from {low} to {high}")
        values[key] = value
    values["metric"] = raw.get("metric", "rmse")
    if values["metric"] not in METRICS:
        problems.append(f"{where}.metric: one of {', '.join(METRICS)}")
    values["min_improvement"] = raw.get("min_improvement", 0.0)
    if isinstance(values["min_improvement"], bool) or not isinstance(values["min_improvement"], (int, float)) \
            or not 0.0 <= values["min_improvement"] < 1.0:
        problems.append(f"{where}.min_improvement: a number from 0 to below 1 (relative improvement)")
    monitors = raw.get("monitors", [])
    if not isinstance(monitors, list) or not all(isinstance(m, str) and m for m in monitors):
        problems.append(f"{where}.monitors: a list of monitor names")
    values["monitors"] = tuple(monitors) if isinstance(monitors, list) else ()
    return (None, problems) if problems else (RetrainPolicy(**values), [])
