"""Which event sources (Event Grid ``topic`` / CloudEvents ``source``) the app accepts.

Azure resource ids compare case-insensitively. A pattern may use ``*`` for any run of
characters, so a local set-up can accept any storage account while production names
exactly one resource id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = ["".join(".*" if c == "*" else re.escape(c) for c in p) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE) if parts else None


class SourcePolicy:
    def __init__(self, storage: Iterable[str], ml: Iterable[str]) -> None:
        self._by_kind = {"storage": _compile(storage), "ml": _compile(ml)}

    def allows(self, kind: str, source: str) -> bool:
        pattern = self._by_kind.get(kind)
        return bool(pattern and pattern.fullmatch(source.rstrip("/")))
