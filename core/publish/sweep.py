"""The sweep: an event that could not be stored is stored later, from the audit trail.

``Publisher.observe`` stores a decision's event right after its audit record is written. When that
store fails (storage throttled or down, the process stopped in between) the decision stands and its
event is not in the outbox. So each drain first sweeps the audit records written since a watermark
and stores the event of every published decision whose delivery is missing; ``enqueue`` is
idempotent by event id, so an event stored meanwhile (by ``observe`` or another drain) is stored
once. The decision's path pays nothing for it. A drain pays one range read of the audit table's
time-ordered keys (PK day, RK time; two ranges across midnight) of at most ``limit`` rows, filtered
by the service to the actions of published decisions (``catalogue.ACTION_PREFIXES``: a storm of
duplicate deliveries, each audited, does not reach the sweep), and one point read per decision.

The sweep stays ``margin`` behind its clock: a record is swept only once every record timed before
it can be seen (a writer whose clock is behind, a write held in a group commit or retried). A
storage error stops the sweep at that record; the next drain starts there again. The sweep never
looks further back than ``horizon``, well inside the events outbox's retention (7 days: an event
delivered longer ago is forgotten and would be sent again); the first sweep of all (no watermark)
starts ``first_lookback`` back. The watermark moves under its ETag only, so two drains sweeping at
once store a missing event once and the slower one never moves the watermark back.

    {prefix}sweep   PK "audit", RK "watermark"   after: the id of the last audit row swept
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import ConflictError, PreconditionFailed
from core.ledger import AuditRecord, Ledger, as_record, audit_stamp
from core.logs import get_logger, log
from core.notify.model import Notification
from core.notify.outbox import Outbox
from core.ports import Clock, Entity, StateStore
from core.publish.catalogue import ACTION_PREFIXES

MARGIN = timedelta(minutes=2)
HORIZON = timedelta(days=1)
FIRST_LOOKBACK = timedelta(minutes=10)
LIMIT = 1000  # audit rows per drain: the drain runs every 30 s by default
_PK, _RK = "audit", "watermark"
_log = get_logger("publish.sweep")

EventOf = Callable[[AuditRecord, datetime], Notification | None]  # a record's event, None if it has none


@dataclass
class SweepReport:
    read: int = 0  # audit rows read: those of decisions that may be published
    recovered: int = 0  # events stored by the sweep: storing them with their decision had failed
    unreadable: int = 0  # rows that are not a record the catalogue can read (each logged)
    failed: int = 0  # 1 when storage stopped the sweep; the next one starts where it stopped


class Sweep:
    def __init__(self, store: StateStore, ledger: Ledger, outbox: Outbox, *, prefix: str, clock: Clock,
                 margin: timedelta = MARGIN, limit: int = LIMIT, horizon: timedelta = HORIZON,
                 first_lookback: timedelta = FIRST_LOOKBACK) -> None:
        self._store, self._ledger, self._outbox, self._clock = store, ledger, outbox, clock
        self._margin, self._limit, self._horizon, self._first = margin, limit, horizon, first_lookback
        self.table = f"{prefix}sweep"

    def run(self, event_of: EventOf, now: datetime | None = None) -> SweepReport:
        """Store the missing events of the audit records written since the watermark; never raises."""
        now = now or self._clock()
        report = SweepReport()
        try:
            mark = self._store.get(self.table, _PK, _RK)
            start = self._start(mark, now)
            rows = self._ledger.audit_rows(after=start, before=now - self._margin, limit=self._limit,
                                           actions=ACTION_PREFIXES)
        except Exception as exc:  # storage: nothing swept, nothing moved; the next drain tries again
            report.failed = 1
            log(_log, logging.ERROR, "audit trail not swept", error=f"{type(exc).__name__}: {exc}")
            return report
        report.read = len(rows)
        done = self._sweep_rows(rows, event_of, report) or start
        if not report.failed and len(rows) < self._limit:  # everything before the margin is swept
            done = max(done, audit_stamp(now - self._margin))
        self._advance(mark, done, report)
        return report

    def _sweep_rows(self, rows: list[Entity], event_of: EventOf, report: SweepReport) -> str:
        """The id of the last row swept ("" for none): a storage error stops the sweep before its row."""
        done = ""
        for row in rows:
            if not self._sweep_one(row, event_of, report):
                break
            done = row.row
        return done

    def _start(self, mark: Entity | None, now: datetime) -> str:
        floor = audit_stamp(now - self._horizon)
        after = str(mark.props.get("after", "")) if mark else audit_stamp(now - self._first)
        if after < floor:
            log(_log, logging.WARNING, "the sweep was behind its horizon; older audit records are not swept",
                watermark=after, horizon_hours=self._horizon.total_seconds() / 3600)
            return floor
        return after

    def _sweep_one(self, row: Entity, event_of: EventOf, report: SweepReport) -> bool:
        """False when storage failed: the sweep stops before this row."""
        try:
            record, at = as_record(row)
            event = event_of(record, at)
        except Exception as exc:  # no record the catalogue reads: there is no event to store, and we say so
            report.unreadable += 1
            log(_log, logging.ERROR, "audit row unreadable; its event (if any) cannot be recovered", row=row.row,
                error=f"{type(exc).__name__}: {exc}"[:300])
            return True
        if event is None:
            return True
        try:
            if self._outbox.stored(event):
                return True
            self._outbox.enqueue(event)
        except Exception as exc:  # storage still refusing: stop here, the next drain starts at this row
            report.failed = 1
            log(_log, logging.ERROR, "sweep stopped: an event could not be stored; the next drain tries again",
                event_id=event.id, error=f"{type(exc).__name__}: {exc}")
            return False
        report.recovered += 1
        log(_log, logging.WARNING, "event recovered from the audit trail (storing it with its decision failed)",
            event_id=event.id, event_type=event.title, correlation_id=record.correlation_id)
        return True

    def _advance(self, mark: Entity | None, done: str, report: SweepReport) -> None:
        if mark is not None and str(mark.props.get("after", "")) >= done:
            return
        try:
            if mark is None:
                self._store.insert(self.table, _PK, _RK, {"after": done})
            else:
                self._store.update(self.table, _PK, _RK, {"after": done}, mark.etag)
        except (ConflictError, PreconditionFailed):  # another drain swept meanwhile; its mark stands
            return
        except Exception as exc:  # storage: the next drain sweeps these rows again, storing nothing twice
            report.failed = 1
            log(_log, logging.ERROR, "sweep watermark not saved", error=f"{type(exc).__name__}: {exc}")
