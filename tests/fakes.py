"""Small fakes of the outside world (storage), with the semantics the real services have:
insert-if-absent, ETag-conditional merge. They record, they do not script."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from core.errors import ConflictError, PreconditionFailed
from core.ports import BlobInfo, Entity


class MemoryStateStore:
    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[str, str], Entity]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()
        self.writes = 0

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        with self._lock:
            rows = self.tables.setdefault(table, {})
            if (partition, row) in rows:
                raise ConflictError(f"{table}/{partition}/{row}")
            etag = self._etag()
            rows[(partition, row)] = Entity(partition, row, dict(props), etag)
            self.writes += 1
            return etag

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        with self._lock:
            current = self.tables.get(table, {}).get((partition, row))
            if current is None or current.etag != etag:
                raise PreconditionFailed(f"{table}/{partition}/{row}")
            new = self._etag()
            self.tables[table][(partition, row)] = Entity(partition, row, {**current.props, **props}, new)
            self.writes += 1
            return new

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        return self.tables.get(table, {}).get((partition, row))

    def query(self, table: str, partition: str | None = None,
              where: Mapping[str, Any] | None = None) -> Iterator[Entity]:
        for (pk, _), entity in sorted(self.tables.get(table, {}).items()):
            if partition is not None and pk != partition:
                continue
            if all(entity.props.get(k) == v for k, v in (where or {}).items()):
                yield entity


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}

    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        self.blobs[(container, name)] = data
        return f'"{len(self.blobs)}"'

    def get(self, container: str, name: str) -> bytes:
        return self.blobs[(container, name)]

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        for (c, name), data in sorted(self.blobs.items()):
            if c == container and name.startswith(prefix):
                yield BlobInfo(c, name, "", len(data), "", datetime.now(timezone.utc))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now
