"""Shared command-line plumbing: expected failures become one line on stderr and exit code 1.

Pipeline logs and the reactor only surface the tail of a failed step, so the cause has to fit on
the last line instead of being buried in a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml.errors import MLError


def run(main: Callable[[], int], prog: str) -> int:
    try:
        return main()
    except MLError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON strictly: NaN or Infinity would produce files other JSON parsers reject."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
