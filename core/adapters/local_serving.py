"""ServingPlatform on the local serving control plane (``python -m embedded.serving``), over HTTP.

The control plane runs the endpoints' routers and the deployments' scoring processes; this adapter
is its client, as the Azure adapter is a client of Azure ML's control plane. Scoring goes to the
endpoint's router for real (with the ``azureml-model-deployment`` header to pick a deployment), so
a release is checked against real HTTP answers and latencies.

Errors: a 4xx from the control plane is the caller's mistake and raises ``ValueError`` with the
server's message (a 404 on a read is ``None`` instead, a 404 on a delete is success); a 5xx raises
``RuntimeError``; an unreachable control plane raises ``ConnectionError``. Scoring never raises: a
transport failure is a ``ScoreResult`` with status 0, which is what the canary's health check counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from core.adapters.local_ml import models_container
from core.ml_platform import Deployment, DeploymentHealth, DeploymentSpec, Endpoint, ScoreResult
from core.ports import BlobStore

DEPLOYMENT_HEADER = "azureml-model-deployment"
SAMPLE_FILE = "sample_input.json"  # written by ml.train next to the model (ml.model_io.SAMPLE_FILE)


class LocalServing:
    def __init__(self, base_url: str, blobs: BlobStore, prefix: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._blobs = blobs
        self.models_container = models_container(prefix)
        self._timeout = timeout
        self._session = requests.Session()
        self._scoring_uris: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- endpoints ---------------------------------------------------------------------------------
    def ensure_endpoint(self, name: str, tags: Mapping[str, str]) -> Endpoint:
        return _endpoint(self._call("PUT", _path(name), {"tags": dict(tags)}))

    def get_endpoint(self, name: str) -> Endpoint | None:
        found = self._call("GET", _path(name), missing_ok=True)
        return None if found is None else _endpoint(found)

    def set_traffic(self, endpoint: str, traffic: Mapping[str, int],
                    mirror: Mapping[str, int] | None = None) -> Endpoint:
        body: dict[str, Any] = {"traffic": dict(traffic)}
        if mirror is not None:
            body["mirror"] = dict(mirror)
        self._call("PUT", _path(endpoint, "traffic"), body)
        found = self.get_endpoint(endpoint)  # as read back: what the router now applies
        if found is None:
            raise RuntimeError(f"endpoint {endpoint} vanished after its traffic was set")
        return found

    # -- deployments -------------------------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec) -> Deployment:
        body = {"model_name": spec.model_name, "model_version": spec.model_version,
                "instance_type": spec.instance_type, "instance_count": spec.instance_count,
                "environment": dict(spec.environment), "tags": dict(spec.tags)}
        return _deployment(self._call("PUT", _path(spec.endpoint, "deployments", spec.name), body))

    def get_deployment(self, endpoint: str, name: str) -> Deployment | None:
        found = self._call("GET", _path(endpoint, "deployments", name), missing_ok=True)
        return None if found is None else _deployment(found)

    def list_deployments(self, endpoint: str) -> list[Deployment]:
        found = self._call("GET", _path(endpoint, "deployments"), missing_ok=True)
        return [] if found is None else [_deployment(d) for d in found["value"]]

    def scale(self, endpoint: str, name: str, instance_count: int) -> None:
        self._call("PATCH", _path(endpoint, "deployments", name), {"instance_count": instance_count})

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._call("DELETE", _path(endpoint, "deployments", name), missing_ok=True)

    def deployment_health(self, endpoint: str, name: str, since: datetime) -> DeploymentHealth:
        when = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
        found = self._call("GET", _path(endpoint, "deployments", name, "health"), params={"since": when})
        return DeploymentHealth(int(found["requests"]), int(found["errors"]),
                                None if found["p95_ms"] is None else float(found["p95_ms"]),
                                float(found["window_seconds"]))

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, endpoint: str, body: bytes, deployment: str | None = None,
              timeout: float = 10.0) -> ScoreResult:
        headers = {"Content-Type": "application/json"}
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment.lower()
        try:
            uri = self._scoring_uri(endpoint)  # ValueError for an endpoint that does not exist
        except (RuntimeError, ConnectionError) as exc:
            return ScoreResult(0, b"", 0.0, f"no scoring URI for endpoint {endpoint}: {exc}")
        started = time.perf_counter()
        try:
            response = self._session.post(uri, data=body, headers=headers, timeout=timeout)
        except requests.ConnectionError as exc:
            self._forget_uri(endpoint)  # a restarted control plane may have moved the endpoint
            return ScoreResult(0, b"", _ms(started), f"{type(exc).__name__}: {exc}")
        except requests.RequestException as exc:
            return ScoreResult(0, b"", _ms(started), f"{type(exc).__name__}: {exc}")
        return ScoreResult(response.status_code, response.content, _ms(started))

    def sample_request(self, model_name: str, version: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            blob = f"{model_name}/{int(version)}/{SAMPLE_FILE}"
        except ValueError:
            return None  # not a version number: no such version
        try:
            # listed first, so a missing file is None from any BlobStore, not a storage-specific error
            if not any(b.name == blob for b in self._blobs.list(self.models_container, blob)):
                return None
        except ResourceNotFoundError:  # no models container yet: nothing was ever registered
            return None
        return self._blobs.get(self.models_container, blob)

    def close(self) -> None:
        self._session.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _scoring_uri(self, endpoint: str) -> str:
        with self._lock:
            known = self._scoring_uris.get(endpoint.lower())
        if known:
            return known
        found = self.get_endpoint(endpoint)
        if found is None:
            raise ValueError(f"no endpoint named {endpoint!r}")
        with self._lock:
            self._scoring_uris[endpoint.lower()] = found.scoring_uri
        return found.scoring_uri

    def _forget_uri(self, endpoint: str) -> None:
        with self._lock:
            self._scoring_uris.pop(endpoint.lower(), None)

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, missing_ok: bool = False,
              params: Mapping[str, str] | None = None) -> Any:
        url = self.base_url + path
        try:
            response = self._session.request(method, url, json=body, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise ConnectionError(f"the serving control plane at {self.base_url} is unreachable "
                                  f"({method} {path}): {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            message = _message(response)
            kind = ValueError if response.status_code < 500 else RuntimeError
            raise kind(f"{method} {path}: {response.status_code} {message}")
        return response.json() if response.content else None


def _path(*segments: str) -> str:
    return "/endpoints/" + "/".join(quote(s.lower(), safe="") for s in segments)


def _message(response: requests.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500] or response.reason


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _endpoint(found: Mapping[str, Any]) -> Endpoint:
    return Endpoint(name=found["name"], state=found["state"], scoring_uri=found["scoring_uri"],
                    traffic={k: int(v) for k, v in found["traffic"].items()},
                    mirror={k: int(v) for k, v in found["mirror"].items()})


def _deployment(found: Mapping[str, Any]) -> Deployment:
    return Deployment(endpoint=found["endpoint"], name=found["name"], model_name=found["model_name"],
                      model_version=str(found["model_version"]), state=found["state"],
                      instance_count=int(found["instance_count"]), error=found.get("error", ""))

