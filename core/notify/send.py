"""The HTTP call, and its verdict: delivered, retry (and when), or reject.

Failures carry a retry verdict as data (Alertmanager's ``(retry, err)``): 2xx delivered;
429, 5xx, timeouts and connection errors retry, honouring ``Retry-After``; any other 4xx
is a configuration error that retrying cannot fix. Nothing here may name a secret: errors
carry the request's label, an exception's type (its text embeds the URL) and a response
body with the secrets scrubbed out; urllib3's request-line logs lose their path.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import requests

from core.notify.request import Request, scrub

Outcome = Literal["delivered", "retry", "reject"]
MAX_ECHO = 300  # characters of a response body kept as the error


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    status: int = 0  # 0: no response (timeout, connection error)
    retry_after: float | None = None  # seconds the receiver asked us to wait
    error: str = ""  # redacted

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


class Sender:
    """``Sender(timeout)(request, now)``: one HTTP attempt, never raises for HTTP or network trouble."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._session = requests.Session()
        hide_request_paths()

    def __call__(self, request: Request, now: datetime) -> Verdict:
        try:
            response = self._session.request(request.method, request.url, json=dict(request.body),
                                             headers=dict(request.headers), timeout=self._timeout,
                                             allow_redirects=False)
        except requests.RequestException as exc:
            return Verdict("retry", error=f"{request.label}: {type(exc).__name__}")
        return judge(request, response.status_code, response.headers.get("Retry-After", ""), response.text, now)


def judge(request: Request, status: int, retry_after: str, text: str, now: datetime) -> Verdict:
    if 200 <= status < 300:
        return Verdict("delivered", status)
    error = f"{request.label}: HTTP {status} {scrub(text[:MAX_ECHO], request.secrets)}".strip()
    if status == 429 or status >= 500:
        return Verdict("retry", status, parse_retry_after(retry_after, now), error)
    return Verdict("reject", status, None, error)


def parse_retry_after(value: str, now: datetime) -> float | None:
    """``Retry-After`` as delay-seconds or an HTTP date; None when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


_PATH = re.compile(r"(?<=[\s'\"(=])/[^\s'\"]*")
_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")


class _HidePath(logging.Filter):
    """urllib3 logs ``"POST /services/T0/B0/secret HTTP/1.1" 200`` at DEBUG: keep the host, drop paths."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        hidden = _PATH.sub("[path hidden]", text)
        if hidden != text:
            record.msg, record.args = hidden, None
        return True


_FILTER = _HidePath()


def hide_request_paths() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
