"""Silences: matchers, a time window, an author and a comment, like Alertmanager's. A silenced
alert still changes state and is audited; only its notification is held back. Created, listed and
expired through this service (the admin API will expose it); every change is audited.

Table: {prefix}silences   PK "silence", RK silence id
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.alerting.matchers import Matcher, matches_all, parse_matcher
from core.errors import RequestError
from core.ledger import AuditRecord, Ledger
from core.ports import Clock, StateStore

PK = "silence"
MAX_DURATION = timedelta(days=90)


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "matchers": [str(m) for m in self.matchers], "starts_at": self.starts_at.isoformat(),
                "ends_at": self.ends_at.isoformat(), "created_by": self.created_by, "comment": self.comment}


class Silences:
    def __init__(self, store: StateStore, ledger: Ledger, *, prefix: str, clock: Clock) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self.table = f"{prefix}silences"

    def create(self, matchers: Sequence[str], duration: timedelta, created_by: str, comment: str,
               starts_at: datetime | None = None) -> Silence:
        """``RequestError`` naming the field when the silence would be unusable."""
        parsed = _matchers(matchers)
        if not timedelta(0) < duration <= MAX_DURATION:
            raise RequestError("duration", f"must be more than 0 and at most {MAX_DURATION.days} days")
        if not created_by.strip() or not comment.strip():
            raise RequestError("created_by" if not created_by.strip() else "comment", "is required")
        start = starts_at or self._clock()
        silence = Silence(uuid.uuid4().hex, parsed, start, start + duration, created_by.strip(), comment.strip()[:500])
        self._store.insert(self.table, PK, silence.id, _props(silence))
        self._audit("silence.created", silence, created_by)
        return silence

    def list(self, include_expired: bool = False) -> list[Silence]:
        now = self._clock()
        found = [_silence(e.row, e.props) for e in self._store.query(self.table, PK)]
        return sorted((s for s in found if include_expired or s.ends_at > now), key=lambda s: s.starts_at)

    def active(self, now: datetime) -> builtins.list[Silence]:
        return [s for s in self.list() if s.active(now)]

    def expire(self, silence_id: str, actor: str) -> Silence:
        """End a silence now; expiring an already expired one changes nothing. ``KeyError`` if unknown."""
        entity = self._store.get(self.table, PK, silence_id)
        if entity is None:
            raise KeyError(silence_id)
        silence, now = _silence(entity.row, entity.props), self._clock()
        if silence.ends_at <= now:
            return silence
        self._store.update(self.table, PK, silence_id, {"ends_at": now.isoformat(), "expired_by": actor}, entity.etag)
        expired = Silence(silence.id, silence.matchers, min(silence.starts_at, now), now, silence.created_by,
                          silence.comment)
        self._audit("silence.expired", expired, actor)
        return expired

    def _audit(self, action: str, silence: Silence, actor: str) -> None:
        self._ledger.audit(AuditRecord(action, silence.id, function="alerting", actor=actor, detail=silence.as_dict()))


def _matchers(texts: Sequence[str]) -> tuple[Matcher, ...]:
    if not isinstance(texts, list | tuple) or not texts:
        raise RequestError("matchers", "must be a non-empty list")
    parsed = []
    for i, text in enumerate(texts):
        try:
            parsed.append(parse_matcher(text))
        except ValueError as exc:
            raise RequestError(f"matchers[{i}]", str(exc)) from None
    if all(m.matches({}) for m in parsed):
        raise RequestError("matchers", "would match every alert (at least one must require a value)")
    return tuple(parsed)


def _props(s: Silence) -> dict[str, str]:
    return {"matchers": json.dumps([str(m) for m in s.matchers]), "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(), "created_by": s.created_by, "comment": s.comment}


def _silence(row: str, props: Mapping[str, object]) -> Silence:
    return Silence(row, tuple(parse_matcher(m) for m in json.loads(str(props["matchers"]))),
                   datetime.fromisoformat(str(props["starts_at"])), datetime.fromisoformat(str(props["ends_at"])),
                   str(props["created_by"]), str(props["comment"]))
