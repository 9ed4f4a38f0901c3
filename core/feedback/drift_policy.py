"""Per-model drift monitors, from the ``REACTOR_DRIFT_MONITORS`` setting (a JSON object).

    {"diabetes": {"monitor": "diabetes-drift", "signal": "model-monitoring",
                  "window_seconds": 300, "delay_seconds": 30, "repeat_seconds": 86400,
                  "psi_threshold": 0.2, "ks_p_value": 0.05, "min_samples": 200, "min_features": 1}}

``monitor`` is the name the drift signal carries (the v2 monitor's experiment name, or the v1
``DataDriftName``), so it must be one of the model's retraining ``monitors`` for the signal to
start a retrain. ``signal`` picks the schema Azure ML would send: ``model-monitoring`` (v2,
``RunStatusChanged`` with the breach run tag) or ``data-drift`` (v1, ``DatasetDriftDetected``).
Each check covers one window of ``window_seconds`` (aligned to the clock), ``delay_seconds``
after it ends so collected data has landed; a drifted model is signalled again only after
``repeat_seconds`` unless another version reaches production. Every problem is reported with
its JSON path, and all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.feedback.drift import Thresholds
from core.json_setting import per_model

SETTING = "REACTOR_DRIFT_MONITORS"
SIGNALS = ("model-monitoring", "data-drift")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_INTS = {"window_seconds": (1, 7 * 86_400), "delay_seconds": (0, 86_400), "repeat_seconds": (0, 30 * 86_400),
         "min_samples": (1, 10_000_000), "min_features": (1, 1_000)}
_FLOATS = {"psi_threshold": (0.0, 100.0), "ks_p_value": (0.0, 1.0)}


@dataclass(frozen=True)
class DriftMonitor:
    model: str
    monitor: str
    signal: str = "model-monitoring"
    window_seconds: int = 3600
    delay_seconds: int = 60
    repeat_seconds: int = 86_400
    psi_threshold: float = 0.2
    ks_p_value: float = 0.05
    min_samples: int = 200
    min_features: int = 1

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.psi_threshold, self.ks_p_value, self.min_samples, self.min_features)


def parse_monitors(text: str) -> tuple[dict[str, DriftMonitor], list[str]]:
    """(monitors by model, problems). Empty text: no model is checked."""
    doc, problems = per_model(text, SETTING, "monitor")
    if problems:
        return {}, problems
    monitors, problems = {}, []
    for model, raw in doc.items():
        monitor, found = _monitor(str(model), raw)
        problems += found
        if monitor is not None:
            monitors[monitor.model] = monitor
    return monitors, problems


def _monitor(model: str, raw: Any) -> tuple[DriftMonitor | None, list[str]]:
    where = f"{SETTING}.{model}"
    if not _NAME.match(model):
        return None, [f"{where}: not a valid model name"]
    if not isinstance(raw, Mapping):
        return None, [f"{where} must be an object"]
    known = {"monitor", "signal", *_INTS, *_FLOATS}
    problems = [f"{where}.{k}: unknown key" for k in raw if k not in known]
    defaults = DriftMonitor.__dataclass_fields__
    values: dict[str, Any] = {"model": model, "monitor": raw.get("monitor"),
                              "signal": raw.get("signal", defaults["signal"].default)}
    if not isinstance(values["monitor"], str) or not _NAME.match(values["monitor"]):
        problems.append(f"{where}.monitor: required, a monitor name (letters, digits, '-', '_', '.')")
    if values["signal"] not in SIGNALS:
        problems.append(f"{where}.signal: one of {', '.join(SIGNALS)}")
    for key, (low, high) in _INTS.items():
        value = raw.get(key, defaults[key].default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{where}.{key}: an integer from {low} to {high}")
        values[key] = value
    for key, (above, most) in _FLOATS.items():
        number = raw.get(key, defaults[key].default)
        if isinstance(number, bool) or not isinstance(number, int | float) or not above < number <= most:
            problems.append(f"{where}.{key}: a number above {above:g}, at most {most:g}")
        values[key] = float(number) if isinstance(number, int | float) else number
    return (None, problems) if problems else (DriftMonitor(**values), [])
