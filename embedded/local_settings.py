"""Read ``local.settings.json`` (``Values``) into the environment, as Core Tools does.

Variables already in the environment win, so tests and shells can override a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "local.settings.sample.json"
LOCAL = ROOT / "local.settings.json"


def read_values(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    values = doc.get("Values")
    if not isinstance(values, dict):
        raise ValueError(f"{path} has no 'Values' object")
    return {str(k): str(v) for k, v in values.items()}


def settings_file() -> Path:
    """local.settings.json when present, else the sample (its defaults work locally)."""
    return LOCAL if LOCAL.exists() else SAMPLE


def apply(values: dict[str, str], env: MutableMapping[str, str] | None = None) -> None:
    target = os.environ if env is None else env
    for key, value in values.items():
        target.setdefault(key, value)
