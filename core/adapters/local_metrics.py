"""The local ``MetricsSource`` (``REACTOR_ALERTS_SOURCE=local``): the queries a rule written for Azure
Monitor makes, answered from what the embedded platform itself records.

It is a composition: metric name -> provider (a callable shaped like ``query_metrics``), plus a list of
log answerers. Adding a metric is one entry in the mapping, e.g. in ``core/wiring.py``::

    LocalSource({**online_endpoint_metrics(url), "LiveRMSE": live_quality.query_metrics}, logs)

Built in:

* **online-endpoint metrics** (``RequestsPerMinute``, ``RequestLatency_P50/P90/P95/P99``) of the
  resource ids Azure uses, ``/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.MachineLearning
  Services/workspaces/{w}/onlineEndpoints/{name}`` (namespace ``Microsoft.MachineLearningServices/
  workspaces/onlineEndpoints``), with the dimensions ``deployment``, ``statusCode`` and
  ``statusCodeClass``: asked in one call per tick of the local serving control plane
  (``POST /metrics/query``), which computes them from its routers' request records as Azure Monitor
  would (``embedded/serving_metrics.py``). Locally there is one workspace, so only the endpoint name of a
  resource id is looked at.
* **log queries** on the ledger (``FailedJobs``): ``AmlRunStatusChangedEvent | where Status == "Failed"
  | summarize value = count()`` (also ``"Canceled"``, ``"Completed"``, or ``Status in ("Failed",
  "Canceled")``), the retraining jobs of this app that ended so within the window. In Azure the same
  query counts every run of the workspace that ended so (steps included).

Anything else (a metric or a query nobody answers, a control plane that is down, a provider that
raises) is no data (``None``), logged once per distinct problem: an alert tick never fails for it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from core.alerting.sources import LogQuery, MetricQuery
from core.logs import get_logger, log
from core.ports import StateStore

NAMESPACE = "microsoft.machinelearningservices/workspaces/onlineendpoints"
ENDPOINT_METRICS = ("RequestsPerMinute", "RequestLatency_P50", "RequestLatency_P90", "RequestLatency_P95",
                    "RequestLatency_P99")
QUERIES_PER_CALL = 500  # the control plane's limit per POST /metrics/query
_ENDPOINT_ID = re.compile(r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.machinelearningservices/"
                          r"workspaces/[^/]+/onlineendpoints/([a-z0-9-]+)$")
_log = get_logger("alerting.local")

MetricProvider = Callable[[Sequence[MetricQuery], datetime], list[Mapping[str, float | None]]]


class LogAnswer(Protocol):
    def answers(self, query: str) -> bool:
        """Whether this answerer knows the query."""
        ...

    def value(self, query: LogQuery, end: datetime) -> float | None: ...


class _Once:
    """Logs each distinct problem once per process: a rule evaluated every few seconds must not flood."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def warn(self, problem: str, **fields: Any) -> None:
        with self._lock:
            if problem in self._seen:
                return
            self._seen.add(problem)
        log(_log, logging.WARNING, problem, **fields)


class LocalSource:
    def __init__(self, metrics: Mapping[str, MetricProvider], logs: Sequence[LogAnswer] = ()) -> None:
        self._metrics = dict(metrics)
        self._logs = list(logs)
        self._once = _Once()

    def query_metrics(self, queries: Sequence[MetricQuery], end: datetime) -> list[Mapping[str, float | None]]:
        answers: list[dict[str, float | None]] = [dict.fromkeys(q.resource_ids) for q in queries]
        by_provider: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            if q.metric in self._metrics:
                by_provider.setdefault(q.metric, []).append(i)
            else:
                self._once.warn("no local source answers this metric; its rules see no data", metric=q.metric,
                                known=",".join(sorted(self._metrics)))
        for provider, indexes in self._batches(by_provider):
            try:
                found = provider([queries[i] for i in indexes], end)
            except Exception as exc:  # one failing provider must not stop the others' rules
                self._once.warn("a local metrics provider failed; its rules see no data",
                                error=f"{type(exc).__name__}: {exc}")
                continue
            for i, values in zip(indexes, found, strict=True):
                answers[i].update({r: v for r, v in values.items() if r in answers[i]})
        return list(answers)

    def _batches(self, by_metric: Mapping[str, list[int]]) -> list[tuple[MetricProvider, list[int]]]:
        """One call per provider, however many metric names it answers (the endpoints' five share one)."""
        merged: dict[int, tuple[MetricProvider, list[int]]] = {}
        for metric, indexes in by_metric.items():
            provider = self._metrics[metric]
            merged.setdefault(id(provider), (provider, []))[1].extend(indexes)
        return [(p, sorted(i)) for p, i in merged.values()]

    def query_logs(self, queries: Sequence[LogQuery], end: datetime) -> list[float | None]:
        return [self._log_value(q, end) for q in queries]

    def _log_value(self, query: LogQuery, end: datetime) -> float | None:
        answerer = next((a for a in self._logs if a.answers(query.query)), None)
        if answerer is None:
            self._once.warn("this log query is not supported locally; its rule sees no data", query=query.query[:300])
            return None
        try:
            return answerer.value(query, end)
        except Exception as exc:
            self._once.warn("a local log query failed; its rule sees no data", query=query.query[:300],
                            error=f"{type(exc).__name__}: {exc}")
            return None


