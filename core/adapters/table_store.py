"""StateStore on Azure Table Storage (Azurite locally), through azure-data-tables.

Writes are group-committed: when writes to one partition queue up, they travel in one
entity-group transaction (up to 100 entities, one round trip instead of many). A transaction
is atomic, so when one entity in it fails (it exists, its ETag moved) only that caller gets
the error and the others are sent again without it. A write that goes out alone (an insert, or
a merge with If-Match) takes the lean REST path of ``core/adapters/table_rest.py`` where it can:
an eighth of the SDK's CPU per call, and these are the calls every event makes (its claim
and finish, or the one write of an event with nothing to do).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.adapters.table_rest import CredentialsRefused, encode
from core.coalesce import Coalescer, Pending
from core.errors import ConflictError, PreconditionFailed, StoreError
from core.logs import get_logger, log
from core.ports import Entity

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

    from core.adapters.table_rest import TableRest

_log = get_logger("table_store")
_KEYS = ("PartitionKey", "RowKey")


MAX_BATCH = 100  # entities per entity-group transaction
# Measured on Azurite (bench/table_rest.py, and per entity in host + Azurite): a single write on the
# lean REST path costs this process ~0.25-0.35 ms and Azurite ~0.9-1.1 ms; an SDK transaction costs
# this process ~1.4 ms per entity at 4 entities, 0.95 at 10, 0.64 at 30, 0.47 at 100 (multipart built
# with the email package and a thread pool per transaction) and Azurite 0.5 / 0.3 / 0.2 / 0.13. So a
# transaction only pays from about ten writes, and up to 16 writes of one partition go out alone side
# by side (a light load is never serialised behind one round trip); what queues behind them travels
# together once ten or more are waiting. bench/intake.py compared 2/4 (the previous setting), 8/10,
# 8/30, 16/10, 16/20, 32/10 and 64/30 (parallel/min): 2/4 was the slowest in both shapes (host CPU
# per event 2.15 ms against 1.1 for the others); the others were within the machine's noise.
MIN_TRANSACTION = 10
PARALLEL = 16
MAX_BATCH_BYTES = 3_000_000  # a transaction's payload must stay under 4 MiB


@dataclass(frozen=True)
class _Write:
    table: str
    entity: dict[str, Any]
    etag: str = ""  # "" = insert; otherwise a merge that requires this ETag

    @property
    def size(self) -> int:
        return sum(len(str(v)) + len(k) for k, v in self.entity.items()) + 64


class TableStateStore:
    def __init__(self, service: TableServiceClient, rest: TableRest | None = None) -> None:
        """``rest``: the lean path for single writes (``from_connection`` builds it); without it
        every call goes through the SDK."""
        self._service = service
        self._rest = rest
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        self._writes: Coalescer[_Write] = Coalescer(self._flush, take=_batch_size, parallel=PARALLEL)

    @classmethod
    def from_connection(cls, connection: str = "", account: str = "") -> TableStateStore:
        from azure.data.tables import TableServiceClient

        from core.adapters.table_rest import TableRest
        from core.adapters.table_transport import table_transport

        transport = table_transport()
        options: dict[str, Any] = {"transport": transport} if transport else {}
        if connection:
            service = TableServiceClient.from_connection_string(connection, **options)
        else:
            from azure.identity import DefaultAzureCredential

            service = TableServiceClient(f"https://{account}.table.core.windows.net",
                                         credential=DefaultAzureCredential(), **options)
        # With a proxy configured (no lean transport) everything goes through the SDK, which honours it.
        return cls(service, TableRest.for_service(service) if transport else None)

    def _table(self, name: str) -> TableClient:
        client = self._tables.get(name)
        if client is None:
            with self._lock:
                client = self._tables.get(name)
                if client is None:
                    client = self._service.create_table_if_not_exists(name)
                    self._tables[name] = client
        return client

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        entity = {**props, "PartitionKey": partition, "RowKey": row}
        return str(self._writes.run((table, partition), _Write(table, entity)))

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        entity = {**props, "PartitionKey": partition, "RowKey": row}
        return str(self._writes.run((table, partition), _Write(table, entity, etag)))

    def _flush(self, key: Hashable, batch: list[Pending[_Write]]) -> None:
        if len(batch) < MIN_TRANSACTION:
            for p in batch:
                self._write_one(p)
            return
        from azure.data.tables import TableTransactionError

        try:
            results = self._table(batch[0].item.table).submit_transaction([_operation(p.item) for p in batch])
        except TableTransactionError as exc:
            failed = batch[exc.index] if exc.index is not None and exc.index < len(batch) else None
            if failed is None:
                raise
            failed.error = _domain_error(failed.item, getattr(exc, "error_code", None))
            failed.settle()
            for p in batch:  # the transaction was atomic: everyone else goes again
                if p is not failed:
                    self._writes.retry(key, p)
            return
        for p, meta in zip(batch, results, strict=True):
            p.result = str(meta["etag"])
            p.settle()

    def _write_one(self, pending: Pending[_Write]) -> None:
        w = pending.item
        body = encode(w.entity) if self._rest is not None else None
        try:
            if body is None or self._rest is None:
                pending.result = self._write_by_sdk(w)
            else:
                self._table(w.table)  # created on first use, as for the SDK's calls
                pending.result = self._write_lean(self._rest, w, body)
        except StoreError as exc:
            pending.error = exc
        pending.settle()

    def _write_lean(self, rest: TableRest, w: _Write, body: bytes) -> str:
        try:
            if w.etag:
                return rest.merge(w.table, w.entity["PartitionKey"], w.entity["RowKey"], body, w.etag)
            return rest.insert(w.table, body)
        except CredentialsRefused as exc:
            # Nothing was written. Azure can ask for more than a bearer token carries (a tenant
            # challenge); the SDK answers those, so it takes over this write and all later ones.
            self._rest = None
            log(_log, logging.WARNING, "the lean Table path was refused its credentials; using the SDK",
                table=w.table, error=str(exc))
            return self._write_by_sdk(w)

    def _write_by_sdk(self, w: _Write) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        try:
            if w.etag:
                meta = self._table(w.table).update_entity(w.entity, mode=UpdateMode.MERGE, etag=w.etag,
                                                          match_condition=MatchConditions.IfNotModified)
            else:
                # The ETag comes back in a header; not echoing the entity saves both sides its JSON.
                meta = self._table(w.table).create_entity(w.entity, response_preference="return-no-content")
        except ResourceExistsError:
            raise _domain_error(w, "EntityAlreadyExists") from None
        except (ResourceModifiedError, ResourceNotFoundError):
            raise _domain_error(w, "UpdateConditionNotSatisfied") from None
        return str(meta["etag"])

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self._table(table).get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return _entity(found)

    def query(self, table: str, partition: str | None = None,
              where: Mapping[str, Any] | None = None) -> Iterator[Entity]:
        clauses, params = [], {}
        conditions = dict(where or {})
        if partition is not None:
            conditions["PartitionKey"] = partition
        for i, (name, value) in enumerate(sorted(conditions.items())):
            clauses.append(f"{name} eq @p{i}")
            params[f"p{i}"] = value
        client = self._table(table)
        found = (client.query_entities(" and ".join(clauses), parameters=params) if clauses
                 else client.list_entities())
        for item in found:
            yield _entity(item)

    def query_rows(self, table: str, partition: str, *, below: str, limit: int, above: str = "",
                   prefixes: Mapping[str, Sequence[str]] | None = None) -> Iterator[Entity]:
        query, params = "PartitionKey eq @pk and RowKey lt @below", {"pk": partition, "below": below}
        if above:
            query, params = query + " and RowKey gt @above", params | {"above": above}
        for name, starts in (prefixes or {}).items():
            clause, values = _starts_with(name, starts, len(params))
            query, params = f"{query} and ( {clause} )", params | values
        found = self._table(table).query_entities(query, parameters=params, results_per_page=max(1, min(limit, 1000)))
        for item in itertools.islice(found, max(0, limit)):
            yield _entity(item)

    def delete(self, table: str, partition: str, row: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._table(table).delete_entity(partition, row)
        except ResourceNotFoundError:
            return


def _starts_with(name: str, prefixes: Sequence[str], first: int) -> tuple[str, dict[str, str]]:
    """OData has no startswith for Table Storage: a prefix is the range [prefix, prefix with its last
    character raised by one). Each costs two of the 15 comparisons a filter may hold. Every
    ``@name`` stands between single spaces: the SDK finds parameters by splitting on them."""
    if not prefixes or not all(prefixes):
        raise ValueError(f"{name}: prefixes must be non-empty strings")
    clauses: list[str] = []
    values: dict[str, str] = {}
    for i, prefix in enumerate(prefixes, start=first):
        values |= {f"s{i}": prefix, f"e{i}": prefix[:-1] + chr(ord(prefix[-1]) + 1)}
        clauses.append(f"( {name} ge @s{i} and {name} lt @e{i} )")
    return " or ".join(clauses), values


def _batch_size(queued: list[Pending[_Write]]) -> int:
    """How many queued writes fit one transaction: distinct rows, at most 100, under 3 MB."""
    rows: set[str] = set()
    size = 0
    for count, p in enumerate(queued):
        row = p.item.entity["RowKey"]
        size += p.item.size
        if count >= MAX_BATCH or row in rows or (count and size > MAX_BATCH_BYTES):
            return count
        rows.add(row)
    return len(queued)


def _operation(w: _Write) -> tuple[Any, ...]:
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    if not w.etag:
        return ("create", w.entity)
    return ("update", w.entity, {"mode": UpdateMode.MERGE, "etag": w.etag,
                                 "match_condition": MatchConditions.IfNotModified})


def _domain_error(w: _Write, code: str | None) -> Exception:
    where = f"{w.table}/{w.entity['PartitionKey']}/{w.entity['RowKey']}"
    if code == "EntityAlreadyExists":
        return ConflictError(f"{where} exists")
    if code in ("UpdateConditionNotSatisfied", "ResourceNotFound"):
        return PreconditionFailed(f"{where} changed since it was read")
    return StoreError(f"{where}: the storage service refused the write ({code})")


def _entity(found: Any) -> Entity:
    props = {k: v for k, v in found.items() if k not in _KEYS}
    return Entity(partition=found["PartitionKey"], row=found["RowKey"], props=props,
                  etag=str(found.metadata["etag"]))
