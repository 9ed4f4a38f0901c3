"""Alert and alert-group state in Table Storage through the ``StateStore`` port.

Every write is conditional: a new row is an insert-if-absent, a change is an update under the
ETag that was read. When two instances evaluate at once the loser gets ``False`` and does
nothing (no audit, no action, no notification): the winner already did it, exactly once.

Tables (prefix from settings):
    {prefix}alerts       PK "alert", RK fingerprint   one row per alert (rule x resource, or received)
    {prefix}alertgroups  PK "group", RK group key     what was last notified for the group
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.alerting.lifecycle import AlertState
from core.errors import ConflictError, PreconditionFailed
from core.ports import StateStore

ALERT_PK = "alert"
GROUP_PK = "group"


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable id of an alert: its sorted labels, hashed (Alertmanager's fingerprint)."""
    text = "\n".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class GroupState:
    key: str
    labels: dict[str, str] = field(default_factory=dict)  # the group_by label values
    created_at: str = ""  # first alert of the current episode (group_wait runs from it)
    flushed_at: str = ""  # last flush (group_interval runs from it)
    sent_kind: str = ""  # "", firing, resolved
    sent_hash: str = ""  # hash of the firing fingerprints last notified
    sent_count: int = 0
    sent_at: str = ""  # repeat_interval runs from it
    severity: str = "info"
    seq: int = 0  # notifications sent for the group; part of the notification id


@dataclass(frozen=True)
class Stored:
    value: Any  # AlertState | GroupState
    etag: str = ""  # "" when not stored yet


class AlertStore:
    def __init__(self, store: StateStore, prefix: str) -> None:
        self._store = store
        self.alerts_table = f"{prefix}alerts"
        self.groups_table = f"{prefix}alertgroups"

    def alerts(self) -> dict[str, Stored]:
        return {e.row: Stored(_alert(e.props, e.row), e.etag) for e in self._store.query(self.alerts_table, ALERT_PK)}

    def alert(self, fp: str) -> Stored | None:
        e = self._store.get(self.alerts_table, ALERT_PK, fp)
        return None if e is None else Stored(_alert(e.props, e.row), e.etag)

    def groups(self) -> dict[str, Stored]:
        return {e.row: Stored(_group(e.props, e.row), e.etag) for e in self._store.query(self.groups_table, GROUP_PK)}

    def save_alert(self, new: AlertState, etag: str) -> bool:
        props = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in asdict(new).items() if k != "fingerprint"}
        return self._write(self.alerts_table, ALERT_PK, new.fingerprint, props, etag)

    def save_group(self, new: GroupState, etag: str) -> bool:
        props = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in asdict(new).items() if k != "key"}
        return self._write(self.groups_table, GROUP_PK, new.key, props, etag)

    def _write(self, table: str, pk: str, row: str, props: Mapping[str, Any], etag: str) -> bool:
        try:
            if etag:
                self._store.update(table, pk, row, props, etag)
            else:
                self._store.insert(table, pk, row, props)
        except (ConflictError, PreconditionFailed):
            return False
        return True


def _alert(props: Mapping[str, Any], row: str) -> AlertState:
    fields = {k: v for k, v in props.items() if k in AlertState.__dataclass_fields__}
    return AlertState(fingerprint=row, **{k: json.loads(v) if k in ("labels", "annotations") else v
                                          for k, v in fields.items()})


def _group(props: Mapping[str, Any], row: str) -> GroupState:
    fields = {k: v for k, v in props.items() if k in GroupState.__dataclass_fields__}
    return GroupState(key=row, **{k: json.loads(v) if k == "labels" else v for k, v in fields.items()})
