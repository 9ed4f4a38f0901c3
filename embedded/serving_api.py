"""The serving control plane's logic: endpoints, deployments, traffic, as Azure ML's control plane has them.

``ControlPlane`` keeps the desired state in ``ServingStore`` (written before it is applied, so a
restart restores what callers were told), one ``Router`` per endpoint and one ``Replica`` per running
deployment. Its methods answer the HTTP API in ``embedded/serving.py``: plain JSON-ready dicts, and
``ApiError`` with a 4xx status for a request that cannot be done, with a message fit for a person.

Azure's rules it keeps (a release that works here must work there): names are lower case; traffic
names existing deployments that finished provisioning and sums to 100 (or 0), zero entries are
dropped; mirror traffic goes to one deployment that has no live traffic, at most 50 %; a deployment
with traffic or mirror traffic cannot be deleted; a deployment's model cannot change.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from core.adapters.local_ml import ML_TOPIC
from core.adapters.local_outage import Outage, OutageSwitch, parse_outage
from core.logs import get_logger, log
from core.ports import BlobStore, Clock, utcnow
from embedded.serving_collect import Collector
from embedded.serving_faults import parse_fault
from embedded.serving_metrics import Buckets, bucketize, parse_query, value
from embedded.serving_replica import Replica
from embedded.serving_router import Router, Routes
from embedded.serving_store import DeploymentRecord, EndpointRecord, ServingStore

MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
CARD_FILE = "model.json"  # ml.model_io.CARD_FILE, written by ml.train next to the model
TAG_DEPLOYMENT = "reactor_deployment"  # added to ServiceTags: which deployment of the endpoint was deployed
MAX_INSTANCES = 20
MAX_MIRROR = 50  # percent, Azure's limit
MAX_MAP = 50  # entries in tags or environment
MAX_QUERIES = 500  # metric queries per call
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")  # Azure: 3-32 characters, letter first
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_EVENT_NAMESPACE = uuid.UUID("8d0c3b7e-52a4-4f7e-9b1a-6c2e5f4a9d13")
_log = get_logger("serving")

Publish = Callable[[list[dict[str, Any]]], object]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ModelFiles:
    """Registered versions' files in the models container, where the local ML platform put them."""

    blobs: BlobStore
    container: str

    def names(self, model: str, version: str) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        prefix = f"{model}/{int(version)}/"
        try:
            return [b.name for b in self.blobs.list(self.container, prefix)]
        except ResourceNotFoundError:  # no models container yet: nothing was ever registered
            return []

    def download(self, model: str, version: str, dest: Path) -> None:
        prefix = f"{model}/{int(version)}/"
        names = self.names(model, version)
        if not names:
            raise FileNotFoundError(f"model {model}:{version} has no files under {self.container}/{prefix}")
        for name in names:
            parts = PurePosixPath(name[len(prefix):]).parts
            if not parts or ".." in parts:
                continue  # never write outside the model directory
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.blobs.get(self.container, name))

    def features(self, model: str, version: str) -> tuple[str, ...]:
        """The feature names of a version, in its model's order, from its model card (``model.json``)."""
        card = json.loads(self.blobs.get(self.container, f"{model}/{int(version)}/{CARD_FILE}"))
        names = card.get("features") if isinstance(card, dict) else None
        return tuple(str(n) for n in names) if isinstance(names, list) else ()


