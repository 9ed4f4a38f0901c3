"""The mute stages: inhibition (a firing source alert mutes matching targets sharing the ``equal``
labels, e.g. endpoint down mutes its latency alerts) and silences. Muted alerts keep their state;
only their notifications are held back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.alerting.lifecycle import AlertState
from core.alerting.matchers import matches_all
from core.alerting.rules import InhibitRule
from core.alerting.silences import Silence


def inhibited(firing: Sequence[AlertState], rules: Sequence[InhibitRule]) -> set[str]:
    """Fingerprints of firing alerts muted by another firing alert."""
    muted: set[str] = set()
    for rule in rules:
        sources: dict[tuple[str, ...], set[str]] = {}
        for a in firing:
            if matches_all(rule.source, a.labels):
                sources.setdefault(_equal(a, rule), set()).add(a.fingerprint)
        for a in firing:
            if matches_all(rule.target, a.labels) and sources.get(_equal(a, rule), set()) - {a.fingerprint}:
                muted.add(a.fingerprint)
    return muted


def silenced(firing: Sequence[AlertState], silences: Sequence[Silence], now: datetime) -> set[str]:
    return {a.fingerprint for a in firing if any(s.mutes(a.labels, now) for s in silences)}


def _equal(alert: AlertState, rule: InhibitRule) -> tuple[str, ...]:
    return tuple(alert.labels.get(name, "") for name in rule.equal)
