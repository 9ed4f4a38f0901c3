"""Where rule values come from: a tiny port (one call for many metric queries, one for many log
queries) so the evaluator batches by construction. Azure Monitor implements it in
``core/adapters/azure_monitor.py``; the local default (``core/adapters/local_metrics.py``) answers the
same queries from the local online endpoints and the ledger; ``MemorySource`` holds values set by hand
(tests and the bench)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class MetricQuery:
    """One metric over a window for many resources (of one namespace)."""

    resource_ids: tuple[str, ...]
    namespace: str
    metric: str
    aggregation: str
    window: int  # seconds
    dimensions: tuple[tuple[str, str], ...] = ()  # (name, value): Azure Monitor's dimension filter


@dataclass(frozen=True)
class LogQuery:
    """A KQL query returning one value: the ``value`` column of its first row (or its first column)."""

    workspace_id: str
    query: str
    window: int  # seconds


class MetricsSource(Protocol):
    def query_metrics(self, queries: Sequence[MetricQuery], end: datetime) -> list[Mapping[str, float | None]]:
        """For each query (same order), resource id (lower case) -> latest aggregated value or None."""
        ...

    def query_logs(self, queries: Sequence[LogQuery], end: datetime) -> list[float | None]:
        """For each query (same order), its value, or None when it returned nothing."""
        ...


class MemorySource:
    """Values set by hand (the local default, tests and the bench): thread-safe, no history."""

    def __init__(self) -> None:
        self._metrics: dict[tuple[str, str], float] = {}
        self._logs: dict[str, float] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def set_metric(self, resource_id: str, metric: str, value: float | None) -> None:
        with self._lock:
            key = (resource_id.lower(), metric)
            if value is None:
                self._metrics.pop(key, None)
            else:
                self._metrics[key] = value

    def set_log(self, query: str, value: float | None) -> None:
        with self._lock:
            if value is None:
                self._logs.pop(query, None)
            else:
                self._logs[query] = value

    def query_metrics(self, queries: Sequence[MetricQuery], end: datetime) -> list[Mapping[str, float | None]]:
        with self._lock:
            self.calls += 1
            return [{r: self._metrics.get((r.lower(), q.metric)) for r in q.resource_ids} for q in queries]

    def query_logs(self, queries: Sequence[LogQuery], end: datetime) -> list[float | None]:
        with self._lock:
            self.calls += 1
            return [self._logs.get(q.query) for q in queries]
