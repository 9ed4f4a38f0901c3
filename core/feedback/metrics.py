"""Live quality as alert-rule values: a ``MetricsSource`` for one namespace, to compose with others.

    {"kind": "metric", "namespace": "mlops.reactor/livequality", "metric": "rmse",   (or "mae", "n")
     "resource_ids": ["/models/diabetes"],            the version in production
                 or  ["/models/diabetes/versions/3"], one version
     "window": ..., "operator": "gt", "threshold": 65}

The rule's window is the live-quality window (by prediction time) ending at the evaluation time.
A version with no labelled prediction in the window has no value (None), so a rule on it stays
inactive rather than firing on an empty sample. Other namespaces and log queries get None: this
source only knows live quality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from core.alerting.sources import LogQuery, MetricQuery
from core.feedback.quality import LiveQuality

NAMESPACE = "mlops.reactor/livequality"
METRICS = ("rmse", "mae", "n")
Production = Callable[[str], str | None]  # model -> the version in production (None: nothing is)


class LiveQualitySource:
    def __init__(self, quality: LiveQuality, models: Iterable[str], production: Production) -> None:
        self._quality = quality
        self._models = {m.lower(): m for m in models}  # rule resource ids arrive lower-cased
        self._production = production

    def query_metrics(self, queries: Sequence[MetricQuery], end: datetime) -> list[Mapping[str, float | None]]:
        return [{r: self._value(q, r, end) for r in q.resource_ids} for q in queries]

    def query_logs(self, queries: Sequence[LogQuery], end: datetime) -> list[float | None]:
        return [None for _ in queries]

    def _value(self, query: MetricQuery, resource: str, end: datetime) -> float | None:
        if query.namespace.lower() != NAMESPACE or query.metric.lower() not in METRICS:
            return None
        found = self._target(resource)
        if found is None:
            return None
        model, version = found
        value = self._quality.live_quality(model, version, timedelta(seconds=query.window), end)
        figure = value[query.metric.lower()]
        return None if not value["n"] else float(figure)

    def _target(self, resource: str) -> tuple[str, str] | None:
        parts = resource.strip("/").split("/")
        if len(parts) not in (2, 4) or parts[0].lower() != "models" or parts[1].lower() not in self._models:
            return None
        model = self._models[parts[1].lower()]
        if len(parts) == 4:
            return (model, parts[3]) if parts[2].lower() == "versions" else None
        version = self._production(model)
        return (model, version) if version else None
