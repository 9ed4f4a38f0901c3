"""Slack incoming webhook: ``text`` (the notification's fallback) plus Block Kit ``blocks``.

Block Kit limits (header 150 characters, section text 3,000, at most 10 fields of 2,000,
context at most 10 elements) are enforced here, so a long summary is clipped, never refused.
"""

from __future__ import annotations

from typing import Any

from core.notify.message import clip, facts, headline, links
from core.notify.model import Notification
from core.notify.request import Request, Target, label

MAX_FIELDS = 10


def build(n: Notification, target: Target) -> Request:
    body = {"text": clip(f"{headline(n)}: {n.summary}", 3000), "blocks": blocks(n)}
    return Request("POST", target.secret, {"Content-Type": "application/json"}, body,
                   label(target, target.secret), (target.secret,))


def blocks(n: Notification) -> list[dict[str, Any]]:
    shown = facts(n)[:MAX_FIELDS]
    result: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(headline(n), 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(n.summary, 3000)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f"*{k}*\n{v}", 2000)} for k, v in shown]},
    ]
    link_text = [{"type": "mrkdwn", "text": clip(f"<{url}|{name}>", 3000)} for name, url in links(n)[:10]]
    if link_text:
        result.append({"type": "context", "elements": link_text})
    return result
