"""The outbox: notifications are stored before anything is sent, then delivered by ``drain``.

``enqueue`` writes the notification and one delivery row per routed receiver, each
insert-if-absent (the same notification twice is stored once). ``drain`` takes each due
delivery with an ETag-conditional *claim* (a short lease), so two instances draining at
once never both send it; a 2xx marks it sent, a retry verdict reschedules it (backoff,
Retry-After), a reject records a configuration error in the audit trail. Nothing is ever
dropped: a failing receiver keeps its deliveries pending until it answers. A crash between
a 2xx and the "sent" mark sends that one again after the lease: at least once, not at most.

Tables (prefix from settings):
    {prefix}notifications  PK hash of notification id, RK "n"        the notification
    {prefix}deliveries     PK hash of notification id, RK receiver   status, due_at, lease_until
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    rejected: int = 0
    busy: int = 0  # claimed by another drain meanwhile
    failed: int = 0  # the store refused a write; the delivery stays pending


def notification_key(notification_id: str) -> str:
    """Table keys forbid / \\ # ? and control characters; ids are free text."""
    return hashlib.sha256(notification_id.encode()).hexdigest()[:40]


class Outbox:
    def __init__(self, store: StateStore, ledger: Ledger, *, prefix: str, routes: Routes, clock: Clock,
                 send: Send, lease_seconds: int = 60, backoff: Backoff | None = None,
                 jitter: Callable[[], float] = random.random, build: Builder = build) -> None:
        self._store, self._ledger, self._routes, self._clock = store, ledger, routes, clock
        self._build = build  # notification + receiver -> request; our own events bring their own (core/publish)
        self._send = send
        self._lease = timedelta(seconds=lease_seconds)
        self._backoff = backoff or Backoff()
        self._jitter = jitter
        self.notifications_table = f"{prefix}notifications"
        self.deliveries_table = f"{prefix}deliveries"

    # -- enqueue --------------------------------------------------------------------------
    def enqueue(self, notification: Notification) -> bool:
        """Store it and its deliveries; False if it was stored before (missing deliveries are added)."""
        key = notification_key(notification.id)
        try:
            self._store.insert(self.notifications_table, key, _ROW, to_props(notification))
            created = True
        except ConflictError:
            created = False
        receivers = [self._add_delivery(key, notification, t.name) for t in self._routes.targets(notification)]
        log(_log, logging.INFO, "notification stored" if created else "notification already stored",
            notification_id=notification.id, receivers=",".join(r for r in receivers if r) or "none")
        return created

    def _add_delivery(self, key: str, n: Notification, receiver: str) -> str:
        now = self._clock().isoformat()
        props = {"notification_id": n.id, "receiver": receiver, "status": "pending", "attempts": 0,
                 "due_at": now, "lease_until": "", "created_at": now, "last_error": "", "last_status": 0}
        try:
            self._store.insert(self.deliveries_table, key, receiver, props)
        except ConflictError:
            return ""
        return receiver

    def backlog(self) -> int:
        """Deliveries still to be made (pending, due now or later after a failed attempt)."""
        return sum(1 for _ in self._store.query(self.deliveries_table, where={"status": "pending"}))

    # -- drain ----------------------------------------------------------------------------
    def drain(self, now: datetime | None = None, limit: int = 500) -> DrainReport:
        """Send every due delivery (at most ``limit``), oldest first."""
        now = now or self._clock()
        report = DrainReport()
        due = sorted((e for e in self._store.query(self.deliveries_table, where={"status": "pending"})
                      if _due(e, now)), key=lambda e: str(e.props["due_at"]))
        for entity in due[:limit]:
            try:
                self._drain_one(entity, now, report)
            except StoreError as exc:
                report.failed += 1
                log(_log, logging.ERROR, "delivery bookkeeping failed; it stays pending",
                    receiver=entity.row, notification_id=entity.props.get("notification_id"), error=str(exc))
        if due:
            log(_log, logging.INFO, "outbox drained", **vars(report))
        return report

    def _drain_one(self, entity: Entity, now: datetime, report: DrainReport) -> None:
        etag = self._claim(entity, now)
        if etag is None:
            report.busy += 1
            return
        attempts = int(entity.props.get("attempts", 0)) + 1
        verdict = self._attempt(entity, now)
        if verdict.outcome == "delivered":
            self._finish(entity, etag, {"status": "sent", "sent_at": now.isoformat(), "last_status": verdict.status})
            report.sent += 1
        elif verdict.outcome == "retry":
            self._reschedule(entity, etag, attempts, verdict, now)
            report.retried += 1
        else:
            self._reject(entity, etag, verdict, now)
            report.rejected += 1

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

    def _finish(self, entity: Entity, etag: str, props: dict[str, object]) -> None:
        try:
            self._store.update(self.deliveries_table, entity.partition, entity.row,
                               {**props, "lease_until": ""}, etag)
        except PreconditionFailed:
            log(_log, logging.WARNING, "delivery lease lost before it was recorded; it may be sent again",
                receiver=entity.row, notification_id=entity.props.get("notification_id"))
            return
        if props.get("status") == "sent":
            log(_log, logging.INFO, "notification delivered", receiver=entity.row,
                notification_id=entity.props.get("notification_id"))

    def _reschedule(self, entity: Entity, etag: str, attempts: int, verdict: Verdict, now: datetime) -> None:
        delay = self._backoff.delay(attempts, verdict.retry_after, self._jitter)
        due = now + timedelta(seconds=delay)
        self._finish(entity, etag, {"due_at": due.isoformat(), "last_error": verdict.error,
                                    "last_status": verdict.status})
        log(_log, logging.WARNING, "delivery failed; will retry", receiver=entity.row, attempts=attempts,
            notification_id=entity.props.get("notification_id"), error=verdict.error, retry_at=due.isoformat())

    def _reject(self, entity: Entity, etag: str, verdict: Verdict, now: datetime) -> None:
        notification_id = str(entity.props.get("notification_id", ""))
        self._finish(entity, etag, {"status": "rejected", "rejected_at": now.isoformat(),
                                    "last_error": verdict.error, "last_status": verdict.status})
        target = self._routes.receivers.get(entity.row)
        detail = {"receiver": entity.row, "type": target.type if target else "", "status": verdict.status,
                  "error": verdict.error, "notification_id": notification_id}
        self._ledger.audit(AuditRecord("notification_rejected", correlation_id=notification_id,
                                       function="drain_outbox", detail=detail))
        log(_log, logging.ERROR, "receiver rejected the notification: a configuration error, not retried",
            receiver=entity.row, notification_id=notification_id, status=verdict.status, error=verdict.error)

    # -- reading --------------------------------------------------------------------------
    def deliveries(self, notification_id: str) -> list[Entity]:
        return list(self._store.query(self.deliveries_table, partition=notification_key(notification_id)))


def _due(entity: Entity, now: datetime) -> bool:
    lease = str(entity.props.get("lease_until") or "")
    return (datetime.fromisoformat(str(entity.props["due_at"])) <= now
            and (not lease or datetime.fromisoformat(lease) <= now))
