"""The serving control plane's desired state, in Table storage, so a restarted control plane restores it.

    {prefix}mlserving   PK "endpoint"              RK endpoint     tags, traffic, mirror, router port
                        PK "deployment-{endpoint}" RK deployment   model, version, environment, tags,
                                                                   instance count, generation, announced

The state port has no delete, and a deleted deployment must not come back after a restart, so a
deletion leaves a tombstone (``deleted``). A deployment re-created under the same name takes the
next ``generation``, which keeps its ModelDeployed event id apart from the first one's (the app's
ledger would otherwise drop it as a duplicate). ``announced`` records that the ModelDeployed event
was delivered, so a restart announces only what was never announced.

One control plane writes these rows, under its own lock; the ETag conditions catch a second one
started by mistake on the same tables (its write fails instead of overwriting).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.errors import ConflictError, PreconditionFailed, StoreError
from core.ports import Entity, StateStore

ENDPOINTS = "endpoint"


@dataclass(frozen=True)
class EndpointRecord:
    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror: Mapping[str, int] = field(default_factory=dict)
    port: int = 0


@dataclass(frozen=True)
class DeploymentRecord:
    endpoint: str
    name: str
    model_name: str
    model_version: str
    instance_type: str = ""
    instance_count: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    generation: int = 1
    announced: bool = False
    deleted: bool = False

    def but(self, **changes: Any) -> DeploymentRecord:
        return replace(self, **changes)


_JSON_FIELDS = ("tags", "traffic", "mirror", "environment")


class ServingStore:
    def __init__(self, store: StateStore, prefix: str) -> None:
        self._store = store
        self.table = f"{prefix}mlserving"
        self._etags: dict[tuple[str, str], str] = {}  # what this control plane last read or wrote

    def endpoints(self) -> list[EndpointRecord]:
        return [EndpointRecord(name=e.row, **_fields(self._seen(e), EndpointRecord))
                for e in self._store.query(self.table, ENDPOINTS)]

    def deployments(self, endpoint: str) -> list[DeploymentRecord]:
        """Every deployment row of the endpoint, tombstones included."""
        return [DeploymentRecord(endpoint=endpoint, name=e.row, **_fields(self._seen(e), DeploymentRecord))
                for e in self._store.query(self.table, _partition(endpoint))]

    def save_endpoint(self, record: EndpointRecord) -> None:
        self._save(ENDPOINTS, record.name, _props(asdict(record), ("name",)))

    def save_deployment(self, record: DeploymentRecord) -> None:
        self._save(_partition(record.endpoint), record.name, _props(asdict(record), ("endpoint", "name")))

    def _seen(self, entity: Entity) -> Entity:
        self._etags[(entity.partition, entity.row)] = entity.etag
        return entity

    def _save(self, partition: str, row: str, props: dict[str, Any]) -> None:
        key = (partition, row)
        etag = self._etags.get(key)
        if etag is None:
            current = self._store.get(self.table, partition, row)
            etag = current.etag if current is not None else None
        try:
            if etag is None:
                self._etags[key] = self._store.insert(self.table, partition, row, props)
            else:
                self._etags[key] = self._store.update(self.table, partition, row, props, etag)
        except (ConflictError, PreconditionFailed) as exc:
            self._etags.pop(key, None)
            raise StoreError(f"{self.table}/{partition}/{row} was changed by someone else (is a second serving "
                             f"control plane running on these tables?): {exc}") from exc


def _partition(endpoint: str) -> str:
    return f"deployment-{endpoint}"


def _props(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: json.dumps(dict(v), sort_keys=True) if k in _JSON_FIELDS else v
            for k, v in values.items() if k not in keys}


def _fields(entity: Entity, kind: type) -> dict[str, Any]:
    """The record's fields from a row, JSON maps decoded; unknown columns ignored, missing ones defaulted."""
    names = {f.name for f in fields(kind)} - {"name", "endpoint"}
    return {k: json.loads(v or "{}") if k in _JSON_FIELDS else v
            for k, v in entity.props.items() if k in names}
