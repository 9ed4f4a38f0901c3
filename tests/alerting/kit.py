"""A small alerting world for the tests: memory store, hand-moved clock, recording sink."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from core.alerting import Alerting
from core.alerting.rules import parse_alerting
from core.alerting.sources import MemorySource
from core.ledger import Ledger
from core.notify.model import Notification
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore

EP = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/ws/onlineendpoints/"


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self._ids: set[str] = set()

    def enqueue(self, notification: Notification) -> bool:
        if notification.id in self._ids:
            return False
        self._ids.add(notification.id)
        self.sent.append(notification)
        return True


def metric_rule(name: str = "LatencyHigh", resources: tuple[str, ...] = ("ep1",), **extra: Any) -> dict[str, Any]:
    rule = {"name": name, "kind": "metric", "resource_ids": [EP + r for r in resources],
            "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "metric": "RequestLatency_P99", "operator": ">", "threshold": 500, "severity": "warning",
            "labels": {"model": "diabetes", "endpoint": resources[0], "team": "ml"}}
    return {**rule, **extra}


class World:
    def __init__(self, doc: dict[str, Any], retrain: Any = None, store: Any = None, prefix: str = "t",
                 rollback: Any = None) -> None:
        config, problems = parse_alerting(json.dumps(doc))
        assert problems == []
        self.clock = Clock()
        self.store = store or MemoryStateStore()
        self.ledger = Ledger(self.store, MemoryBlobStore(), prefix=prefix, container="c", clock=self.clock,
                             lease_seconds=60)
        self.sink = RecordingSink()
        self.source = MemorySource()
        self.alerting = Alerting(self.store, self.ledger, self.sink, self.source, config, prefix=prefix,
                                 clock=self.clock, retrain=retrain, rollback=rollback)

    def advance(self, seconds: float) -> None:
        self.clock.now += timedelta(seconds=seconds)

    def tick(self) -> dict[str, int]:
        return self.alerting.tick()

    def state(self, fp: str | None = None) -> str:
        alerts = self.alerting.alerts.alerts()
        stored = alerts[fp] if fp else next(iter(alerts.values()))
        return stored.value.state

    def actions(self, prefix: str = "alert.") -> list[str]:
        return [r["action"] for r in self.ledger.audit_records() if r["action"].startswith(prefix)]
