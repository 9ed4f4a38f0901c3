"""Small fakes of the outside world (storage), with the semantics the real services have:
insert-if-absent, ETag-conditional merge. They record, they do not script."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from core.errors import ConflictError, PreconditionFailed
from core.ports import BlobInfo, Entity


class MemoryStateStore:
    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[str, str], Entity]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()
        self.writes = 0

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        with self._lock:
            rows = self.tables.setdefault(table, {})
            if (partition, row) in rows:
                raise ConflictError(f"{table}/{partition}/{row}")
            etag = self._etag()
            rows[(partition, row)] = Entity(partition, row, dict(props), etag)
            self.writes += 1
            return etag

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        with self._lock:
            current = self.tables.get(table, {}).get((partition, row))
            if current is None or current.etag != etag:
                raise PreconditionFailed(f"{table}/{partition}/{row}")
            new = self._etag()
            self.tables[table][(partition, row)] = Entity(partition, row, {**current.props, **props}, new)
            self.writes += 1
            return new

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        return self.tables.get(table, {}).get((partition, row))

    def query(self, table: str, partition: str | None = None,
              where: Mapping[str, Any] | None = None) -> Iterator[Entity]:
        for (pk, _), entity in sorted(self.tables.get(table, {}).items()):
            if partition is not None and pk != partition:
                continue
            if all(entity.props.get(k) == v for k, v in (where or {}).items()):
                yield entity

    def query_rows(self, table: str, partition: str, *, below: str, limit: int, above: str = "",
                   prefixes: Mapping[str, Sequence[str]] | None = None) -> Iterator[Entity]:
        rows = sorted((row, e) for (pk, row), e in self.tables.get(table, {}).items() if pk == partition)
        found = (e for row, e in rows if row < below and (not above or row > above)
                 and all(str(e.props.get(k, "")).startswith(tuple(p)) for k, p in (prefixes or {}).items()))
        yield from itertools.islice(found, max(0, limit))

    def delete(self, table: str, partition: str, row: str) -> None:
        with self._lock:
            self.tables.get(table, {}).pop((partition, row), None)


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}

    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        self.blobs[(container, name)] = data
        return f'"{len(self.blobs)}"'

    def get(self, container: str, name: str) -> bytes:
        return self.blobs[(container, name)]

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        for (c, name), data in sorted(self.blobs.items()):
            if c == container and name.startswith(prefix):
                yield BlobInfo(c, name, "", len(data), "", datetime.now(timezone.utc))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


class FakeServing:
    """Online endpoints as Azure ML keeps them, in memory: deployments take ``ready_after`` polls to
    come up, traffic must name succeeded deployments and sum to 100 (or 0), and a deployment with
    traffic cannot be deleted. ``faults`` makes a deployment's scoring fail (``error``) or lag
    (``slow:MS``); ``served`` holds the production traffic a test says each deployment had."""

    def __init__(self, ready_after: int = 1) -> None:
        from core.ml_platform import Deployment, Endpoint

        self.endpoints: dict[str, Endpoint] = {}
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self.polls: dict[tuple[str, str], int] = {}
        self.ready_after = ready_after
        self.faults: dict[str, str] = {}
        self.fail_deploy: dict[str, str] = {}
        self.served: dict[str, tuple[int, int, float | None]] = {}  # deployment -> (requests, errors, p95)
        self.calls: list[tuple[str, ...]] = []
        self.scale_calls: list[tuple[str, str, int]] = []
        self.sample = b'{"data": [[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.0, 0.02, -0.02]]}'

    def ensure_endpoint(self, name: str, tags: Mapping[str, str]) -> Any:
        from core.ml_platform import Endpoint

        self.calls.append(("ensure_endpoint", name))
        return self.endpoints.setdefault(name, Endpoint(name, "succeeded", f"http://fake/{name}/score"))

    def get_endpoint(self, name: str) -> Any:
        return self.endpoints.get(name)

    def deploy(self, spec: Any) -> Any:
        from core.ml_platform import Deployment

        self.calls.append(("deploy", spec.endpoint, spec.name))
        key = (spec.endpoint, spec.name)
        if key not in self.deployments:
            self.deployments[key] = Deployment(spec.endpoint, spec.name, spec.model_name, spec.model_version,
                                               "creating", spec.instance_count)
            self.polls[key] = 0
        return self.deployments[key]

    def get_deployment(self, endpoint: str, name: str) -> Any:
        from dataclasses import replace

        key = (endpoint, name)
        d = self.deployments.get(key)
        if d is not None and d.state == "creating":
            self.polls[key] += 1
            if self.polls[key] >= self.ready_after:
                error = self.fail_deploy.get(name, "")
                d = self.deployments[key] = replace(d, state="failed" if error else "succeeded", error=error)
        return d

    def list_deployments(self, endpoint: str) -> list[Any]:
        return [d for (e, _), d in self.deployments.items() if e == endpoint]

    def set_traffic(self, endpoint: str, traffic: Mapping[str, int], mirror: Mapping[str, int] | None = None) -> Any:
        from dataclasses import replace

        ep = self.endpoints[endpoint]
        for name in [*traffic, *(mirror or {})]:
            d = self.deployments.get((endpoint, name))
            if d is None or d.state != "succeeded":
                raise ValueError(f"traffic names {name}, which is not a succeeded deployment of {endpoint}")
        if sum(traffic.values()) not in (0, 100):
            raise ValueError(f"traffic must sum to 100 or 0: {dict(traffic)}")
        self.calls.append(("set_traffic", endpoint, str(dict(traffic)), str(dict(mirror or {}))))
        new = {k.lower(): v for k, v in traffic.items() if v}
        mir = ep.mirror if mirror is None else {k.lower(): v for k, v in mirror.items() if v}
        self.endpoints[endpoint] = replace(ep, traffic=new, mirror=mir)
        return self.endpoints[endpoint]

    def scale(self, endpoint: str, name: str, instance_count: int) -> None:
        self.scale_calls.append((endpoint, name, instance_count))

    def delete_deployment(self, endpoint: str, name: str) -> None:
        ep = self.endpoints.get(endpoint)
        if ep is not None and (ep.traffic.get(name) or ep.mirror.get(name)):
            raise ValueError(f"{name} has traffic on {endpoint}; cannot delete it")
        self.calls.append(("delete", endpoint, name))
        self.deployments.pop((endpoint, name), None)

    def score(self, endpoint: str, body: bytes, deployment: str | None = None, timeout: float = 10.0) -> Any:
        import json

        from core.ml_platform import ScoreResult

        fault = self.faults.get(deployment or "", "")
        if fault == "error":
            return ScoreResult(500, b'{"error": "injected"}', 3.0)
        latency = float(fault.partition(":")[2]) if fault.startswith("slow:") else 4.0
        rows = len(json.loads(body)["data"])
        return ScoreResult(200, json.dumps({"predictions": [150.0] * rows}).encode(), latency)

    def deployment_health(self, endpoint: str, name: str, since: datetime) -> Any:
        from core.ml_platform import DeploymentHealth

        requests, errors, p95 = self.served.get(name, (0, 0, None))
        return DeploymentHealth(requests, errors, p95, 60.0)

    def sample_request(self, model_name: str, version: str) -> bytes | None:
        return self.sample
