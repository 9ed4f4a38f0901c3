"""The outbox: notifications are stored before anything is sent, then delivered by ``drain``.

``enqueue`` writes the notification and one delivery row per routed receiver, each
insert-if-absent (the same notification twice is stored once). ``drain`` takes each due
delivery with an ETag-conditional *claim* (a short lease), so two instances draining at
once never both send it; a 2xx marks it sent, a retry verdict reschedules it (backoff,
Retry-After), a reject records a configuration error in the audit trail. Nothing is ever
dropped: a failing receiver keeps its deliveries pending until it answers. A crash between
a 2xx and the "sent" mark sends that one again after the lease: at least once, not at most.

Table Storage indexes only PartitionKey and RowKey, so what the drain and the housekeeping look for
is kept in an index whose RowKey starts with a time: ``drain`` reads the ``due`` partition up to now
(a range of the primary index, not a scan of every delivery ever made), and ``prune`` reads the
``done`` partition up to now minus the retention and deletes what was delivered or rejected then
(the audit trail keeps the record of a rejection). Index rows are written *before* the delivery row
they point to changes and deleted after it, so a crash leaves a stale index row (dropped when read:
its time no longer matches the delivery's) but never a delivery nobody will find. Rows stored before
the index existed are indexed once, by the first drain that finds no index marker.

Tables (prefix from settings):
    {prefix}notifications  PK hash of notification id, RK "n"        the notification
    {prefix}deliveries     PK hash of notification id, RK receiver   status, due_at, lease_until
    {prefix}outboxindex    PK "due",  RK "<due time>|<PK>|<receiver>"   pending deliveries by due time
                           PK "done", RK "<end time>|<PK>|<receiver>"   sent or rejected, by when
                           PK "meta", RK "backfill"                    rows stored before are indexed
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import ConflictError, PreconditionFailed, StoreError
from core.ledger import AuditRecord, Ledger
from core.logs import get_logger, log
from core.notify.backoff import Backoff
from core.notify.codec import from_props, to_props
from core.notify.model import Notification
from core.notify.receivers import Builder, build
from core.notify.request import Request
from core.notify.routing import Routes
from core.notify.send import Verdict
from core.ports import Clock, Entity, StateStore

Send = Callable[[Request, datetime], Verdict]
_log = get_logger("notify.outbox")
_ROW = "n"
DUE, DONE, META = "due", "done", "meta"
FINISHED = ("sent", "rejected")


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    rejected: int = 0
    busy: int = 0  # claimed by another drain meanwhile
    failed: int = 0  # the store refused a write; the delivery stays pending
    stale: int = 0  # index rows left by a crash, dropped
    pruned: int = 0  # delivered or rejected rows older than the retention, deleted


def notification_key(notification_id: str) -> str:
    """Table keys forbid / \\ # ? and control characters; ids are free text."""
    return hashlib.sha256(notification_id.encode()).hexdigest()[:40]


