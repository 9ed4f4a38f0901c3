"""Health: are the settings valid and is the ledger reachable? Names problems, never values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import SettingsError


def check(get_services: Callable[[], Any]) -> tuple[bool, dict[str, Any]]:
    try:
        services = get_services()
    except SettingsError as err:
        return False, {"status": "unhealthy", "settings": err.problems}
    try:
        services.ledger.event_record("health", "probe")
    except Exception as exc:  # any storage failure makes us unhealthy; the type says which
        return False, {"status": "unhealthy", "storage": type(exc).__name__}
    return True, {"status": "healthy", "storage": "reachable"}
