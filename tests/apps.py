"""A fresh ``FunctionApp`` for the test modules that index it themselves."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_function_app(module_name: str = "_test_function_app") -> Any:
    """A fresh ``FunctionApp`` built from ``function_app.py``.

    ``app.get_functions()`` may be called only once per app object (a second call raises on
    duplicate names) and other test modules call it on ``function_app.app``; executing the file
    again as a private module gives the caller its own app object over the same blueprints.
    """
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app