class Outbox:
    def __init__(self, store: StateStore, ledger: Ledger, *, prefix: str, routes: Routes, clock: Clock,
                 send: Send, lease_seconds: int = 60, backoff: Backoff | None = None,
                 jitter: Callable[[], float] = random.random, retention: timedelta = timedelta(days=7),
                 build: Builder = build) -> None:
        self._store, self._ledger, self._routes, self._clock = store, ledger, routes, clock
        self._build = build  # notification + receiver -> request; our own events bring their own (core/publish)
        self._send = send
        self._lease = timedelta(seconds=lease_seconds)
        self._backoff = backoff or Backoff()
        self._jitter = jitter
        self._retention = retention
        self._indexed = False  # the backfill marker was seen (or written) by this instance
        self.notifications_table = f"{prefix}notifications"
        self.deliveries_table = f"{prefix}deliveries"
        self.index_table = f"{prefix}outboxindex"

    # -- enqueue --------------------------------------------------------------------------
    def enqueue(self, notification: Notification) -> bool:
        """Store it and its deliveries; False if it was stored before (missing deliveries are added)."""
        key = notification_key(notification.id)
        try:
            self._store.insert(self.notifications_table, key, _ROW, to_props(notification))
            created = True
        except ConflictError:
            created = False
        targets = self._routes.targets(notification)
        receivers = [self._add_delivery(key, notification, t.name) for t in targets]
        if created and not targets:  # sent nowhere: only the retention applies to it
            self._index(DONE, self._clock(), key, "")
        log(_log, logging.INFO, "notification stored" if created else "notification already stored",
            notification_id=notification.id, receivers=",".join(r for r in receivers if r) or "none")
        return created

    def _add_delivery(self, key: str, n: Notification, receiver: str) -> str:
        at = self._clock()
        now = at.isoformat()
        props = {"notification_id": n.id, "receiver": receiver, "status": "pending", "attempts": 0,
                 "due_at": now, "lease_until": "", "created_at": now, "last_error": "", "last_status": 0}
        index, indexed = self._index(DUE, at, key, receiver)  # first: the delivery can never go unindexed
        try:
            self._store.insert(self.deliveries_table, key, receiver, props)
        except ConflictError:
            if indexed:  # stored and indexed before; the row just written points at nothing
                self._store.delete(self.index_table, DUE, index)
            return ""
        return receiver

    def stored(self, notification: Notification) -> bool:
        """Whether every delivery it is routed to is stored (an enqueue cut short stored only some;
        a delivery is written after its notification, so its row stands for both)."""
        key = notification_key(notification.id)
        return all(self._store.get(self.deliveries_table, key, t.name) is not None
                   for t in self._routes.targets(notification))

    def backlog(self) -> int:
        """Deliveries still to be made (pending, due now or later after a failed attempt): the due
        index, one partition (a crash's stale row counts until the drain reaches it)."""
        return sum(1 for _ in self._store.query(self.index_table, partition=DUE))

    # -- drain ----------------------------------------------------------------------------
    def drain(self, now: datetime | None = None, limit: int = 500) -> DrainReport:
        """Send every due delivery (at most ``limit``), oldest first; then prune what is past retention."""
        now = now or self._clock()
        self._backfill()
        report = DrainReport()
        due = list(self._store.query_rows(self.index_table, DUE, below=_stamp(now) + "~", limit=limit))
        for index in due:
            entity = self._store.get(self.deliveries_table, str(index.props["key"]), str(index.props["receiver"]))
            if entity is None or entity.props.get("status") != "pending" or _index_of(entity) != index.row:
                self._store.delete(self.index_table, DUE, index.row)  # left by a crash: the delivery moved on
                report.stale += 1
                continue
            try:
                self._drain_one(entity, index.row, now, report)
            except StoreError as exc:
                report.failed += 1
                log(_log, logging.ERROR, "delivery bookkeeping failed; it stays pending",
                    receiver=entity.row, notification_id=entity.props.get("notification_id"), error=str(exc))
        report.pruned = self.prune(now)
        if due or report.pruned:
            log(_log, logging.INFO, "outbox drained", **vars(report))
        return report

    def _drain_one(self, entity: Entity, index: str, now: datetime, report: DrainReport) -> None:
        if not _lease_over(entity, now):
            report.busy += 1
            return
        etag = self._claim(entity, now)
        if etag is None:
            report.busy += 1
            return
        attempts = int(entity.props.get("attempts", 0)) + 1
        verdict = self._attempt(entity, now)
        if verdict.outcome == "delivered":
            self._index(DONE, now, entity.partition, entity.row)
            moved = self._finish(entity, etag, {"status": "sent", "sent_at": now.isoformat(),
                                                "last_status": verdict.status})
            report.sent += 1
        elif verdict.outcome == "retry":
            moved = self._reschedule(entity, etag, attempts, verdict, now)
            report.retried += 1
        else:
            self._index(DONE, now, entity.partition, entity.row)
            moved = self._reject(entity, etag, verdict, now)
            report.rejected += 1
        if moved:  # only once the delivery row moved on: a lost lease leaves the index to its new holder
            self._store.delete(self.index_table, DUE, index)

    def _claim(self, entity: Entity, now: datetime) -> str | None:
        props = {"lease_until": (now + self._lease).isoformat(),
                 "attempts": int(entity.props.get("attempts", 0)) + 1}
        try:
            return self._store.update(self.deliveries_table, entity.partition, entity.row, props, entity.etag)
        except PreconditionFailed:
            return None

    def _attempt(self, entity: Entity, now: datetime) -> Verdict:
        target = self._routes.receivers.get(entity.row)
        stored = self._store.get(self.notifications_table, entity.partition, _ROW)
        if target is None or stored is None:  # kept, not dropped: the receiver may be configured again
            return Verdict("retry", error=f"{entity.row}: receiver not configured" if target is None
                           else f"{entity.row}: notification row missing")
        return self._send(self._build(from_props(stored.props), target), now)

    def _finish(self, entity: Entity, etag: str, props: dict[str, object]) -> bool:
        try:
            self._store.update(self.deliveries_table, entity.partition, entity.row,
                               {**props, "lease_until": ""}, etag)
        except PreconditionFailed:
            log(_log, logging.WARNING, "delivery lease lost before it was recorded; it may be sent again",
                receiver=entity.row, notification_id=entity.props.get("notification_id"))
            return False
        if props.get("status") == "sent":
            log(_log, logging.INFO, "notification delivered", receiver=entity.row,
                notification_id=entity.props.get("notification_id"))
        return True

    def _reschedule(self, entity: Entity, etag: str, attempts: int, verdict: Verdict, now: datetime) -> bool:
        delay = self._backoff.delay(attempts, verdict.retry_after, self._jitter)
        due = now + timedelta(seconds=delay)
        self._index(DUE, due, entity.partition, entity.row)
        moved = self._finish(entity, etag, {"due_at": due.isoformat(), "last_error": verdict.error,
                                            "last_status": verdict.status})
        log(_log, logging.WARNING, "delivery failed; will retry", receiver=entity.row, attempts=attempts,
            notification_id=entity.props.get("notification_id"), error=verdict.error, retry_at=due.isoformat())
        return moved

    def _reject(self, entity: Entity, etag: str, verdict: Verdict, now: datetime) -> bool:
        notification_id = str(entity.props.get("notification_id", ""))
        moved = self._finish(entity, etag, {"status": "rejected", "rejected_at": now.isoformat(),
                                            "last_error": verdict.error, "last_status": verdict.status})
        target = self._routes.receivers.get(entity.row)
        detail = {"receiver": entity.row, "type": target.type if target else "", "status": verdict.status,
                  "error": verdict.error, "notification_id": notification_id}
        self._ledger.audit(AuditRecord("notification_rejected", correlation_id=notification_id,
                                       function="drain_outbox", detail=detail))
        log(_log, logging.ERROR, "receiver rejected the notification: a configuration error, not retried",
            receiver=entity.row, notification_id=notification_id, status=verdict.status, error=verdict.error)
        return moved

    # -- housekeeping -----------------------------------------------------------------------
    def prune(self, now: datetime | None = None, limit: int = 500) -> int:
        """Delete deliveries sent or rejected longer than the retention ago (and their notification
        once it has no delivery left). Returns the rows deleted."""
        now = now or self._clock()
        pruned = 0
        for index in self._store.query_rows(self.index_table, DONE, below=_stamp(now - self._retention),
                                            limit=limit):
            key, receiver = str(index.props["key"]), str(index.props["receiver"])
            found = self._store.get(self.deliveries_table, key, receiver) if receiver else None
            if found is not None and found.props.get("status") in FINISHED:
                self._store.delete(self.deliveries_table, key, receiver)
                pruned += 1
            if not any(True for _ in self._store.query(self.deliveries_table, partition=key)):
                self._store.delete(self.notifications_table, key, _ROW)
            self._store.delete(self.index_table, DONE, index.row)
        return pruned

    def _index(self, partition: str, at: datetime, key: str, receiver: str) -> tuple[str, bool]:
        """The index row for a delivery at a time, and whether this call wrote it (False: it was there,
        written by a retry after a crash or by the same enqueue at the same instant)."""
        row = f"{_stamp(at)}|{key}|{receiver}"
        try:
            self._store.insert(self.index_table, partition, row, {"key": key, "receiver": receiver})
        except ConflictError:
            return row, False
        return row, True

    def _backfill(self) -> None:
        """Index the rows stored before the index existed: once per storage account, a full read."""
        if self._indexed or self._store.get(self.index_table, META, "backfill") is not None:
            self._indexed = True
            return
        count = 0
        for e in self._store.query(self.deliveries_table):
            status = e.props.get("status")
            if status == "pending":
                self._index(DUE, _time(e.props["due_at"]), e.partition, e.row)
            elif status in FINISHED:
                ended = e.props.get("sent_at") or e.props.get("rejected_at") or e.props["created_at"]
                self._index(DONE, _time(ended), e.partition, e.row)
            count += 1
        with contextlib.suppress(ConflictError):  # another instance did it too: it wrote the same rows
            self._store.insert(self.index_table, META, "backfill", {"rows": count})
        self._indexed = True
        log(_log, logging.INFO, "outbox rows stored before the index were indexed", rows=count)

    # -- reading --------------------------------------------------------------------------
    def deliveries(self, notification_id: str) -> list[Entity]:
        return list(self._store.query(self.deliveries_table, partition=notification_key(notification_id)))


def _stamp(at: datetime) -> str:
    """A time that sorts as text: fixed width, UTC, to the microsecond."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _time(text: object) -> datetime:
    return datetime.fromisoformat(str(text))


def _index_of(entity: Entity) -> str:
    """The due-index row a pending delivery is found by."""
    return f"{_stamp(_time(entity.props['due_at']))}|{entity.partition}|{entity.row}"


def _lease_over(entity: Entity, now: datetime) -> bool:
    lease = str(entity.props.get("lease_until") or "")
    return not lease or datetime.fromisoformat(lease) <= now
