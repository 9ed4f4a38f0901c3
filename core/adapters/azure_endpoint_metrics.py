"""A deployment's served traffic from Azure Monitor: the canary health check of ``AzureServing``.

The metrics are the platform metrics of the *endpoint* resource
(``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``, one-minute grain, 1-3 minutes of
ingestion delay), split by the ``deployment`` dimension:

* ``RequestsPerMinute`` (Count, Average) with ``statusCodeClass`` (2xx, 4xx, 5xx): the minutes' rates
  add up to the requests of the window, and the 5xx ones to its errors;
* ``RequestLatency_P95`` (Milliseconds, Average): one P95 per minute. Azure Monitor keeps no percentile
  over a longer window, so the window's figure is the per-minute P95s averaged, each minute weighted by
  its requests (a busy slow minute counts more than a quiet one).

The deployment resource (``.../onlineEndpoints/deployments``) only has instance metrics (CPU, memory,
disk, capacity), not requests. Queries go through azure-monitor-querymetrics ``MetricsClient``
(``metrics:getBatch`` on the regional endpoint), built on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.ml_platform import DeploymentHealth

NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS = "RequestsPerMinute"
LATENCY_P95 = "RequestLatency_P95"


@dataclass(frozen=True)
class Series:
    dimensions: Mapping[str, str]  # lower-case names and values, e.g. {"statuscodeclass": "5xx"}
    points: Mapping[datetime, float]  # minute -> that minute's average


class EndpointMetrics:
    def __init__(self, client: Callable[[], Any] | None) -> None:
        """``client``: a factory of a ``MetricsClient``; None when no metrics endpoint is configured."""
        self._factory, self._client = client, None
        self._lock = threading.Lock()

    def health(self, endpoint_resource: str, deployment: str, since: datetime, end: datetime) -> DeploymentHealth:
        window = (end - since).total_seconds()
        if window <= 0:
            return DeploymentHealth(requests=0, errors=0, p95_ms=None, window_seconds=0.0)
        name = deployment.lower().replace("'", "")
        counts = self._series(endpoint_resource, REQUESTS, f"deployment eq '{name}' and statusCodeClass eq '*'",
                              since, end)
        latency = self._series(endpoint_resource, LATENCY_P95, f"deployment eq '{name}'", since, end)
        return summarize(counts, latency, window)

    def _series(self, resource: str, metric: str, where: str, start: datetime, end: datetime) -> list[Series]:
        # one metric per call: the filter names statusCodeClass, which RequestLatency_P95 does not have
        results = self._metrics().query_resources(
            resource_ids=[resource], metric_namespace=NAMESPACE, metric_names=[metric], timespan=(start, end),
            granularity=timedelta(minutes=1), aggregations=["Average"], filter=where)
        return [Series({k.lower(): str(v).lower() for k, v in (series.metadata_values or {}).items()},
                       {p.timestamp: float(p.average) for p in series.data if p.average is not None})
                for result in results for found in result.metrics for series in found.timeseries]

    def _metrics(self) -> Any:
        with self._lock:
            if self._client is None:
                if self._factory is None:
                    raise ValueError("deployment_health needs the Azure Monitor metrics endpoint "
                                     "(from_settings(metrics_endpoint='https://<region>.metrics.monitor.azure.com'))")
                self._client = self._factory()
            return self._client


def summarize(counts: list[Series], latency: list[Series], window: float) -> DeploymentHealth:
    per_minute: dict[datetime, float] = {}
    errors = 0.0
    for series in counts:
        for minute, value in series.points.items():
            per_minute[minute] = per_minute.get(minute, 0.0) + value
            if series.dimensions.get("statuscodeclass") == "5xx":
                errors += value
    requests = round(sum(per_minute.values()))
    return DeploymentHealth(requests=requests, errors=round(errors),
                            p95_ms=weighted_p95(latency, per_minute) if requests else None, window_seconds=window)


def weighted_p95(latency: list[Series], per_minute: Mapping[datetime, float]) -> float | None:
    points = [(value, per_minute.get(minute, 0.0)) for s in latency for minute, value in s.points.items()]
    if not points:
        return None
    weight = sum(w for _, w in points)
    if weight == 0:  # latency without request counts (the two queries raced a new minute): plain mean
        return sum(v for v, _ in points) / len(points)
    return sum(v * w for v, w in points) / weight
