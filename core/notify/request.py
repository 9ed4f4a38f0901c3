"""What a receiver module produces, and what it is built from.

A receiver module is a pure function ``build(notification, target) -> Request``: no I/O, so
every payload can be checked in a test. ``Target`` carries the secret (webhook URL, routing
key, API key); ``Request.label`` is the only way a request is ever named in logs, audit
records and errors, and ``Request.secrets`` is what the sender scrubs from anything it echoes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    """One configured receiver: ``secret`` comes from its own setting, never from the routes JSON."""

    name: str
    type: str
    secret: str
    url: str = ""  # API base for PagerDuty/Opsgenie (the secret is a key there); "" = the public default
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]
    label: str  # "receiver (host)": safe to log
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # a stray repr must not print the URL or the key
        return f"Request({self.method} {self.label})"


def label(target: Target, url: str) -> str:
    return f"{target.name} ({urlsplit(url).hostname or 'unknown host'})"


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Remove every secret (and the path part of a secret URL) from text that may echo them."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
        path = urlsplit(secret).path if "://" in secret else ""
        if len(path) > 8:
            text = text.replace(path, "[redacted]")
    return text
