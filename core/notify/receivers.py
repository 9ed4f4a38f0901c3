"""The receiver types by name: routing validates against it and the outbox builds with it."""

from __future__ import annotations

from collections.abc import Callable

from core.notify import opsgenie, pagerduty, slack, teams, webhook
from core.notify.model import Notification
from core.notify.request import Request, Target

Builder = Callable[[Notification, Target], Request]

BUILDERS: dict[str, Builder] = {
    "teams": teams.build, "slack": slack.build, "pagerduty": pagerduty.build,
    "opsgenie": opsgenie.build, "webhook": webhook.build}
URL_SECRETS = ("teams", "slack", "webhook")  # their secret is the webhook URL itself


def build(n: Notification, target: Target) -> Request:
    return BUILDERS[target.type](n, target)
