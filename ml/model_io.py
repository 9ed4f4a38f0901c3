"""Reading a model directory written by ``ml.train``.

A model directory travels between steps and services (pipeline outputs, registered model assets,
deployments). Azure ML mounts a registered folder model one level down, under the folder's name, so
readers accept the files either at the top or in exactly one subfolder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib

from ml.dataset import FEATURES
from ml.errors import ModelError

MODEL_FILE = "model.pkl"
CARD_FILE = "model.json"
BASELINE_FILE = "baseline.json"
SAMPLE_FILE = "sample_input.json"
MODEL_FILES: tuple[str, ...] = (MODEL_FILE, CARD_FILE, BASELINE_FILE, SAMPLE_FILE)


def find_model_dir(root: str | Path) -> Path:
    """Return the directory holding ``model.pkl``: ``root`` itself or its only subfolder that has one."""
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"{root}: model directory does not exist")
    if (root / MODEL_FILE).is_file():
        return root
    nested = sorted(p.parent for p in root.glob(f"*/{MODEL_FILE}") if p.is_file())
    if len(nested) == 1:
        return nested[0]
    if nested:
        raise ModelError(f"{root}: several model folders ({', '.join(p.name for p in nested)}); expected one")
    raise ModelError(f"{root}: no {MODEL_FILE} found (looked in the directory and its subfolders)")


def load_estimator(model_dir: str | Path) -> Any:
    """Load the fitted estimator and check it takes the contract's features."""
    path = find_model_dir(model_dir) / MODEL_FILE
    try:
        # pickles only come from our own training step; never point this at untrusted files
        estimator = joblib.load(path)
    except Exception as exc:  # unpickling raises anything from EOFError to AttributeError
        raise ModelError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from exc
    n_features = getattr(estimator, "n_features_in_", None)
    if not hasattr(estimator, "predict") or n_features != len(FEATURES):
        raise ModelError(f"{path}: not a fitted regressor over the {len(FEATURES)} contract features")
    return estimator


def load_card(model_dir: str | Path) -> dict[str, Any]:
    """Read ``model.json``, the training record written next to the model."""
    path = find_model_dir(model_dir) / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return card
