"""The contract between whoever raises a notification (alerting, retraining, release) and the
outbox that delivers it. A notification is stored first and delivered later, so it carries
everything a receiver's message needs, and an id that makes enqueueing it idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Kind = Literal["firing", "resolved", "info"]
Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class Notification:
    id: str  # deterministic: enqueueing the same notification twice stores it once
    kind: Kind  # firing / resolved: an alert group's state; info: a one-off record (e.g. a retrain)
    title: str
    summary: str  # one paragraph a person reads first
    severity: Severity
    dedup_key: str  # stable per alert group: PagerDuty dedup_key, Opsgenie alias (<= 255 chars)
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)  # model, version, endpoint, deployment, team...
    fields: Mapping[str, str] = field(default_factory=dict)  # values against thresholds, counts...
    links: Mapping[str, str] = field(default_factory=dict)  # run, dashboard, runbook (name -> URL)
    alerts: int = 1  # how many alerts this (grouped) message stands for


class NotificationSink(Protocol):
    def enqueue(self, notification: Notification) -> bool:
        """Store for delivery; False when a notification with this id was already stored."""
        ...
