"""The ledger: idempotency claims, the audit trail and dead letters, in Table Storage.

Event Grid delivers at least once and out of order, and several host instances may
receive the same event at the same moment. So before any side effect an event is
*claimed* with an insert-if-absent: exactly one delivery wins; the others see the claim
and skip. A claim carries a lease: if the winner dies mid-work, a later delivery takes
the claim over (ETag-conditional) once the lease has run out.

Tables (prefix from settings):
    {prefix}events       PK function, RK event key   one claim per event and function
    {prefix}audit        PK yyyymmdd,  RK time-ordered  every other event record and decision
    {prefix}deadletters  PK function, RK event key   raw payload (in a blob) + reason

An event's own audit record (``event.processed`` / ``event.failed``) is written by the same
ETag-guarded write that finishes its claim: the claim carries the record's fields from the
start and the finish adds the action. One round trip fewer per event, and the finish and its
audit line can no longer be separated by a crash. ``audit_records`` reads both tables; a
replay that takes over a failed claim first copies the failed record into the audit table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from core.errors import ConflictError, PreconditionFailed
from core.ports import BlobStore, Clock, Entity, StateStore

ClaimState = Literal["won", "duplicate", "in_flight"]
SYSTEM = "system"
MAX_DETAIL = 30_000  # characters; a Table property holds at most 64 KiB
DONE_REMEMBERED = 20_000  # claims per process (a few MB): Event Grid redeliveries come within minutes


def event_key(source: str, event_type: str, event_id: str) -> str:
    """Event Grid ids are unique per source; some producers also reuse ids across types."""
    text = f"{source.lower()}\n{event_type.lower()}\n{event_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Claim:
    function: str
    key: str
    state: ClaimState
    etag: str = ""
    attempt: int = 1
    status: str = ""


@dataclass(frozen=True)
class AuditRecord:
    action: str
    correlation_id: str
    function: str = ""
    event_id: str = ""
    event_type: str = ""
    model: str = ""
    version: str = ""
    actor: str = SYSTEM
    detail: Mapping[str, Any] = field(default_factory=dict)


AuditHook = Callable[[AuditRecord, datetime], None]


@dataclass(frozen=True)
class DeadLetter:
    id: str
    function: str
    reason: str
    field: str
    event_id: str
    received_at: str
    status: str
    blob: str


class Ledger:
    def __init__(self, store: StateStore, blobs: BlobStore, *, prefix: str, container: str,
                 clock: Clock, lease_seconds: int, on_audit: AuditHook | None = None) -> None:
        self._store = store
        # Told of every audit record once it is written (our own events, core/publish); must not raise.
        self.on_audit = on_audit
        self._blobs = blobs
        self._container = container
        self._clock = clock
        self._lease = timedelta(seconds=lease_seconds)
        self.events_table = f"{prefix}events"
        self.audit_table = f"{prefix}audit"
        self.deadletters_table = f"{prefix}deadletters"
        self._done = _Recent(DONE_REMEMBERED)  # redeliveries of what this process saw done skip storage

    # -- claims ---------------------------------------------------------------------------
    def claim(self, function: str, key: str, summary: Mapping[str, str], correlation_id: str,
              *, retry_failed: bool = False) -> Claim:
        """Claim an event for this function; ``retry_failed`` (a replay) may take over a failed claim."""
        if self._done.seen((function, key)):  # "done" is final: nothing ever takes such a claim over
            return Claim(function, key, "duplicate", status="done")
        now = self._clock()
        props = _claim_props(function, summary, correlation_id, now) | {
            "status": "processing", "lease_until": (now + self._lease).isoformat()}
        try:
            etag = self._store.insert(self.events_table, function, key, props)
            return Claim(function, key, "won", etag)
        except ConflictError:
            return self._contend(function, key, now, retry_failed)

    def settle(self, function: str, key: str, summary: Mapping[str, str], correlation_id: str,
               outcome: Mapping[str, Any], record: AuditRecord, *, retry_failed: bool = False) -> Claim:
        """Claim and finish in one write, for an event whose outcome is known before any work (one that
        needs no action): the claim is inserted done, with its audit record. Won means recorded (also
        when an earlier claim of the event was taken over, then finished); otherwise the claim is as
        ``claim`` would find it (a duplicate, or in flight under another delivery's lease)."""
        if self._done.seen((function, key)):
            return Claim(function, key, "duplicate", status="done")
        when = self._clock()
        props = _claim_props(function, summary, correlation_id, when) | _finish_props("done", outcome, record, when)
        try:
            etag = self._store.insert(self.events_table, function, key, props)
        except ConflictError:
            claim = self._contend(function, key, when, retry_failed)
            if claim.state != "won":
                return claim
            if not self.finish(claim, "done", outcome, record=record):
                return Claim(function, key, "in_flight")  # taken over by another delivery meanwhile
            return replace(claim, status="done")
        self._done.add((function, key))
        if self.on_audit is not None:
            self.on_audit(record, when)
        return Claim(function, key, "won", etag, status="done")

    def recheck(self, function: str, key: str, *, retry_failed: bool = False) -> Claim:
        """Look again at a claim seen in flight: done by now (duplicate), still in flight, or taken
        over by this caller once its lease ran out (won)."""
        return self._contend(function, key, self._clock(), retry_failed)

    def _contend(self, function: str, key: str, now: datetime, retry_failed: bool) -> Claim:
        existing = self._store.get(self.events_table, function, key)
        if existing is None:  # deleted between our insert and read: treat as still in flight
            return Claim(function, key, "in_flight")
        status = str(existing.props.get("status", ""))
        if status == "failed" and retry_failed:
            return self._take_over(existing, now)
        if status != "processing":
            if status == "done":
                self._done.add((function, key))
            return Claim(function, key, "duplicate", status=status)
        if datetime.fromisoformat(str(existing.props["lease_until"])) > now:
            return Claim(function, key, "in_flight", status=status)
        return self._take_over(existing, now)

    def _take_over(self, existing: Entity, now: datetime) -> Claim:
        if existing.props.get("action"):  # a failed claim's record stays in the trail after the replay
            self._keep_record(existing)
        attempt = int(existing.props.get("attempt", 1)) + 1
        props = {"attempt": attempt, "status": "processing", "lease_until": (now + self._lease).isoformat(),
                 "action": ""}
        try:
            etag = self._store.update(self.events_table, existing.partition, existing.row, props, existing.etag)
        except PreconditionFailed:
            return Claim(existing.partition, existing.row, "in_flight")
        return Claim(existing.partition, existing.row, "won", etag, attempt)

    def _keep_record(self, claim: Entity) -> None:
        record = _claim_record(claim)
        props = {k: v for k, v in record.items() if k != "id"} | {"detail": claim.props.get("outcome") or "{}"}
        with contextlib.suppress(ConflictError):  # a deterministic row: two replays racing keep one copy
            self._store.insert(self.audit_table, str(record["id"])[:8], str(record["id"]), props)

    def finish(self, claim: Claim, status: str, outcome: Mapping[str, Any], *,
               record: AuditRecord | None = None) -> bool:
        """Close a won claim; False if the lease was lost to another delivery meanwhile.

        With ``record`` the same write is the event's audit record (see the module docstring;
        the claim already holds its other fields, the outcome is its detail): ``on_audit`` is
        told of it as of every record ``audit`` writes."""
        when = self._clock()
        props = _finish_props(status, outcome, record, when)
        try:
            self._store.update(self.events_table, claim.function, claim.key, props, claim.etag)
        except PreconditionFailed:
            return False
        if status == "done":
            self._done.add((claim.function, claim.key))
        if record is not None and self.on_audit is not None:
            self.on_audit(record, when)
        return True

    def event_record(self, function: str, key: str) -> Entity | None:
        return self._store.get(self.events_table, function, key)

    # -- audit ----------------------------------------------------------------------------
    def audit(self, record: AuditRecord) -> str:
        now = self._clock()
        row = f"{audit_stamp(now)}-{uuid.uuid4().hex[:12]}"
        props = {"action": record.action, "correlation_id": record.correlation_id,
                 "function": record.function, "event_id": record.event_id, "event_type": record.event_type,
                 "model": record.model, "version": record.version, "actor": record.actor,
                 "at": now.isoformat(), "detail": _clip(json.dumps(dict(record.detail), default=str))}
        self._store.insert(self.audit_table, now.strftime("%Y%m%d"), row, props)
        if self.on_audit is not None:
            self.on_audit(record, now)
        return row

    def audit_records(self, where: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Matching records of both tables, oldest first."""
        rows = [{**e.props, "id": e.row, "detail": json.loads(str(e.props.get("detail") or "{}"))}
                for e in self._store.query(self.audit_table, where=where)]
        conditions = dict(where or {})
        function = conditions.pop("function", None)  # the claims' partition: no need to scan the others
        claims = self._store.query(self.events_table, partition=function, where=conditions)
        rows += [_claim_record(e) for e in claims if e.props.get("action")]
        return sorted(rows, key=lambda r: str(r["id"]))

    def audit_rows(self, *, after: str, before: datetime, limit: int, actions: Sequence[str] = ()) -> list[Entity]:
        """Rows of the audit table whose id sorts after ``after`` and that were written before ``before``
        (and whose action starts with one of ``actions``), oldest first, at most ``limit`` (``as_record``
        reads one). A range of each day's partition, never a scan. The records a claim holds
        (``event.processed``, ``event.failed``) stay in the events table: they are not among them."""
        prefixes = {"action": actions} if actions else None
        end = audit_stamp(before)
        day = datetime.strptime(after[:8], "%Y%m%d") if after[:8].isdigit() else before.replace(tzinfo=None)
        rows: list[Entity] = []
        while len(rows) < limit and day.strftime("%Y%m%d") <= end[:8]:
            rows += self._store.query_rows(self.audit_table, day.strftime("%Y%m%d"), above=after, below=end,
                                           limit=limit - len(rows), prefixes=prefixes)
            day += timedelta(days=1)
        return rows

    # -- dead letters ---------------------------------------------------------------------
    def dead_letter(self, function: str, raw: bytes, *, reason: str, field_name: str,
                    key: str = "", event_id: str = "") -> tuple[str, bool]:
        """Keep a rejected payload for replay. Returns (id, created); the same payload twice is one record."""
        key = key or hashlib.sha256(raw).hexdigest()[:40]
        blob = f"deadletters/{function}/{key}.json"
        self._blobs.put(self._container, blob, raw)
        props = {"function": function, "reason": _clip(reason), "field": field_name, "event_id": event_id,
                 "received_at": self._clock().isoformat(), "status": "pending", "blob": blob, "size": len(raw)}
        try:
            self._store.insert(self.deadletters_table, function, key, props)
        except ConflictError:
            return f"{function}/{key}", False
        return f"{function}/{key}", True

    def dead_letters(self, function: str | None = None) -> Iterator[DeadLetter]:
        return self._as_letters(self._store.query(self.deadletters_table, partition=function))

    def _as_letters(self, entities: Iterable[Entity]) -> Iterator[DeadLetter]:
        for e in entities:
            p = e.props
            yield DeadLetter(id=f"{e.partition}/{e.row}", function=e.partition, reason=str(p["reason"]),
                             field=str(p.get("field", "")), event_id=str(p.get("event_id", "")),
                             received_at=str(p["received_at"]), status=str(p["status"]), blob=str(p["blob"]))

    def dead_letter_payload(self, letter: DeadLetter) -> bytes:
        return self._blobs.get(self._container, letter.blob)

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        function, _, key = letter_id.partition("/")
        found = self._store.get(self.deadletters_table, function, key) if key else None
        if found is None:
            return None
        return next(d for d in self._as_letters([found]))

    def mark_dead_letter(self, letter_id: str, status: str, detail: Mapping[str, Any]) -> None:
        function, _, key = letter_id.partition("/")
        found = self._store.get(self.deadletters_table, function, key)
        if found is None:
            raise KeyError(letter_id)
        props = {"status": status, "resolved_at": self._clock().isoformat(),
                 "resolution": _clip(json.dumps(dict(detail), default=str))}
        self._store.update(self.deadletters_table, function, key, props, found.etag)


class _Recent:
    """A bounded set, oldest first out; safe across threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: Hashable) -> bool:
        return key in self._keys

    def add(self, key: Hashable) -> None:
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)


