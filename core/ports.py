"""The small ports through which the core reaches the outside world.

Adapters in ``core/adapters`` implement them: Azure Table/Blob Storage (Azurite locally,
the storage account in Azure). Tests use the same adapters against Azurite, or the small
in-memory fakes in ``tests/fakes.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Entity:
    """One stored row: its keys, its properties and the ETag that guards updates."""

    partition: str
    row: str
    props: Mapping[str, Any]
    etag: str


class StateStore(Protocol):
    """Entities with ETag-conditional writes (Azure Table Storage semantics)."""

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        """Create the entity and return its ETag; ``ConflictError`` if it exists."""
        ...

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        """Merge ``props`` into the entity if its ETag still matches (``PreconditionFailed``
        otherwise, or if it is gone) and return the new ETag."""
        ...

    def get(self, table: str, partition: str, row: str) -> Entity | None: ...

    def query(self, table: str, partition: str | None = None,
              where: Mapping[str, Any] | None = None) -> Iterator[Entity]:
        """Entities of one partition (or all), whose properties equal ``where``."""
        ...

    def query_rows(self, table: str, partition: str, *, below: str, limit: int, above: str = "",
                   prefixes: Mapping[str, Sequence[str]] | None = None) -> Iterator[Entity]:
        """Entities of one partition whose RowKey sorts before ``below`` (and after ``above``), in RowKey
        order, at most ``limit``: a range of the primary index (PartitionKey, RowKey), never a table scan.
        With ``prefixes`` only those whose property (each key) starts with one of its prefixes: the
        service filters within the range, so what does not match never travels."""
        ...

    def delete(self, table: str, partition: str, row: str) -> None:
        """Remove the entity; one that is not there is fine (a delete is idempotent)."""
        ...


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    etag: str
    size: int
    content_type: str
    last_modified: datetime


class BlobStore(Protocol):
    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        """Write the blob (overwriting) and return its ETag."""
        ...

    def get(self, container: str, name: str) -> bytes: ...

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]: ...
