"""The shape every per-model JSON setting shares (retraining, release and drift policies): empty
text means none, otherwise a JSON object of model name -> that model's entry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def per_model(text: str, setting: str, entry: str) -> tuple[Mapping[str, Any], list[str]]:
    """(the object, problems); an empty object, and the problem, when the text is not one."""
    if not text.strip():
        return {}, []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return {}, [f"{setting} is not valid JSON: {exc}"]
    if not isinstance(doc, Mapping):
        return {}, [f"{setting} must be a JSON object of model name -> {entry}"]
    return doc, []