AUDIT_FIELDS = ("action", "correlation_id", "function", "event_id", "event_type", "model", "version", "actor",
                "at")


def audit_stamp(at: datetime) -> str:
    """The time an audit row's id starts with (its RowKey; the first 8 characters are its PartitionKey)."""
    return at.strftime("%Y%m%dT%H%M%S%f")


def as_record(row: Entity) -> tuple[AuditRecord, datetime]:
    """An audit-table row read back as the record written and its time; ValueError when it is not one."""
    p = row.props
    detail = json.loads(str(p.get("detail") or "{}"))  # a clipped detail is no longer JSON: ValueError
    if not isinstance(detail, dict):
        raise ValueError(f"{row.row}: detail is not an object")
    text = {name: str(p.get(name, "")) for name in AUDIT_FIELDS}
    record = AuditRecord(text["action"], text["correlation_id"], text["function"], text["event_id"],
                         text["event_type"], text["model"], text["version"], text["actor"], detail)
    return record, datetime.fromisoformat(text["at"])  # no time: ValueError


def _claim_record(claim: Entity) -> dict[str, Any]:
    """A finished claim as the audit record it holds; its id sorts by time like the audit table's rows."""
    p = claim.props
    at = datetime.fromisoformat(str(p["at"]))
    record: dict[str, Any] = {name: p.get(name, "") for name in AUDIT_FIELDS}
    return record | {"id": f"{audit_stamp(at)}-{claim.row[:12]}",
                     "detail": json.loads(str(p.get("outcome") or "{}"))}


def _claim_props(function: str, summary: Mapping[str, str], correlation_id: str, now: datetime) -> dict[str, Any]:
    """What every claim row holds from the start: the event's summary and the fields of its audit record."""
    return {**summary, "function": function, "model": summary.get("model", ""), "version": summary.get("version", ""),
            "attempt": 1, "correlation_id": correlation_id, "received_at": now.isoformat()}


def _finish_props(status: str, outcome: Mapping[str, Any], record: AuditRecord | None,
                  now: datetime) -> dict[str, Any]:
    """What a finish adds to a claim: its end, the outcome and, with ``record``, the rest of its audit record."""
    props = {"status": status, "finished_at": now.isoformat(),
             "outcome": _clip(json.dumps(outcome, default=str, sort_keys=True))}
    if record is not None:
        props |= {"action": record.action, "at": now.isoformat(), "actor": record.actor}
    return props


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "...(truncated)"
