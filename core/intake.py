"""Event intake: parse, validate, deduplicate, act, record. One path for every event.

    raw event -> parse (either schema) -> type accepted by this function? -> source allowed?
              -> claim in the ledger (dedup, before any side effect) -> handler -> finish (= audit)

An event its handler's *triage* says needs no work (no model of ours is fed by the blob, a run
status that is not final: most of what a busy workspace sends) is claimed and finished in one
write instead (``Ledger.settle``): the same record, one Table round trip instead of two.

Anything that fails validation, and any handler error, becomes a dead letter holding the
raw payload and the reason, so it can be replayed; the delivery is still answered as
received, because it *is* recorded. Only when the ledger itself is unreachable does an
error escape, so that Event Grid redelivers: then there is nowhere to record it.
An event whose claim another delivery still holds under its lease comes back as ``in_flight``:
the Event Grid functions fail that delivery (``EventInFlight``), because that holder may have
died with its host and only a redelivery after the lease can take the claim over.
"""

from __future__ import annotations

import json
import logging
import reprlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.errors import EventValidationError
from core.events import (
    ML,
    STORAGE,
    BlobCreated,
    DatasetDriftDetected,
    Event,
    ModelDeployed,
    ModelRegistered,
    RunCompleted,
    RunStatusChanged,
    parse_event,
)
from core.ledger import AuditRecord, Claim, Ledger, event_key
from core.logs import get_logger, log
from core.sources import SourcePolicy

# The Event Grid functions and the event types each one accepts.
FUNCTION_EVENTS: dict[str, tuple[type[Event], ...]] = {
    "on_blob_created": (BlobCreated,),
    "on_model_registered": (ModelRegistered,),
    "on_model_deployed": (ModelDeployed,),
    "on_run_status_changed": (RunStatusChanged, RunCompleted),
    "on_drift_detected": (DatasetDriftDetected,),
}

CORRELATION_TAG = "reactor_correlation_id"
# Pauses (seconds) before looking again at an event another delivery holds: a concurrent copy of it
# usually finishes within them, and then this delivery is a plain duplicate, not a failed batch.
IN_FLIGHT_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)

Status = Literal["processed", "duplicate", "in_flight", "dead_lettered", "failed"]


@dataclass(frozen=True)
class Receipt:
    """What became of one delivered event."""

    status: Status
    function: str
    event_id: str = ""
    correlation_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventContext:
    function: str
    correlation_id: str
    attempt: int


EventHandler = Callable[[Event, EventContext], Mapping[str, Any]]
# Says, from the event alone, that its handler has nothing to do for it: the outcome the handler would
# return (an event of no model of ours, a run status that is not final), or None when there is work.
Triage = Callable[[Event], Mapping[str, Any] | None]


def record_only(event: Event, ctx: EventContext) -> Mapping[str, Any]:
    """The default action: the event is recorded and logged, nothing more."""
    return {"action": "recorded"}


_log = get_logger("intake")


