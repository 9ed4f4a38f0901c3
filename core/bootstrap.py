"""The one place the app gets its services from: built on first use and cached.

Nothing is built, and nothing heavy imported, when ``function_app`` is imported: the wiring
(``core/wiring.py``) loads on the first invocation, so cold start pays only for the trigger
decorators. Tests call ``build`` with their own settings (Azurite) or fakes and ``install``
the result.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings
    from core.wiring import Services

_lock = threading.Lock()
_services: Services | None = None


def build(settings: Settings, **adapters: Any) -> Services:
    from core.wiring import build as wire

    return wire(settings, **adapters)


def services() -> Services:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                from core.settings import Settings

                _services = build(Settings.from_env(os.environ))
    return _services


def install(built: Services | None) -> None:
    """Use these services from now on (tests); ``None`` rebuilds from the environment on next use."""
    global _services
    with _lock:
        _services = built


def __getattr__(name: str) -> Any:
    """``Services`` lives in core.wiring; reach it without loading the wiring early."""
    if name == "Services":
        import core.wiring

        return getattr(core.wiring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
