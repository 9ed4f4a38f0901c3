"""Training baselines of registered versions, read from the local ML platform's models container
(``{prefix}-models/{model}/{version}/baseline.json``, written at registration by ``ml.train``).
Versions are immutable, so each baseline is read once and kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from core.ports import BlobStore

BASELINE_FILE = "baseline.json"  # ml.model_io.BASELINE_FILE; core does not import the ml package


class BlobBaselines:
    def __init__(self, blobs: BlobStore, container: str) -> None:
        self._blobs, self._container = blobs, container
        self._cache: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._lock = threading.Lock()

    def baseline(self, model: str, version: str) -> Mapping[str, Any] | None:
        key = (model, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        name = f"{model}/{int(version) if version.isdigit() else version}/{BASELINE_FILE}"
        names = {b.name for b in self._blobs.list(self._container, name)}
        if name not in names:
            return None
        doc = json.loads(self._blobs.get(self._container, name))
        if not isinstance(doc, dict):
            return None
        with self._lock:
            self._cache[key] = doc
        return doc
