"""Azure Monitor as a ``MetricsSource``: metrics through azure-monitor-querymetrics ``MetricsClient``
(one ``metrics:getBatch`` call covers up to 50 resources of one namespace), logs through
azure-monitor-query ``LogsQueryClient.query_batch`` (up to 100 queries per ``$batch`` call).
Calls run concurrently within a bound. The SDKs load on first use, never at import (cold start).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from core.alerting.sources import LogQuery, MetricQuery

METRICS_PER_CALL = 50  # resources per metrics:getBatch call (service limit)
LOGS_PER_CALL = 100  # queries per logs $batch call (service limit)
T = TypeVar("T")
R = TypeVar("R")


class AzureMonitorSource:
    def __init__(self, credential: Any = None, *, metrics_endpoint: str, max_concurrency: int = 4,
                 **client_options: Any) -> None:
        """``metrics_endpoint`` is regional (``https://<region>.metrics.monitor.azure.com``);
        ``client_options`` go to both SDK clients (``transport=`` in tests)."""
        self._credential = credential
        self._endpoint = metrics_endpoint
        self._bound = max(1, max_concurrency)
        self._options = client_options
        self._metrics: Any = None
        self._logs: Any = None

    # -- the port -------------------------------------------------------------------------------
    def query_metrics(self, queries: Sequence[MetricQuery], end: datetime) -> list[Mapping[str, float | None]]:
        calls = [(q, chunk) for q in queries for chunk in _chunks(list(q.resource_ids), METRICS_PER_CALL)]
        answers = self._parallel(lambda c: self._metrics_call(c[0], c[1], end), calls)
        merged: dict[MetricQuery, dict[str, float | None]] = {q: dict.fromkeys(q.resource_ids) for q in queries}
        for (query, _), values in zip(calls, answers, strict=True):
            merged[query].update(values)
        return [merged[q] for q in queries]

    def query_logs(self, queries: Sequence[LogQuery], end: datetime) -> list[float | None]:
        chunks = _chunks(list(queries), LOGS_PER_CALL)
        answers = self._parallel(lambda chunk: self._logs_call(chunk, end), chunks)
        return [value for answer in answers for value in answer]

    # -- calls ----------------------------------------------------------------------------------
    def _metrics_call(self, q: MetricQuery, resources: list[str], end: datetime) -> dict[str, float | None]:
        window = timedelta(seconds=q.window)
        where = {"filter": dimension_filter(q.dimensions)} if q.dimensions else {}
        results = self._metrics_client().query_resources(
            resource_ids=resources, metric_namespace=q.namespace, metric_names=[q.metric],
            timespan=(end - window, end), granularity=window, aggregations=[q.aggregation.capitalize()], **where)
        values: dict[str, float | None] = {}
        for result in results:
            for metric in result.metrics:
                values[_resource_of(metric.id)] = _latest(metric, q.aggregation)
        return values

    def _logs_call(self, chunk: list[LogQuery], end: datetime) -> list[float | None]:
        from azure.monitor.query import LogsBatchQuery, LogsQueryStatus

        batch = [LogsBatchQuery(q.workspace_id, q.query, timespan=(end - timedelta(seconds=q.window), end))
                 for q in chunk]
        results = self._logs_client().query_batch(batch)
        return [_first_value(r.tables) if r.status == LogsQueryStatus.SUCCESS else None for r in results]

    def _parallel(self, call: Callable[[T], R], items: list[T]) -> list[R]:
        if len(items) <= 1:
            return [call(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self._bound, len(items))) as pool:
            return list(pool.map(call, items))

    # -- clients (built on first use) -------------------------------------------------------------
    def _metrics_client(self) -> Any:
        if self._metrics is None:
            from azure.monitor.querymetrics import MetricsClient

            self._metrics = MetricsClient(self._endpoint, self._credential_or_default(), **self._options)
        return self._metrics

    def _logs_client(self) -> Any:
        if self._logs is None:
            from azure.monitor.query import LogsQueryClient

            self._logs = LogsQueryClient(self._credential_or_default(), **self._options)
        return self._logs

    def _credential_or_default(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential


def dimension_filter(dimensions: Sequence[tuple[str, str]]) -> str:
    """Azure Monitor's OData-like filter: ``statusCodeClass eq '5xx' and deployment eq 'blue'``
    (the rules refuse quotes in values, so nothing needs escaping)."""
    return " and ".join(f"{name} eq '{value}'" for name, value in dimensions)


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _resource_of(metric_id: str) -> str:
    """A metric id is ``<resource id>/providers/Microsoft.Insights/metrics/<name>``."""
    lowered = metric_id.lower()
    cut = lowered.find("/providers/microsoft.insights/metrics/")
    return lowered[:cut] if cut >= 0 else lowered


def _latest(metric: Any, aggregation: str) -> float | None:
    points = [getattr(p, aggregation, None) for series in metric.timeseries for p in series.data]
    found = [float(v) for v in points if v is not None and not math.isnan(float(v))]
    return found[-1] if found else None


def _first_value(tables: Sequence[Any]) -> float | None:
    if not tables or not tables[0].rows:
        return None
    table = tables[0]
    column = table.columns.index("value") if "value" in table.columns else 0
    value = table.rows[0][column]
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
