"""Release records in Table Storage, changed only by ETag-conditional writes.

    {prefix}releases   PK model, RK version key   one release per registered model version
                       PK model, RK "~model"       the model's production facts: champion, the
                                                    deployment kept for rollback, the release
                                                    holding the production lock

A release's ``timeline`` is its step-by-step history with figures (what the dashboard and
``reactor releases`` show); the audit trail has the same steps as separate records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.ports import Entity, StateStore

MODEL_ROW = "~model"  # sorts after every version key
MAX_TIMELINE = 60  # steps kept on the record; the audit trail keeps all

ACTIVE_STATES = ("pending", "qa_deploying", "smoke_testing", "awaiting_approval", "approved",
                 "prod_deploying", "canary")
FINAL_STATES = ("promoted", "qa_failed", "rejected", "expired", "rolled_back", "superseded")


def version_key(version: str) -> str:
    """Numeric versions sort numerically; others (Azure allows text) sort after them as text."""
    return version.zfill(10) if version.isdigit() else f"t-{version}"


def release_id(model: str, version: str) -> str:
    return f"{model}:{version}"


def split_id(rid: str) -> tuple[str, str]:
    model, sep, version = rid.rpartition(":")
    if not sep or not model or not version:
        raise ValueError(f"release id {rid!r} is not MODEL:VERSION")
    return model, version


@dataclass(frozen=True)
class Release:
    model: str
    version: str
    state: str = "pending"
    reason: str = ""
    qa_endpoint: str = ""
    prod_endpoint: str = ""
    deployment: str = ""  # the new deployment's name, the same on both endpoints
    previous: str = ""  # production deployment that served before this release (the rollback target)
    step: int = -1  # index into the canary steps; -1 before the first (mirror phase)
    step_started_at: str = ""
    approval: str = "manual"
    approval_deadline: str = ""
    requested_by: str = ""  # who asked for the model (manual retrain), for separation of duties
    decided_by: str = ""  # who approved or rejected
    correlation_id: str = ""
    environment: str = "{}"  # JSON: deployment environment variables the model version asks for
    created_at: str = ""
    updated_at: str = ""
    lease_until: str = ""
    timeline: tuple[Mapping[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return release_id(self.model, self.version)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def with_step(self, at: str, state: str, note: str, **figures: Any) -> Release:
        entry = {"at": at, "state": state, "note": note, **({"figures": figures} if figures else {})}
        return replace(self, state=state, updated_at=at, timeline=(*self.timeline, entry)[-MAX_TIMELINE:])

    def view(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "lease_until"}
        return {"id": self.id, **out, "timeline": list(self.timeline)}


@dataclass(frozen=True)
class ModelFacts:
    model: str
    champion_version: str = ""
    champion_deployment: str = ""
    previous_version: str = ""
    previous_deployment: str = ""
    lock: str = ""  # the release id in its production phase (one at a time per model)


@dataclass(frozen=True)
class Stored:
    value: Any
    etag: str


class ReleaseStore:
    def __init__(self, store: StateStore, prefix: str) -> None:
        self._store = store
        self.table = f"{prefix}releases"

    def get(self, model: str, version: str) -> Stored | None:
        e = self._store.get(self.table, model, version_key(version))
        return Stored(_release(e), e.etag) if e else None

    def insert(self, release: Release) -> str:
        """ETag of the new record; ``ConflictError`` when the version has a release already."""
        return self._store.insert(self.table, release.model, version_key(release.version), _props(release))

    def update(self, release: Release, etag: str) -> str:
        """``PreconditionFailed`` when someone else changed it since it was read."""
        return self._store.update(self.table, release.model, version_key(release.version), _props(release), etag)

    def active(self) -> Iterator[Stored]:
        for e in self._store.query(self.table, where={"active": True}):
            yield Stored(_release(e), e.etag)

    def of_model(self, model: str | None = None) -> Iterator[Release]:
        for e in self._store.query(self.table, partition=model):
            if e.row != MODEL_ROW:
                yield _release(e)

    def facts(self, model: str) -> Stored:
        e = self._store.get(self.table, model, MODEL_ROW)
        if e is None:
            return Stored(ModelFacts(model), "")
        known = {f.name for f in fields(ModelFacts)}
        return Stored(ModelFacts(**{k: str(v) for k, v in e.props.items() if k in known}), e.etag)

    def all_facts(self) -> list[ModelFacts]:
        known = {f.name for f in fields(ModelFacts)}
        return [ModelFacts(**{k: str(v) for k, v in e.props.items() if k in known})
                for e in self._store.query(self.table, where={"kind": "model"})]

    def save_facts(self, facts: ModelFacts, etag: str) -> str:
        """Insert when ``etag`` is empty (``ConflictError`` if it exists), else update on the ETag."""
        props = {**asdict(facts), "kind": "model"}
        if not etag:
            return self._store.insert(self.table, facts.model, MODEL_ROW, props)
        return self._store.update(self.table, facts.model, MODEL_ROW, props, etag)


def _props(r: Release) -> dict[str, Any]:
    props = {k: v for k, v in asdict(r).items() if k != "timeline"}
    return {**props, "timeline": json.dumps(list(r.timeline), default=str), "active": r.active, "kind": "release"}


def _release(e: Entity) -> Release:
    known = {f.name: f for f in fields(Release)}
    values: dict[str, Any] = {}
    for k, v in e.props.items():
        if k == "timeline":
            values[k] = tuple(json.loads(str(v) or "[]"))
        elif k == "step":
            values[k] = int(v)
        elif k in known:
            values[k] = str(v)
    return Release(**values)
