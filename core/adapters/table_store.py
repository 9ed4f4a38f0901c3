"""StateStore on Azure Table Storage (Azurite locally), through azure-data-tables."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ConflictError, PreconditionFailed
from core.ports import Entity

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

_KEYS = ("PartitionKey", "RowKey")


class TableStateStore:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection(cls, connection: str = "", account: str = "") -> TableStateStore:
        from azure.data.tables import TableServiceClient

        if connection:
            return cls(TableServiceClient.from_connection_string(connection))
        from azure.identity import DefaultAzureCredential

        return cls(TableServiceClient(f"https://{account}.table.core.windows.net",
                                      credential=DefaultAzureCredential()))

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
        from azure.core.exceptions import ResourceExistsError

        try:
            meta = self._table(table).create_entity({**props, "PartitionKey": partition, "RowKey": row})
        except ResourceExistsError:
            raise ConflictError(f"{table}/{partition}/{row} exists") from None
        return str(meta["etag"])

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        entity = {**props, "PartitionKey": partition, "RowKey": row}
        try:
            meta = self._table(table).update_entity(entity, mode=UpdateMode.MERGE, etag=etag,
                                                    match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise PreconditionFailed(f"{table}/{partition}/{row} changed since it was read") from None
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


def _entity(found: Any) -> Entity:
    props = {k: v for k, v in found.items() if k not in _KEYS}
    return Entity(partition=found["PartitionKey"], row=found["RowKey"], props=props,
                  etag=str(found.metadata["etag"]))
