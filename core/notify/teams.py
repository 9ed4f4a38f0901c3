"""Microsoft Teams through a Workflows webhook (Office 365 connectors are retired).

The Workflows trigger "When a Teams webhook request is received" takes a ``message`` whose
attachment is an Adaptive Card; Teams drops messages over about 28 KB, so the card is
shrunk (summary, then fact values, then the number of facts) until it fits.
"""

from __future__ import annotations

import json
from typing import Any

from core.notify.message import clip, facts, headline, links
from core.notify.model import Notification
from core.notify.request import Request, Target, label

MAX_BYTES = 27_000  # under Teams' ~28 KB, with room for the envelope's encoding
CARD_VERSION = "1.4"
_SHRINK = ((4000, 1000, 40), (1000, 200, 20), (300, 80, 10), (100, 40, 5))  # summary, fact value, facts
_COLOR = {"critical": "attention", "error": "attention", "warning": "warning", "info": "accent"}


def build(n: Notification, target: Target) -> Request:
    body = envelope(card(n))
    for summary, value, count in _SHRINK:
        if len(json.dumps(body).encode()) <= MAX_BYTES:
            break
        body = envelope(card(n, summary=summary, value=value, count=count))
    return Request("POST", target.secret, {"Content-Type": "application/json"}, body,
                   label(target, target.secret), (target.secret,))


def envelope(content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}]}


def card(n: Notification, *, summary: int = 20_000, value: int = 5000, count: int = 200) -> dict[str, Any]:
    color = "good" if n.kind == "resolved" else _COLOR[n.severity]
    shown = facts(n)[:count]
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": clip(headline(n), 300), "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": True},
            {"type": "TextBlock", "text": clip(n.summary, summary), "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": clip(v, value)} for k, v in shown]},
        ],
        "actions": [{"type": "Action.OpenUrl", "title": name.capitalize(), "url": url} for name, url in links(n)],
    }
