"""Alerting: rules evaluated on a timer and Azure Monitor alerts received over HTTP, handled the
Alertmanager way (a chain of stages: lifecycle -> group -> inhibit -> silence -> dedup -> notify).

The core never sends anything itself: it enqueues ``Notification``s into the outbox
(``core.notify.model.NotificationSink``) and records every transition in the audit trail.
"""

from core.alerting.rules import AlertingConfig, parse_alerting
from core.alerting.service import Alerting
from core.alerting.silences import Silence, Silences

__all__ = ["Alerting", "AlertingConfig", "Silence", "Silences", "parse_alerting"]
