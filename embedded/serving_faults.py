"""Faults the local control plane can inject into one deployment's traffic, for demos and tests.

Azure has no such switch; it exists so a demo can make a *running* production deployment fail for a
while (``REACTOR_SCORE_FAULT`` is fixed when a deployment's process starts) and watch an alert rule
on the endpoint's error metric pend, fire and resolve. The router applies it before forwarding and
records what it answered, so the endpoint's metrics see the injected errors as real ones:

    error               every request answers 500
    error-percent:N     N % of the requests answer 500, spread evenly (N from 1 to 100)
    slow:MS             every request is delayed MS milliseconds (up to 60000), then forwarded
    ""                  no fault

Set through ``PUT /endpoints/{e}/deployments/{d}/fault {"fault": "..."}``; kept in memory only (a
restarted control plane has no faults).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Fault:
    text: str
    error_percent: int = 0
    slow_ms: int = 0
    _credit: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fails_now(self) -> bool:
        """True for exactly ``error_percent`` of the calls, evenly spread."""
        with self._lock:
            self._credit += self.error_percent
            if self._credit >= 100:
                self._credit -= 100
                return True
            return False


def parse_fault(text: str) -> Fault | None:
    """The fault a text names, None for "" (no fault); ``ValueError`` saying what is accepted otherwise."""
    text = text.strip()
    if not text:
        return None
    if text == "error":
        return Fault(text, error_percent=100)
    kind, _, value = text.partition(":")
    if kind == "error-percent" and value.isdigit() and 1 <= int(value) <= 100:
        return Fault(text, error_percent=int(value))
    if kind == "slow" and value.isdigit() and int(value) <= 60_000:
        return Fault(text, slow_ms=int(value))
    raise ValueError(f"fault {text!r} is not one of 'error', 'error-percent:<1-100>', 'slow:<0-60000 ms>' "
                     "or '' (none)")
