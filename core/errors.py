"""One exception tree for the whole core.

    ReactorError
    ├── SettingsError          configuration is missing or invalid (lists every problem)
    ├── EventValidationError   an event parsed but a field is missing or wrong (names the field)
    ├── RequestError           an operator request is malformed (names the field; maps to 400)
    ├── EventInFlight          another delivery holds the event's claim: Event Grid must come back later
    └── StoreError             the state store refused an operation
        ├── ConflictError      the entity already exists (insert-if-absent lost)
        └── PreconditionFailed the entity changed since it was read (ETag mismatch)
"""

from __future__ import annotations


class ReactorError(Exception):
    """Base of every error the core raises on purpose."""


class SettingsError(ReactorError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid settings ({len(self.problems)} problem(s)):\n{lines}")


class EventInFlight(ReactorError):
    """The event is claimed by a delivery still under its lease, whose host may have died with it.
    Raised by the Event Grid functions so the delivery fails and Event Grid redelivers (10 s, 30 s,
    1 min, 5 min, ...): once the lease has run out, a redelivery takes the claim over. Answering 2xx
    would end Event Grid's retries and leave the event unprocessed for good."""

    def __init__(self, function: str, event_id: str) -> None:
        self.function, self.event_id = function, event_id
        super().__init__(f"{function}: event {event_id} is being processed by another delivery; retry later")


class EventValidationError(ReactorError):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class RequestError(ReactorError):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class StoreError(ReactorError):
    """The state store refused an operation."""


class ConflictError(StoreError):
    """The entity already exists."""


class PreconditionFailed(StoreError):
    """The entity changed since it was read (its ETag no longer matches)."""