class Intake:
    def __init__(self, ledger: Ledger, sources: SourcePolicy,
                 handlers: Mapping[type[Event], EventHandler] | None = None, *,
                 triage: Mapping[type[Event], Triage] | None = None,
                 in_flight_waits: Sequence[float] = IN_FLIGHT_WAITS) -> None:
        self._ledger = ledger
        self._in_flight_waits = tuple(in_flight_waits)
        self._sources = sources
        self._handlers: dict[type[Event], EventHandler] = dict(handlers or {})
        self._triage: dict[type[Event], Triage] = dict(triage or {})

    def handle(self, event_type: type[Event], handler: EventHandler, triage: Triage | None = None) -> None:
        """Set the handler of an event type, with its triage (None: the handler runs for every event)."""
        self._handlers[event_type] = handler
        self._triage.pop(event_type, None)
        if triage is not None:
            self._triage[event_type] = triage

    def receive(self, function: str, raw: Mapping[str, Any], *, replay: bool = False) -> Receipt:
        if function not in FUNCTION_EVENTS:
            raise ValueError(f"{function} is not an Event Grid function of this app")
        try:
            event = self._validate(function, raw)
        except EventValidationError as err:
            return self._reject(function, raw, err)
        correlation_id = _correlation_id(event)
        key = event_key(event.source, event.type, event.id)
        settled = self._settled(event)
        if settled is None:
            claim = self._ledger.claim(function, key, event.summary(), correlation_id, retry_failed=replay)
        else:  # nothing to do: one write records it (Table Storage round trips are what intake costs)
            record = self._record("event.processed", function, event, correlation_id, settled)
            claim = self._ledger.settle(function, key, event.summary(), correlation_id, settled, record,
                                        retry_failed=replay)
            if claim.state == "won":
                return self._processed(function, event, correlation_id, settled)
        for pause in self._in_flight_waits:
            if claim.state != "in_flight":
                break
            time.sleep(pause)
            claim = self._ledger.recheck(function, key, retry_failed=replay)
        if claim.state != "won":
            return self._skip(function, event, claim, correlation_id)
        return self._run(function, raw, event, claim, correlation_id)

    def replay(self, letter_id: str, actor: str) -> Receipt:
        """Run a dead-lettered payload through its function again (once fixed, or after a
        transient failure). Replaying twice processes it once: the claim sees to that."""
        letter = self._ledger.get_dead_letter(letter_id)
        if letter is None:
            raise KeyError(f"no dead letter {letter_id!r}")
        raw = json.loads(self._ledger.dead_letter_payload(letter))
        receipt = self.receive(letter.function, raw, replay=True)
        if receipt.status in ("processed", "duplicate"):
            self._ledger.mark_dead_letter(letter_id, "replayed", {"receipt": receipt.status, "by": actor})
        self._ledger.audit(AuditRecord("deadletter.replayed", receipt.correlation_id or letter_id,
                                       function=letter.function, event_id=letter.event_id, actor=actor,
                                       detail={"dead_letter": letter_id, "result": receipt.status}))
        return receipt

    def _validate(self, function: str, raw: Mapping[str, Any]) -> Event:
        event = parse_event(raw)
        if not isinstance(event, FUNCTION_EVENTS[function]):
            raise EventValidationError("type", f"{event.type} is not handled by {function}")
        kind = "storage" if event.type.startswith(STORAGE) else "ml" if event.type.startswith(ML) else ""
        if not self._sources.allows(kind, event.source):
            field_name = "topic" if event.schema == "eventgrid" else "source"
            raise EventValidationError(field_name, f"{event.source!r} is not a configured {kind} event source")
        return event

    def _settled(self, event: Event) -> dict[str, Any] | None:
        """The outcome of an event known before any work, or None. A triage that fails says nothing:
        the handler then runs as usual and its own failure, if any, is what gets recorded."""
        if type(event) not in self._handlers:
            return dict(record_only(event, EventContext("", "", 1)))
        triage = self._triage.get(type(event))
        try:
            outcome = triage(event) if triage is not None else None
        except Exception:
            _log.exception("triage of %s failed; the handler decides", event.type)
            return None
        return None if outcome is None else dict(outcome)

    def _run(self, function: str, raw: Mapping[str, Any], event: Event, claim: Claim,
             correlation_id: str) -> Receipt:
        handler = self._handlers.get(type(event), record_only)
        ctx = EventContext(function, correlation_id, claim.attempt)
        try:
            outcome = dict(handler(event, ctx))
        except Exception as exc:  # any handler failure is recorded and kept for replay
            return self._fail(function, raw, event, claim, correlation_id, exc)
        self._ledger.finish(claim, "done", outcome, record=self._record("event.processed", function, event,
                                                                        correlation_id, outcome))
        return self._processed(function, event, correlation_id, outcome)

    def _processed(self, function: str, event: Event, correlation_id: str, outcome: dict[str, Any]) -> Receipt:
        log(_log, logging.INFO, "event processed", function=function, correlation_id=correlation_id,
            **event.summary(), action=outcome.get("action"))
        return Receipt("processed", function, event.id, correlation_id, outcome)

    def _fail(self, function: str, raw: Mapping[str, Any], event: Event, claim: Claim,
              correlation_id: str, exc: Exception) -> Receipt:
        reason = f"{type(exc).__name__}: {exc}"
        self._ledger.dead_letter(function, _encode(raw), reason=reason, field_name="",
                                 key=claim.key, event_id=event.id)
        self._ledger.finish(claim, "failed", {"error": reason},
                            record=self._record("event.failed", function, event, correlation_id, {"error": reason}))
        _log.exception("handler failed: %s", reason, extra={"custom_dimensions": {
            "function": function, "correlation_id": correlation_id, **event.summary()}})
        return Receipt("failed", function, event.id, correlation_id, {"error": reason})

    def _skip(self, function: str, event: Event, claim: Claim, correlation_id: str) -> Receipt:
        status: Status = "duplicate" if claim.state == "duplicate" else "in_flight"
        self._audit(f"event.{status}", function, event, correlation_id, {"first_status": claim.status})
        log(_log, logging.INFO, f"event skipped ({status})", function=function,
            correlation_id=correlation_id, **event.summary())
        return Receipt(status, function, event.id, correlation_id)

    def _reject(self, function: str, raw: Mapping[str, Any], err: EventValidationError) -> Receipt:
        event_id, key = _identity(raw)
        letter_id, created = self._ledger.dead_letter(function, _encode(raw), reason=str(err),
                                                      field_name=err.field, key=key, event_id=event_id)
        detail = {"dead_letter": letter_id, "field": err.field, "reason": err.reason, "first": created}
        self._ledger.audit(AuditRecord("event.rejected", correlation_id=key or letter_id, function=function,
                                       event_id=event_id, detail=detail))
        log(_log, logging.WARNING, "event rejected", function=function, event_id=event_id,
            field=err.field, reason=err.reason, dead_letter=letter_id)
        return Receipt("dead_lettered", function, event_id, key, detail)

    def _audit(self, action: str, function: str, event: Event, correlation_id: str,
               detail: Mapping[str, Any]) -> None:
        self._ledger.audit(self._record(action, function, event, correlation_id, detail))

    @staticmethod
    def _record(action: str, function: str, event: Event, correlation_id: str,
                detail: Mapping[str, Any]) -> AuditRecord:
        s = event.summary()
        return AuditRecord(action, correlation_id, function=function, event_id=event.id, event_type=event.type,
                           model=s.get("model", ""), version=s.get("version", ""), detail=detail)


