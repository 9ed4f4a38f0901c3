"""Publishing our own events: audit record -> CloudEvent -> outbox -> custom Event Grid topic.

``Publisher.observe`` is the ledger's audit hook. For a record that is a published decision
(``catalogue.event_for``) it stores the event in an outbox of its own (tables
``{prefix}pubnotifications`` / ``{prefix}pubdeliveries``, one receiver: the topic); the
``publish_events`` timer drains it. So publishing reuses the outbox's storage, claims, backoff
with Retry-After and the configuration-error record for a 4xx, and the decision never waits
for the topic. ``observe`` never raises: a decision must not fail because its event could not
be stored (that is logged as an error instead).
"""

from __future__ import annotations

import logging
from datetime import datetime

from core.ledger import AuditRecord
from core.logs import get_logger, log
from core.notify.model import Notification
from core.notify.outbox import DrainReport, Outbox
from core.notify.request import Request, Target, label
from core.notify.routing import Routes
from core.publish.catalogue import event_for
from core.publish.cloudevent import from_notification

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


class Publisher:
    def __init__(self, outbox: Outbox, *, source: str) -> None:
        self.outbox = outbox
        self.source = source

    def observe(self, record: AuditRecord, at: datetime) -> None:
        try:
            event = event_for(record, at, self.source)
            if event is None:
                return
            created = self.outbox.enqueue(event.as_notification())
        except Exception as exc:  # the decision stands; its event is what is lost, and we say so
            log(_log, logging.ERROR, "our event could not be stored; it will not be published",
                action=record.action, correlation_id=record.correlation_id, error=f"{type(exc).__name__}: {exc}")
            return
        log(_log, logging.INFO, "event stored for publishing" if created else "event already stored",
            event_type=event.type, event_id=event.id, subject=event.subject)

    def drain(self, now: datetime | None = None) -> DrainReport:
        return self.outbox.drain(now)
