"""One alert's life, Prometheus style: inactive -> pending (held for ``for``) -> firing -> resolved.

``keep_firing_for`` is the hysteresis: a firing alert stays firing until its condition has been
clear for that long, so a flapping series yields one episode, not a storm. The state is written
only on edges (it records when the condition went clear rather than every tick it was true), so
a tick over a thousand steady alerts writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

State = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True)
class AlertState:
    fingerprint: str
    labels: dict[str, str]
    state: State = "inactive"
    source: str = "rule"  # rule | azure-monitor
    active_since: str = ""  # ISO times; "" when not applicable
    fired_at: str = ""
    clear_since: str = ""  # firing, but the condition has been clear since then
    resolved_at: str = ""
    changed_at: str = ""  # of the last transition (or of the sender's own clock for received alerts)
    value: str = ""  # the value at the last transition, as text
    annotations: dict[str, str] = field(default_factory=dict)  # summary, runbook, description...

    @property
    def firing(self) -> bool:
        return self.state == "firing"


def step(s: AlertState, breached: bool, value: float | None, now: datetime, for_: int,
         keep_firing_for: int) -> tuple[AlertState, State | None]:
    """The alert after one evaluation, and its transition (None when the state did not change)."""
    at = now.isoformat()
    shown = "" if value is None else f"{value:g}"
    if breached and s.state in ("inactive", "resolved"):
        s = replace(s, state="pending", active_since=at, fired_at="", clear_since="", resolved_at="", value=shown)
        return _promote(s, now, for_) or (replace(s, changed_at=at), "pending")
    if breached and s.state == "pending":
        return _promote(s, now, for_) or (s, None)
    if breached and s.firing:
        return (replace(s, clear_since=""), None) if s.clear_since else (s, None)
    if s.state == "pending":
        return replace(s, state="inactive", active_since="", changed_at=at, value=shown), "inactive"
    if s.firing:
        return _maybe_resolve(s, now, keep_firing_for, shown)
    return s, None


def _promote(s: AlertState, now: datetime, for_: int) -> tuple[AlertState, State] | None:
    if now - datetime.fromisoformat(s.active_since) < timedelta(seconds=for_):
        return None
    return replace(s, state="firing", fired_at=now.isoformat(), changed_at=now.isoformat()), "firing"


def _maybe_resolve(s: AlertState, now: datetime, keep_firing_for: int, shown: str) -> tuple[AlertState, State | None]:
    if not s.clear_since:
        s = replace(s, clear_since=now.isoformat())
        if keep_firing_for > 0:
            return s, None
    if now - datetime.fromisoformat(s.clear_since) < timedelta(seconds=keep_firing_for):
        return s, None
    at = now.isoformat()
    return replace(s, state="resolved", resolved_at=at, changed_at=at, clear_since="", value=shown), "resolved"