# -- online endpoints -----------------------------------------------------------------------------------
class EndpointMetrics:
    """Online-endpoint metrics from the local serving control plane (one POST per tick and 500 queries)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._once = _Once()

    def query_metrics(self, queries: Sequence[MetricQuery], end: datetime) -> list[Mapping[str, float | None]]:
        asked: list[tuple[int, str, dict[str, Any]]] = []  # (query index, resource id, control-plane query)
        for i, q in enumerate(queries):
            for resource in q.resource_ids:
                found = self._query(q, resource, end)
                if found is not None:
                    asked.append((i, resource, found))
        answers: list[dict[str, float | None]] = [dict.fromkeys(q.resource_ids) for q in queries]
        for start in range(0, len(asked), QUERIES_PER_CALL):
            chunk = asked[start:start + QUERIES_PER_CALL]
            for (i, resource, sent), value, error in zip(chunk, *self._post([c[2] for c in chunk]), strict=True):
                if error:
                    self._once.warn("the local control plane refused a metric query", metric=sent["metric"],
                                    resource=resource, error=error)
                answers[i][resource] = value
        return list(answers)

    def _query(self, q: MetricQuery, resource: str, end: datetime) -> dict[str, Any] | None:
        found = _ENDPOINT_ID.match(resource.lower())
        if q.namespace.lower() != NAMESPACE or found is None:
            self._once.warn("not an online endpoint of the local platform; no data", resource=resource,
                            namespace=q.namespace)
            return None
        when = (end if end.tzinfo else end.replace(tzinfo=UTC)).astimezone(UTC)
        return {"endpoint": found.group(1), "metric": q.metric, "aggregation": q.aggregation,
                "start": (when - timedelta(seconds=q.window)).isoformat(), "end": when.isoformat(),
                "dimensions": dict(q.dimensions)}

    def _post(self, chunk: list[dict[str, Any]]) -> tuple[list[float | None], list[str | None]]:
        nothing: tuple[list[float | None], list[str | None]] = ([None] * len(chunk), [None] * len(chunk))
        try:
            response = self._session.post(f"{self.base_url}/metrics/query", json={"queries": chunk},
                                          timeout=self._timeout)
        except requests.RequestException as exc:
            self._once.warn("the local serving control plane is unreachable; endpoint rules see no data",
                            url=self.base_url, error=type(exc).__name__)
            return nothing
        if response.status_code != 200:
            self._once.warn("the local serving control plane refused the metric queries",
                            status=response.status_code, error=response.text[:300])
            return nothing
        body = response.json()
        values = [None if v is None else float(v) for v in body["values"]]
        return values, list(body["errors"])


def online_endpoint_metrics(base_url: str) -> dict[str, MetricProvider]:
    """The providers of every online-endpoint metric, sharing one client (one call per tick)."""
    client = EndpointMetrics(base_url)
    return dict.fromkeys(ENDPOINT_METRICS, client.query_metrics)


# -- the ledger -------------------------------------------------------------------------------------------
_RUN_STATUS = re.compile(r'^AmlRunStatusChangedEvent \| where Status (?:== "(\w+)"|in \(("\w+"(?:, ?"\w+")*)\)) '
                         r'\| summarize (?:value ?= ?)?count\(\)$')
_ACTIONS = {"Failed": "retrain.failed", "Canceled": "retrain.canceled", "Completed": "retrain.completed"}


class FailedJobs:
    """``AmlRunStatusChangedEvent`` status counts, from the retraining outcomes in the audit trail."""

    def __init__(self, store: StateStore, audit_table: str) -> None:
        self._store = store
        self._table = audit_table

    def answers(self, query: str) -> bool:
        return self._statuses(query) is not None

    def value(self, query: LogQuery, end: datetime) -> float | None:
        statuses = self._statuses(query.query) or []
        start = end - timedelta(seconds=query.window)
        count = 0
        for day in _days(start, end):
            for status in statuses:
                for e in self._store.query(self._table, partition=day, where={"action": _ACTIONS[status]}):
                    count += start <= datetime.fromisoformat(str(e.props["at"])) <= end
        return float(count)

    @staticmethod
    def _statuses(query: str) -> list[str] | None:
        found = _RUN_STATUS.match(" ".join(query.replace("'", '"').split()))
        if found is None:
            return None
        names = [found.group(1)] if found.group(1) else [n.strip().strip('"') for n in found.group(2).split(",")]
        return names if all(n in _ACTIONS for n in names) else None


def _days(start: datetime, end: datetime) -> list[str]:
    """The audit trail's partitions (one per UTC day) that the window touches."""
    days, day = [], start.date()
    while day <= end.date():
        days.append(day.strftime("%Y%m%d"))
        day += timedelta(days=1)
    return days
