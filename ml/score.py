"""Scoring script for the Azure ML inference server (``init()`` once, ``run(raw_data)`` per request).

Request body: ``{"data": [[10 numbers], ...]}`` or ``{"data": [{"age": .., "sex": .., ...}, ...]}``
in the feature order of the data contract. Response: ``{"predictions": [...]}`` (200), or
``{"error": "..."}`` with 400 for a request that cannot be scored and 500 when the deployment
itself fails (model not loaded, injected fault, a bug). ``score`` returns the status with the body
and never raises, because the server would turn an exception into an opaque 500 without telling the
caller what was wrong; ``run`` hands both to Azure's inference server as an ``AMLResponse`` (a plain
dict, always 200, where that class is not installed), and ``ml.serve`` serves ``score`` locally.

This file depends only on the standard library, numpy and joblib (not on the rest of ``ml``), so it
works whatever code folder a deployment uploads alongside it; a test keeps FEATURES equal to
``ml.dataset.FEATURES``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np

FEATURES: tuple[str, ...] = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
MODEL_FILE = "model.pkl"
# REACTOR_SCORE_FAULT exists so the demo can deploy a deliberately faulty model and watch the reactor
# detect it and roll back: "error" makes every call fail, "slow:MS" adds MS milliseconds of latency,
# "error-after:N" lets the first N calls of the process succeed and fails the rest (a model that
# passes a smoke test and fails under canary load). It is read on every call so a test, or an
# operator editing the deployment, needs no restart.
FAULT_ENV = "REACTOR_SCORE_FAULT"

_log = logging.getLogger(__name__)
_model: Any = None
_calls = 0  # scoring calls this process has answered, for error-after:N
_calls_lock = threading.Lock()  # the inference server calls run() from several threads


class RequestError(ValueError):
    """The request body cannot be scored (400); the message is returned to the caller."""


class DeploymentError(RuntimeError):
    """The deployment cannot score anything right now (500): not the caller's fault."""


def _aml_response_class() -> Any:
    """Azure's response class, so ``run`` can answer with a real status there; None off Azure."""
    try:
        from azureml.contrib.services.aml_response import AMLResponse
    except ImportError:
        return None
    return AMLResponse


_AMLResponse = _aml_response_class()


def init() -> None:
    global _model
    if "AZUREML_MODEL_DIR" not in os.environ:
        raise RuntimeError("AZUREML_MODEL_DIR is not set; the inference server sets it to the model's mount path")
    root = Path(os.environ["AZUREML_MODEL_DIR"])
    path = find_model_file(root)
    _model = joblib.load(path)
    _log.info("loaded model from %s", path)


def find_model_file(root: Path) -> Path:
    """Azure ML mounts a registered folder under AZUREML_MODEL_DIR/<folder name>/, so look one level down too."""
    if (root / MODEL_FILE).is_file():
        return root / MODEL_FILE
    found = sorted(p for p in root.glob(f"*/{MODEL_FILE}") if p.is_file())
    if len(found) != 1:
        raise FileNotFoundError(f"expected one {MODEL_FILE} in {root} or its subfolders, found {len(found)}")
    return found[0]


def run(raw_data: str | bytes) -> Any:
    """Azure's entry point: the body with its real status where the server can take one."""
    status, body = score(raw_data)
    if _AMLResponse is None:
        return body
    return _AMLResponse(body, status, json_str=True)


def score(raw_data: str | bytes) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body answering one scoring request."""
    try:
        _apply_fault(os.environ.get(FAULT_ENV, ""), _count_call())
        if _model is None:
            raise DeploymentError("model not loaded: init() has not run")
        predictions = _model.predict(parse_request(raw_data))
        return 200, {"predictions": [float(p) for p in predictions]}
    except RequestError as exc:
        _log.warning("rejected scoring request: %s", exc)
        return 400, {"error": str(exc)}
    except DeploymentError as exc:
        _log.error("scoring failed: %s", exc)
        return 500, {"error": str(exc)}
    except Exception as exc:
        # still answer with a body the caller can read; the traceback goes to the deployment log
        _log.exception("scoring failed")
        return 500, {"error": f"internal scoring error: {type(exc).__name__}: {exc}"}


def _count_call() -> int:
    global _calls
    with _calls_lock:
        _calls += 1
        return _calls


def _apply_fault(setting: str, call: int) -> None:
    setting = setting.strip()
    if not setting:
        return
    if setting == "error":
        raise DeploymentError(f"injected fault: {FAULT_ENV}=error")
    kind, _, value = setting.partition(":")
    if kind == "slow" and value.isdigit():
        time.sleep(int(value) / 1000)
        return
    if kind == "error-after" and value.isdigit():
        if call > int(value):
            raise DeploymentError(f"injected fault: {FAULT_ENV}={setting} (call {call})")
        return
    raise DeploymentError(f"invalid {FAULT_ENV} value {setting!r}; expected 'error', 'slow:<milliseconds>' "
                          "or 'error-after:<calls>'")


def parse_request(raw_data: str | bytes) -> np.ndarray:
    """Validate a request body and return the feature matrix in contract order."""
    try:
        payload = json.loads(raw_data)
    except (ValueError, TypeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise RequestError('request must be a JSON object with a "data" list')
    rows = payload["data"]
    if not isinstance(rows, list) or not rows:
        raise RequestError('"data" must be a non-empty list of rows')
    return np.array([_row(i, row) for i, row in enumerate(rows)], dtype=np.float64)


def _row(index: int, row: Any) -> list[float]:
    if isinstance(row, dict):
        missing = [f for f in FEATURES if f not in row]
        unexpected = [k for k in row if k not in FEATURES]
        checks = (("missing", missing), ("unexpected", unexpected))
        problems = [f"{label} {', '.join(keys)}" for label, keys in checks if keys]
        if problems:
            raise RequestError(f"row {index}: {'; '.join(problems)} (expected {', '.join(FEATURES)})")
        values = [row[f] for f in FEATURES]
    elif isinstance(row, list):
        if len(row) != len(FEATURES):
            raise RequestError(f"row {index}: {len(row)} values, expected {len(FEATURES)} ({', '.join(FEATURES)})")
        values = row
    else:
        raise RequestError(f"row {index}: expected a list of {len(FEATURES)} numbers or an object keyed by feature")
    return [_number(index, name, value) for name, value in zip(FEATURES, values, strict=True)]


def _number(index: int, name: str, value: Any) -> float:
    # bool is an int subclass in Python, but true/false in a request is a client bug, not a measurement
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer too large for a float
            number = math.inf
        if math.isfinite(number):
            return number
    raise RequestError(f"row {index}: {name} must be a finite number, got {json.dumps(value)[:40]}")
