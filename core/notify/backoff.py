"""When a failed delivery is tried again: exponential, capped, jittered, and never before
the receiver's own ``Retry-After``. There is no last attempt: a receiver down for an hour
gets its notifications when it is back, within one cap of its recovery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 10.0  # seconds before the second attempt
    cap: float = 600.0  # the longest wait between two attempts
    max_retry_after: float = 3600.0  # a receiver's Retry-After is honoured up to this

    def delay(self, attempts: int, retry_after: float | None, jitter: Callable[[], float]) -> float:
        """Seconds until the next attempt after ``attempts`` failures; jitter() is in [0, 1)."""
        exponential = min(self.cap, self.base * 2 ** min(max(attempts - 1, 0), 30))
        jittered = exponential * (0.5 + 0.5 * jitter())  # "equal jitter": spread, but never near zero
        return max(jittered, min(retry_after or 0.0, self.max_retry_after))
