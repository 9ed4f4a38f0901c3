"""Alerting at scale with the in-memory source and store: the time to evaluate 1,000 rules per
tick (target <= 2 s), and the messages sent when 1,000 alerts fire at once (target <= 10).

    python bench/alerts.py
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.alerting import Alerting, parse_alerting
from core.alerting.sources import MemorySource
from core.ledger import Ledger
from core.notify.model import Notification
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore

RULES = 1_000
ENDPOINTS = 5
EP = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/ws/onlineendpoints/"


class CountingSink:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def enqueue(self, notification: Notification) -> bool:
        self.sent.append(notification)
        return True


def rules() -> list[dict[str, object]]:
    return [{"name": f"LatencyHigh{i}", "kind": "metric", "resource_ids": [f"{EP}ep{i % ENDPOINTS}-dep{i}"],
             "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
             "metric": "RequestLatency_P99",
             "operator": ">", "threshold": 500, "labels": {"endpoint": f"ep{i % ENDPOINTS}", "model": "m"}}
            for i in range(RULES)]


def main() -> None:
    config, problems = parse_alerting(json.dumps({"group_by": ["endpoint"], "group_wait": "30s", "rules": rules()}))
    assert not problems, problems
    clock, store, source, sink = Clock(), MemoryStateStore(), MemorySource(), CountingSink()
    ledger = Ledger(store, MemoryBlobStore(), prefix="b", container="c", clock=clock, lease_seconds=60)
    alerting = Alerting(store, ledger, sink, source, config, prefix="b", clock=clock)
    quiet = _timed(alerting.tick)
    for i in range(RULES):
        source.set_metric(f"{EP}ep{i % ENDPOINTS}-dep{i}", "RequestLatency_P99", 900)
    burst = _timed(alerting.tick)  # 1,000 transitions to firing, each audited
    steady = _timed(alerting.tick)
    clock.now += timedelta(seconds=30)
    flush = _timed(alerting.tick)
    print(f"evaluate {RULES} rules, nothing firing:      {quiet:.3f} s (target <= 2 s)")
    print(f"evaluate {RULES} rules, all start firing:    {burst:.3f} s")
    print(f"evaluate {RULES} rules, steady firing:       {steady:.3f} s")
    print(f"evaluate + flush after group_wait:         {flush:.3f} s")
    print(f"messages for {RULES} alerts firing at once: {len(sink.sent)} (target <= 10; "
          f"alerts per message {[n.alerts for n in sink.sent]})")


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