def _correlation_id(event: Event) -> str:
    """Our own jobs and models carry the correlation id of the decision that made them."""
    tags = getattr(event, "tags", {})
    return tags.get(CORRELATION_TAG) or event_key(event.source, event.type, event.id)


def _identity(raw: Mapping[str, Any]) -> tuple[str, str]:
    """Best-effort id of an invalid event, so its duplicates share one dead letter."""
    if not isinstance(raw, Mapping):
        return "", ""
    event_id = raw.get("id")
    source = raw.get("topic") or raw.get("source")
    kind = raw.get("eventType") or raw.get("type")
    if all(isinstance(v, str) and v for v in (event_id, source, kind)):
        return str(event_id), event_key(str(source), str(kind), str(event_id))
    return (event_id if isinstance(event_id, str) else ""), ""


def _encode(raw: Any) -> bytes:
    """The payload as it arrived, for replay; what JSON cannot hold is kept as text."""
    try:
        return json.dumps(raw, default=str, ensure_ascii=False).encode()
    except (RecursionError, ValueError):
        shallow = reprlib.Repr()  # bounded depth: a plain repr() recurses as deep as json did
        shallow.maxlevel, shallow.maxdict, shallow.maxlist, shallow.maxstring = 50, 1000, 1000, 100_000
        return json.dumps({"unencodable_payload": shallow.repr(raw)}).encode()