class ControlPlane:
    def __init__(self, store: ServingStore, files: ModelFiles, publish: Publish, workdir: Path, *,
                 clock: Clock = utcnow, collector: Collector | None = None,
                 outage: OutageSwitch | None = None) -> None:
        self._store = store
        self._outage = outage
        self.outage_failures = 0  # endpoint requests failed by an outage since the start
        self.collector = collector
        self._files = files
        self._publish = publish
        self._workdir = workdir
        self._clock = clock
        self._lock = threading.RLock()
        self._endpoints: dict[str, EndpointRecord] = {}
        self._routers: dict[str, Router] = {}
        self._deployments: dict[tuple[str, str], DeploymentRecord] = {}  # tombstones included
        self._replicas: dict[tuple[str, str], Replica] = {}

    # -- life --------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Bring back what the store holds: endpoints on their ports, deployments restarted."""
        with self._lock:
            for record in self._store.endpoints():
                self._open_endpoint(record)
                for deployment in self._store.deployments(record.name):
                    self._deployments[(record.name, deployment.name)] = deployment
                    if not deployment.deleted and deployment.instance_count > 0:
                        self._start(deployment)
                self._refresh(record.name)
        log(_log, logging.INFO, "serving state restored", endpoints=len(self._endpoints),
            deployments=len(self._replicas))

    def close(self) -> None:
        with self._lock:
            replicas, routers = list(self._replicas.values()), list(self._routers.values())
            self._replicas.clear()
        if replicas:  # in parallel: each process takes a moment to stop
            with ThreadPoolExecutor(len(replicas)) as pool:
                list(pool.map(Replica.stop, replicas))
        for router in routers:
            router.stop()
        if self.collector is not None:  # after the routers: nothing more arrives, everything buffered is written
            self.collector.close()

    # -- endpoints ---------------------------------------------------------------------------------
    def ensure_endpoint(self, name: str, tags: Any) -> tuple[bool, dict[str, Any]]:
        name, tags = _name(name, "endpoint"), _strings(tags, "tags")
        with self._lock:
            if name in self._endpoints:
                return False, self._endpoint_json(name)
            router = Router(name, collector=self.collector).start()
            try:
                self._store.save_endpoint(EndpointRecord(name, tags, port=router.port))
            except Exception:
                router.stop()
                raise
            self._routers[name] = router
            self._endpoints[name] = EndpointRecord(name, tags, port=router.port)
            self._refresh(name)
            created = self._endpoint_json(name)
        log(_log, logging.INFO, "endpoint created", endpoint=name, scoring_uri=router.scoring_uri)
        return True, created

    def get_endpoint(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._endpoint_json(self._endpoint(name).name)

    def list_endpoints(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._endpoint_json(name) for name in sorted(self._endpoints)]

    def set_traffic(self, endpoint: str, traffic: Any, mirror: Any) -> dict[str, Any]:
        with self._lock:
            record = self._endpoint(endpoint)
            live = self._weights(record.name, traffic, "traffic")
            if sum(live.values()) not in (0, 100):
                raise ApiError(400, f"traffic must sum to 100 (or 0 for none), got {sum(live.values())}: {live}")
            shadow = self._mirror(record.name, record.mirror if mirror is None else mirror, live)
            updated = EndpointRecord(record.name, record.tags, live, shadow, record.port)
            self._store.save_endpoint(updated)
            self._endpoints[record.name] = updated
            self._refresh(record.name)
        log(_log, logging.INFO, "traffic set", endpoint=record.name, traffic=json.dumps(live),
            mirror=json.dumps(shadow))
        return self.get_endpoint(record.name)

    # -- deployments -------------------------------------------------------------------------------
    def deploy(self, endpoint: str, name: str, body: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        spec = self._spec(endpoint, name, body)
        if not self._files.names(spec.model_name, spec.model_version):
            raise ApiError(400, f"model {spec.model_name}:{spec.model_version} is not registered (no files "
                                f"under {self._files.container}/{spec.model_name}/{int(spec.model_version)}/)")
        with self._lock:
            self._endpoint(spec.endpoint)
            current = self._deployments.get((spec.endpoint, spec.name))
            if current is not None and not current.deleted:
                self._same_model(current, spec)
                return False, self._deployment_json(current)
            record = spec.but(generation=current.generation + 1 if current else 1)
            self._store.save_deployment(record)
            self._deployments[(record.endpoint, record.name)] = record
            self._start(record)
            self._refresh(record.endpoint)
            created = self._deployment_json(record)
        log(_log, logging.INFO, "deployment creating", endpoint=record.endpoint, deployment=record.name,
            model=record.model_name, version=record.model_version)
        return True, created

    def get_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self._deployment_json(self._deployment(endpoint, name))

    def list_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        with self._lock:
            record = self._endpoint(endpoint)
            return [self._deployment_json(d) for (e, _), d in sorted(self._deployments.items())
                    if e == record.name and not d.deleted]

    def scale(self, endpoint: str, name: str, count: Any) -> dict[str, Any]:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_INSTANCES:
            raise ApiError(400, f"instance_count must be a whole number from 0 to {MAX_INSTANCES}, got {count!r}")
        with self._lock:
            record = self._deployment(endpoint, name).but(instance_count=count)
            self._store.save_deployment(record)
            self._deployments[(record.endpoint, record.name)] = record
            running = self._replicas.get((record.endpoint, record.name))
            if count == 0 and running is not None:
                self._stop(record.endpoint, record.name)
            elif count > 0 and running is None:
                self._start(record)  # back from zero: a new process, "creating" until it answers
            self._refresh(record.endpoint)
        log(_log, logging.INFO, "deployment scaled", endpoint=record.endpoint, deployment=record.name, instances=count)
        return self.get_deployment(record.endpoint, record.name)

    def delete_deployment(self, endpoint: str, name: str) -> None:
        with self._lock:
            key = (self._endpoint(endpoint).name, _name(name, "deployment"))
            record = self._deployments.get(key)
            if record is None or record.deleted:
                return  # absent is fine: delete is idempotent
            shares = self._endpoints[key[0]]
            if shares.traffic.get(key[1], 0) or shares.mirror.get(key[1], 0):
                raise ApiError(409, f"deployment {key[1]} has traffic ({shares.traffic.get(key[1], 0)} %) or mirror "
                                    f"traffic ({shares.mirror.get(key[1], 0)} %) on endpoint {key[0]}: set it to 0 "
                                    "before deleting")
            self._store.save_deployment(record.but(deleted=True))
            self._deployments[key] = record.but(deleted=True)
            self._stop(*key)
            self._routers[key[0]].metrics.forget(key[1])
            self._refresh(key[0])
        log(_log, logging.INFO, "deployment deleted", endpoint=key[0], deployment=key[1])

    def health(self, endpoint: str, name: str, since: datetime) -> dict[str, Any]:
        with self._lock:
            record = self._deployment(endpoint, name)
            router = self._routers[record.endpoint]
        return router.metrics.health(record.name, since).as_json()

    def set_fault(self, endpoint: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A local-only test hook (``serving_faults``): make a running deployment's traffic fail or slow."""
        text = body.get("fault")
        if set(body) != {"fault"} or not isinstance(text, str):
            raise ApiError(400, 'body must be {"fault": "error" | "error-percent:N" | "slow:MS" | ""}')
        try:
            fault = parse_fault(text)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        with self._lock:
            record = self._deployment(endpoint, name)
            self._routers[record.endpoint].set_fault(record.name, fault)
        log(_log, logging.WARNING if fault else logging.INFO, "fault set" if fault else "fault cleared",
            endpoint=record.endpoint, deployment=record.name, fault=text)
        return {"endpoint": record.endpoint, "deployment": record.name, "fault": text.strip()}

    def set_outage(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A local-only test hook (``local_outage``): the whole ML platform fails for a period."""
        if self._outage is None:
            raise ApiError(404, "this control plane has no outage switch")
        try:
            outage = parse_outage(body, self._clock())
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        self._outage.start(outage)
        return self.outage_json()

    def outage_json(self) -> dict[str, Any]:
        current = self._outage.current() if self._outage is not None else None
        return {"outage": current.as_json() if current else None, "failed_requests": self.outage_failures}

    def outage_now(self) -> Outage | None:
        """The outage an endpoint request falls in (counted), None when the platform is up."""
        current = self._outage.current() if self._outage is not None else None
        if current is not None:
            with self._lock:
                self.outage_failures += 1
        return current

    def query_metrics(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Azure Monitor's answer for each query (``serving_metrics``): a value, or None and an error.
        An endpoint that does not exist has no data (None, no error), as a deleted resource has none."""
        queries = body.get("queries")
        if set(body) != {"queries"} or not isinstance(queries, list) or len(queries) > MAX_QUERIES:
            raise ApiError(400, f'body must be {{"queries": [...]}} with at most {MAX_QUERIES} queries')
        values: list[float | None] = []
        errors: list[str | None] = []
        windows: dict[tuple[str, datetime, datetime], Buckets | None] = {}  # the rules of a tick share windows
        for raw in queries:
            try:
                query = parse_query(raw)
            except ValueError as exc:
                values.append(None)
                errors.append(str(exc))
                continue
            key = (query.endpoint, query.start, query.end)
            if key not in windows:
                with self._lock:
                    router = self._routers.get(query.endpoint)
                windows[key] = None if router is None else bucketize(router.metrics.window(query.start, query.end),
                                                                     query.start, query.end)
            found = windows[key]
            values.append(None if found is None else value(query, found))
            errors.append(None)
        return {"values": values, "errors": errors}

    # -- replicas ----------------------------------------------------------------------------------
    def _start(self, record: DeploymentRecord) -> None:
        key = (record.endpoint, record.name)

        def fetch(dest: Path) -> None:
            self._files.download(record.model_name, record.model_version, dest)

        workdir = self._workdir / record.endpoint / f"{record.name}-{record.generation}"
        replica = Replica(f"{record.endpoint}/{record.name}", fetch, record.environment, workdir, self._changed)
        self._replicas[key] = replica
        replica.start()

    def _stop(self, endpoint: str, name: str) -> None:
        replica = self._replicas.pop((endpoint, name), None)
        if replica is not None:
            replica.stop()

    def _changed(self, replica: Replica) -> None:
        """A replica finished starting (or failed): route to it, and announce a first success."""
        with self._lock:
            found = [(key, self._deployments[key]) for key, r in self._replicas.items() if r is replica]
            if not found:
                return  # stopped or deleted meanwhile
            (endpoint, _), record = found[0]
            self._refresh(endpoint)
        log(_log, logging.INFO if replica.state == "succeeded" else logging.ERROR, f"deployment {replica.state}",
            endpoint=record.endpoint, deployment=record.name, port=replica.port or None, error=replica.error)
        if replica.state == "succeeded" and not record.announced:
            self._announce(record)

    def _announce(self, record: DeploymentRecord) -> None:
        """Publish ModelDeployed; a failure is logged, never raised (a restart announces it again)."""
        try:
            result = self._publish([self._deployed_event(record)])
        except Exception as exc:
            log(_log, logging.ERROR, "ModelDeployed could not be published", endpoint=record.endpoint,
                deployment=record.name, error=f"{type(exc).__name__}: {exc}")
            return
        failed = [d for d in (result if isinstance(result, list) else []) if not getattr(d, "ok", True)]
        if failed:
            log(_log, logging.ERROR, "ModelDeployed was not delivered", endpoint=record.endpoint,
                deployment=record.name, error="; ".join(f"{d.function}: status {d.status}" for d in failed))
            return
        self._mark_announced(record)

    def _mark_announced(self, record: DeploymentRecord) -> None:
        with self._lock:
            key = (record.endpoint, record.name)
            current = self._deployments.get(key)
            if current is None or current.generation != record.generation or current.deleted:
                return
            try:
                self._store.save_deployment(current.but(announced=True))
            except Exception as exc:  # announced again after a restart: the app's ledger drops the repeat
                log(_log, logging.WARNING, "could not record the announcement", endpoint=record.endpoint,
                    deployment=record.name, error=str(exc))
                return
            self._deployments[key] = current.but(announced=True)

    def _deployed_event(self, record: DeploymentRecord) -> dict[str, Any]:
        data = {"ServiceName": record.endpoint, "ServiceComputeType": "Managed",
                "ModelIds": f"{record.model_name}:{record.model_version}",
                "ServiceTags": {**record.tags, TAG_DEPLOYMENT: record.name}, "ServiceProperties": {}}
        key = f"{record.endpoint}/{record.name}/{record.generation}"
        return {"topic": ML_TOPIC, "subject": f"endpoints/{record.endpoint}", "eventType": MODEL_DEPLOYED,
                "eventTime": self._clock().astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "id": str(uuid.uuid5(_EVENT_NAMESPACE, key)), "data": data, "dataVersion": "",
                "metadataVersion": "1"}

    # -- reading -----------------------------------------------------------------------------------
    def _endpoint(self, name: str) -> EndpointRecord:
        record = self._endpoints.get(_name(name, "endpoint"))
        if record is None:
            raise ApiError(404, f"no endpoint named {name.lower()!r}")
        return record

    def _deployment(self, endpoint: str, name: str) -> DeploymentRecord:
        record = self._deployments.get((self._endpoint(endpoint).name, _name(name, "deployment")))
        if record is None or record.deleted:
            raise ApiError(404, f"endpoint {endpoint.lower()} has no deployment named {name.lower()!r}")
        return record

    def _open_endpoint(self, record: EndpointRecord) -> None:
        router = Router(record.name, record.port, self.collector).start()
        self._routers[record.name] = router
        self._endpoints[record.name] = record
        if router.port != record.port:
            self._endpoints[record.name] = EndpointRecord(record.name, record.tags, record.traffic, record.mirror,
                                                          router.port)
            self._store.save_endpoint(self._endpoints[record.name])

    def _refresh(self, endpoint: str) -> None:
        """Hand the router the current traffic and where each deployment listens."""
        record = self._endpoints[endpoint]
        live = {name: d for (e, name), d in self._deployments.items() if e == endpoint and not d.deleted}
        upstreams = {name: self._port(endpoint, name) for name in live}
        models = {name: (d.model_name, d.model_version) for name, d in live.items()}
        self._routers[endpoint].update(Routes(dict(record.traffic), dict(record.mirror), upstreams, models))

    def _port(self, endpoint: str, name: str) -> int:
        replica = self._replicas.get((endpoint, name))
        return replica.port if replica is not None and replica.state == "succeeded" else 0

    def _state(self, record: DeploymentRecord) -> tuple[str, str]:
        replica = self._replicas.get((record.endpoint, record.name))
        if replica is None or replica.state == "stopped":
            return "succeeded", ""  # provisioned, scaled to zero instances
        return replica.state, replica.error

    def _endpoint_json(self, name: str) -> dict[str, Any]:
        record = self._endpoints[name]
        return {"name": name, "state": "succeeded", "scoring_uri": self._routers[name].scoring_uri,
                "traffic": dict(record.traffic), "mirror": dict(record.mirror), "tags": dict(record.tags)}

    def _deployment_json(self, record: DeploymentRecord) -> dict[str, Any]:
        state, error = self._state(record)
        return {"endpoint": record.endpoint, "name": record.name, "model_name": record.model_name,
                "model_version": record.model_version, "instance_type": record.instance_type,
                "instance_count": record.instance_count, "state": state, "error": error,
                "environment": dict(record.environment), "tags": dict(record.tags)}

    # -- validation --------------------------------------------------------------------------------
    def _spec(self, endpoint: str, name: str, body: Mapping[str, Any]) -> DeploymentRecord:
        unknown = set(body) - {"model_name", "model_version", "instance_type", "instance_count", "environment",
                               "tags"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))} in the deployment")
        model, version = body.get("model_name"), str(body.get("model_version", ""))
        if not isinstance(model, str) or not _MODEL.match(model):
            raise ApiError(400, f"model_name must be a registered model's name, got {model!r}")
        if not version.isdigit() or int(version) < 1:
            raise ApiError(400, f"model_version must be a version number, got {body.get('model_version')!r}")
        count = body.get("instance_count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCES:
            raise ApiError(400, f"instance_count must be a whole number from 1 to {MAX_INSTANCES}, got {count!r}")
        environment = _strings(body.get("environment", {}), "environment")
        bad = [k for k in environment if not _ENV_KEY.match(k)]
        if bad:
            raise ApiError(400, f"environment variable name(s) {', '.join(bad)} are not valid")
        kind = body.get("instance_type", "")
        if not isinstance(kind, str) or len(kind) > 64:
            raise ApiError(400, "instance_type must be a VM size name (ignored locally)")
        return DeploymentRecord(_name(endpoint, "endpoint"), _name(name, "deployment"), model, str(int(version)),
                                kind, count, environment, _strings(body.get("tags", {}), "tags"))

    @staticmethod
    def _same_model(current: DeploymentRecord, spec: DeploymentRecord) -> None:
        if (current.model_name, current.model_version) != (spec.model_name, spec.model_version):
            raise ApiError(409, f"deployment {current.name} of endpoint {current.endpoint} serves "
                                f"{current.model_name}:{current.model_version}, not {spec.model_name}:"
                                f"{spec.model_version}: a deployment's model cannot change (deploy a new name)")

    def _weights(self, endpoint: str, value: Any, what: str) -> dict[str, int]:
        """Lower-case names -> percent, zero entries dropped; every name a succeeded deployment."""
        if not isinstance(value, dict):
            raise ApiError(400, f"{what} must be an object of deployment name -> percent")
        weights: dict[str, int] = {}
        for raw, percent in value.items():
            name = _name(raw, "deployment")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                raise ApiError(400, f"{what}[{raw!r}] must be a whole percent from 0 to 100, got {percent!r}")
            if name in weights:
                raise ApiError(400, f"{what} names deployment {name} twice (names are not case-sensitive)")
            weights[name] = percent
        live = {name: percent for name, percent in weights.items() if percent}
        self._check_targets(endpoint, live, what)
        return live

    def _check_targets(self, endpoint: str, names: Iterable[str], what: str) -> None:
        for name in names:
            record = self._deployments.get((endpoint, name))
            if record is None or record.deleted:
                raise ApiError(400, f"{what} names deployment {name}, which endpoint {endpoint} does not have")
            state, _ = self._state(record)
            if state != "succeeded":
                raise ApiError(409, f"deployment {name} is {state}: only a succeeded deployment can take {what}")

    def _mirror(self, endpoint: str, value: Any, live: Mapping[str, int]) -> dict[str, int]:
        mirror = self._weights(endpoint, value, "mirror")
        if len(mirror) > 1 or sum(mirror.values()) > MAX_MIRROR:
            raise ApiError(400, f"mirror traffic goes to one deployment, at most {MAX_MIRROR} %, got {mirror}")
        both = [name for name in mirror if live.get(name)]
        if both:
            raise ApiError(400, f"deployment {both[0]} cannot take live and mirror traffic at once")
        return mirror


def parse_since(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ApiError(400, f"since must be an ISO 8601 time, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value.lower()):
        raise ApiError(400, f"{what} name {value!r} is not valid: 3-32 letters, digits or '-', starting with a "
                            "letter and not ending with '-'")
    return value.lower()


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_MAP:
        raise ApiError(400, f"{what} must be an object of at most {MAX_MAP} string values")
    bad = [k for k, v in value.items() if not isinstance(v, str) or not k or len(k) > 256 or len(v) > 4096]
    if bad:
        raise ApiError(400, f"{what}[{bad[0]!r}] must be a string (keys up to 256, values up to 4096 characters)")
    return dict(value)
