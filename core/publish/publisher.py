"""Publishing our own events: audit record -> CloudEvent -> outbox -> custom Event Grid topic.

``Publisher.observe`` is the ledger's audit hook. For a record that is a published decision
(``catalogue.event_for``) it stores the event in an outbox of its own (tables
``{prefix}pubnotifications`` / ``{prefix}pubdeliveries``, one receiver: the topic); the
``publish_events`` timer drains it. So publishing reuses the outbox's storage, claims, backoff
with Retry-After and the configuration-error record for a 4xx, and the decision never waits
for the topic. ``observe`` never raises: a decision must not fail because its event could not
be stored. Such an event is not lost: each drain first sweeps the audit trail (``core/publish/sweep``)
and stores the events that are missing, then sends what is due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from core.ledger import AuditRecord
from core.logs import get_logger, log
from core.notify.model import Notification
from core.notify.outbox import DrainReport, Outbox
from core.notify.request import Request, Target, label
from core.notify.routing import Routes
from core.publish.catalogue import event_for
from core.publish.cloudevent import from_notification
from core.publish.sweep import Sweep, SweepReport

RECEIVER = "eventgrid"
_log = get_logger("publish")


def table_prefix(prefix: str) -> str:
    """The events outbox's own tables: the notification drain never sees an event."""
    return f"{prefix}pub"


def topic_routes(endpoint: str, key: str) -> Routes:
    """Every event goes to the one topic; the key (if any) is the target's secret."""
    return Routes(receivers={RECEIVER: Target(RECEIVER, RECEIVER, key, endpoint)}, default=RECEIVER)


def build_request(n: Notification, target: Target) -> Request:
    """The outbox's builder for events: the CloudEvent in the JSON format, for the topic."""
    event = from_notification(n)
    return Request("POST", target.url, {}, event.to_dict(), label(target, target.url), (target.secret,))


@dataclass
class PublishReport(DrainReport):
    sweep: SweepReport = field(default_factory=SweepReport)


class Publisher:
    def __init__(self, outbox: Outbox, sweep: Sweep, *, source: str) -> None:
        self.outbox = outbox
        self.sweep = sweep
        self.source = source

    def observe(self, record: AuditRecord, at: datetime) -> None:
        try:
            event = event_for(record, at, self.source)
            if event is None:
                return
            created = self.outbox.enqueue(event.as_notification())
        except Exception as exc:  # the decision stands; the drain's sweep stores its event later
            log(_log, logging.ERROR, "our event could not be stored with its decision; a drain will store it",
                action=record.action, correlation_id=record.correlation_id, error=f"{type(exc).__name__}: {exc}")
            return
        log(_log, logging.INFO, "event stored for publishing" if created else "event already stored",
            event_type=event.type, event_id=event.id, subject=event.subject)

    def drain(self, now: datetime | None = None) -> PublishReport:
        """Store what the sweep finds missing, then send every due event."""
        swept = self.sweep.run(self.event_of, now)
        return PublishReport(**vars(self.outbox.drain(now)), sweep=swept)

    def event_of(self, record: AuditRecord, at: datetime) -> Notification | None:
        """The record's event as the outbox stores it; None when the record is no published decision."""
        event = event_for(record, at, self.source)
        return event.as_notification() if event is not None else None
