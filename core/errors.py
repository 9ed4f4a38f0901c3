"""One exception tree for the whole core.

    ReactorError
    ├── SettingsError          configuration is missing or invalid (lists every problem)
    ├── EventValidationError   an event parsed but a field is missing or wrong (names the field)
    ├── RequestError           an operator request is malformed (names the field; maps to 400)
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
