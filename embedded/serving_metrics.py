"""Azure Monitor's platform metrics of an online endpoint, computed from the router's request samples.

In Azure the endpoint resource (``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``) has
one-minute metrics; an alert rule asks for one of them aggregated over its window. Locally the control
plane answers the same question from what each router recorded (time, status, latency of every request),
so a rule written for Azure reads the same here:

* ``RequestsPerMinute`` (dimensions ``deployment``, ``statusCode``, ``statusCodeClass``): requests per
  minute. A failed connection to a deployment counts as ``5xx`` (the router answered 502 or 503).
* ``RequestLatency_P50``, ``_P90``, ``_P95``, ``_P99`` (dimension ``deployment``): the percentile of the
  request latencies in milliseconds (nearest rank).

The window is cut into one-minute buckets ending at the query's end, as Azure's one-minute points are
(a window under a minute is one bucket, and its request count is scaled to a per-minute figure). Each
bucket has a value (request rates: every bucket, zero included; percentiles: only buckets with
requests), and the aggregation is taken over the buckets: ``average``, ``minimum``, ``maximum``,
``total`` (the sum: the window's requests for ``RequestsPerMinute``), ``count`` (buckets with a value).
No value (no bucket with requests) is ``None``: no data, which no rule takes as a breach.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS = "RequestsPerMinute"
PERCENTILES = {"RequestLatency_P50": 50, "RequestLatency_P90": 90, "RequestLatency_P95": 95,
               "RequestLatency_P99": 99}
METRICS = (REQUESTS, *PERCENTILES)
DIMENSIONS = {REQUESTS: ("deployment", "statuscode", "statuscodeclass"), **{m: ("deployment",) for m in PERCENTILES}}
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
MAX_WINDOW = 31 * 86_400.0
GRAIN = 60.0  # seconds: Azure's one-minute points

Sample = tuple[datetime, int, float]  # (time, status, latency in ms), as serving_router.Metrics keeps them


@dataclass(frozen=True)
class Query:
    endpoint: str
    metric: str
    aggregation: str
    start: datetime
    end: datetime
    dimensions: Mapping[str, str]  # lower-case names and values; '*' or absent = any

    @property
    def deployment(self) -> str:
        value = self.dimensions.get("deployment", "*")
        return "" if value == "*" else value


def parse_query(raw: Any) -> Query:
    """One query of ``POST /metrics/query``; ``ValueError`` naming the field otherwise."""
    if not isinstance(raw, Mapping):
        raise ValueError("each query must be an object")
    metric = next((m for m in METRICS if m.lower() == str(raw.get("metric", "")).lower()), None)
    if metric is None:
        raise ValueError(f"metric {raw.get('metric')!r} is not an online-endpoint metric here "
                         f"(known: {', '.join(METRICS)})")
    aggregation = str(raw.get("aggregation", "")).lower()
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {raw.get('aggregation')!r}")
    start, end = _time(raw.get("start"), "start"), _time(raw.get("end"), "end")
    if not 0 < (end - start).total_seconds() <= MAX_WINDOW:
        raise ValueError("end must be after start, and the window at most 31 days")
    endpoint = raw.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError("endpoint must be an endpoint name")
    return Query(endpoint.lower(), metric, aggregation, start, end, _dimensions(metric, raw.get("dimensions")))


@dataclass
class Buckets:
    """One window's samples cut into buckets, per deployment: status counts and sorted latencies.
    Built once per (endpoint, window) and shared by every query on it, so a tick of a thousand rules
    reads each sample once, not once per rule."""

    grain: float
    counts: list[dict[str, Counter[int]]]  # bucket (0 = the latest) -> deployment -> status -> requests
    latencies: list[dict[str, list[float]]]  # bucket -> deployment -> latencies, sorted
    _merged: dict[int, list[float]] = field(default_factory=dict)  # bucket -> every deployment's, sorted

    def all_latencies(self, bucket: int) -> list[float]:
        if bucket not in self._merged:
            self._merged[bucket] = sorted(itertools.chain.from_iterable(self.latencies[bucket].values()))
        return self._merged[bucket]


def bucketize(samples: Mapping[str, Sequence[Sample]], start: datetime, end: datetime) -> Buckets:
    window = (end - start).total_seconds()
    grain = min(GRAIN, window)
    n = math.ceil(window / grain - 1e-9)
    counts: list[dict[str, Counter[int]]] = [{} for _ in range(n)]
    latencies: list[dict[str, list[float]]] = [{} for _ in range(n)]
    for name, found in samples.items():
        mine_counts: list[Counter[int]] = [Counter() for _ in range(n)]
        mine_latencies: list[list[float]] = [[] for _ in range(n)]
        for at, status, latency in found:
            if start <= at < end:
                index = min(n - 1, int((end - at).total_seconds() // grain))
                mine_counts[index][status] += 1
                mine_latencies[index].append(latency)
        for index in range(n):
            if mine_latencies[index]:
                counts[index][name], latencies[index][name] = mine_counts[index], mine_latencies[index]
    for bucket in latencies:
        for values in bucket.values():
            values.sort()
    return Buckets(grain, counts, latencies)


def evaluate(query: Query, samples: Mapping[str, Sequence[Sample]]) -> float | None:
    """The query's value over the samples of each deployment (already cut to the window or not)."""
    return value(query, bucketize(samples, query.start, query.end))


def value(query: Query, buckets: Buckets) -> float | None:
    """The query's value from its window's buckets."""
    wanted = query.deployment
    if query.metric == REQUESTS:
        per_minute = GRAIN / buckets.grain
        values = [per_minute * sum(n for name, by_status in bucket.items() if not wanted or name == wanted
                                   for status, n in by_status.items() if _matches(status, query.dimensions))
                  for bucket in buckets.counts]
    else:
        percent = PERCENTILES[query.metric]
        chosen = [bucket.get(wanted, []) if wanted else buckets.all_latencies(i)
                  for i, bucket in enumerate(buckets.latencies)]
        values = [_percentile(found, percent) for found in chosen if found]
    return _aggregate(values, query.aggregation)


def status_class(status: int) -> str:
    return "5xx" if status == 0 else f"{status // 100}xx"


def _matches(status: int, dimensions: Mapping[str, str]) -> bool:
    wanted_class = dimensions.get("statuscodeclass", "*")
    wanted_code = dimensions.get("statuscode", "*")
    return ((wanted_class == "*" or wanted_class == status_class(status))
            and (wanted_code == "*" or wanted_code == str(status)))


def _percentile(latencies: list[float], percent: int) -> float:
    rank = max(1, -(-percent * len(latencies) // 100))  # nearest rank: ceil(p/100 * n)
    return latencies[rank - 1]


def _aggregate(values: list[float], aggregation: str) -> float | None:
    if not values:
        return None
    if aggregation == "average":
        return sum(values) / len(values)
    if aggregation == "minimum":
        return min(values)
    if aggregation == "maximum":
        return max(values)
    if aggregation == "total":
        return sum(values)
    return float(len(values))


def _dimensions(metric: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) and v for v in raw.values()):
        raise ValueError("dimensions must be an object of dimension name -> value")
    found = {str(k).lower(): v.lower() for k, v in raw.items()}
    unknown = sorted(set(found) - set(DIMENSIONS[metric]))
    if unknown:
        raise ValueError(f"{metric} has no dimension {', '.join(unknown)} (it has: {', '.join(DIMENSIONS[metric])})")
    return found


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time, got {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
