"""ServingPlatform on Azure ML managed online endpoints (SDK v2, ``azure-ai-ml``): the release half.

What users of managed online endpoints run into, and what this adapter does about it:

* **Nothing waits for a long-running operation.** ``begin_create_or_update`` / ``begin_delete`` send the
  PUT or DELETE and return a poller; the release state machine polls ``get_deployment`` from a timer.
  The SDK's poller would also start a daemon thread that polls the operation every few seconds until
  it ends (10+ minutes for a deployment) and prints a dot to stdout each time; ``_detach`` ends that
  thread at its next poll, so a Functions worker does not accumulate pollers.
* **Endpoint creation is not idempotent**: a PUT on an existing endpoint *replaces* it, traffic
  included, so "create" on a live endpoint would drop its traffic. ``ensure_endpoint`` reads first and
  creates only on 404; a create that loses a race to a concurrent one returns the winner's endpoint.
* **A busy endpoint refuses work**: while it is Creating or Updating, a deployment create/update or a
  traffic change fails with HTTP 409 ("Cannot create a deployment in endpoint X because it is in
  Updating provisioning state"). Every write first waits a few seconds at most for the endpoint to
  settle. ``deploy`` then returns state ``creating`` without a deployment (the state machine finds
  none on its next poll and calls ``deploy`` again); ``set_traffic``, ``scale`` and
  ``delete_deployment`` raise ``EndpointBusy`` so the caller's next tick retries.
* **Traffic is eventually consistent**: right after a traffic PUT, a GET may still show the old
  split. ``set_traffic`` reads back with backoff (bounded) and returns the endpoint as read, or raises
  ``EndpointBusy`` when the change is not visible in time.
* **Names**: Azure lowercases deployment names and drops zero entries from traffic maps, so names are
  compared in lower case and a deployment missing from a traffic map has 0 %. Deployment names are
  checked against Azure's rule before anything is sent (``check_deployment_name``).
* **Keys**: scoring uses the endpoint key (or an Entra token for ``aad_token`` endpoints) from the
  SDK, cached for a few minutes and fetched again once on a 401/403 (keys can be regenerated). They are
  never logged and never part of an error message.
* **Cold start**: ``azure.ai.ml`` costs ~2 s to import, so every SDK import sits inside the method that
  needs it and ``from_settings`` hands over factories: the clients are built on first use.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.adapters.azure_endpoint_metrics import EndpointMetrics
from core.adapters.azure_scoring import EndpointScorer, NotScorable
from core.errors import ReactorError
from core.ml_platform import Deployment, DeploymentHealth, DeploymentSpec, DeploymentState, Endpoint, ScoreResult

if TYPE_CHECKING:
    import requests
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Environment, ManagedOnlineDeployment, OnlineDeployment, OnlineEndpoint
    from azure.core.polling import LROPoller

log = logging.getLogger(__name__)
T = TypeVar("T")

ML_DIR = Path(__file__).resolve().parents[2] / "ml"
SCORE_SCRIPT = ML_DIR / "score.py"  # stdlib + numpy + joblib only: it is the whole code snapshot
ENVIRONMENT_FILE = ML_DIR / "azureml" / "environment.yml"  # the image and conda file the pipeline steps use
SAMPLE_FILE = "sample_input.json"  # ml.model_io.SAMPLE_FILE, written by ml.train into every model
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"  # the smallest size Azure ML recommends for managed endpoints

# Azure ML's rule for deployment names (the SDK checks the same for endpoints).
NAME_RULE = "3 to 32 characters, a letter first, then only letters, digits and hyphens"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{2,31}")
_MODEL_ID = re.compile(r"/models/([^/]+)/versions/([^/]+)$")

# Deployment provisioning states -> the port's. Only Succeeded is ready; Updating and Scaling keep a
# deployment "creating" (not ready to confirm), and anything unknown counts as not finished.
_STATES: dict[str, DeploymentState] = {
    "creating": "creating", "updating": "creating", "scaling": "creating",
    "succeeded": "succeeded", "failed": "failed", "canceled": "failed", "deleting": "deleting",
}
_BUSY = frozenset({"creating", "updating", "deleting"})  # endpoint states that refuse writes (409)


class EndpointBusy(ReactorError):
    """The endpoint stayed busy (another operation runs on it) or a traffic change did not show in time.
    Nothing is lost: the same call on a later tick does the work."""


def check_deployment_name(name: str) -> str:
    """The name in lower case (as Azure stores it); ValueError naming the rule when Azure would refuse it."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"deployment name {name!r} is not valid in Azure ML: {NAME_RULE}")
    return name.lower()


def map_state(provisioning_state: str | None) -> DeploymentState:
    state = _STATES.get(_plain(provisioning_state).lower())
    if state is None:
        log.warning("unknown deployment provisioning state %r, treated as creating", provisioning_state)
        return "creating"
    return state


class AzureServing:
    """The ``ServingPlatform`` port on an Azure ML workspace (see the module docstring for the design)."""

    def __init__(
        self,
        client: MLClient | Callable[[], MLClient],
        *,
        metrics: Any = None,  # a MetricsClient or a factory of one; None: deployment_health is unavailable
        auth_mode: str = "key",
        instance_type: str = DEFAULT_INSTANCE_TYPE,
        busy_wait: float = 3.0,
        visible_wait: float = 10.0,
        credential_ttl: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ) -> None:
        """``busy_wait``: seconds a write waits at most for a busy endpoint; ``visible_wait``: seconds
        ``set_traffic`` reads back for the new split. ``credential_ttl``: how long a scoring key is reused."""
        self._factory = client if callable(client) else (lambda: client)
        self._client: MLClient | None = None
        self._lock = threading.Lock()
        self._metrics = EndpointMetrics(metrics if callable(metrics) or metrics is None else (lambda: metrics))
        self._scorer = EndpointScorer(self._scoring_target, credential_ttl=credential_ttl, session=session)
        self.auth_mode = auth_mode
        self.instance_type = instance_type
        self._busy_wait, self._visible_wait = busy_wait, visible_wait
        self._sleep, self._clock = sleep, clock
        self._samples: dict[tuple[str, str], bytes | None] = {}
        self._code_dir: Path | None = None

    @classmethod
    def from_settings(
        cls,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        metrics_endpoint: str = "",
        credential: Any = None,  # a TokenCredential
        managed_identity_client_id: str | None = None,
        compute: str = "",
        experiment: str = "",
        datastore: str = "",
        **client_kwargs: Any,
    ) -> AzureServing:
        """Serving on one workspace; clients are built on first use, like ``AzureMLPlatform.from_settings``.

        ``metrics_endpoint`` is the regional Azure Monitor metrics endpoint
        (``https://<region>.metrics.monitor.azure.com``) that ``deployment_health`` queries. ``compute``,
        ``experiment`` and ``datastore`` belong to retraining: accepted so the wiring can pass the same
        ``**settings.aml``, and unused. ``client_kwargs`` (azure-core options such as ``retry_total`` or
        ``transport``) go to both SDK clients; the SDK retries only three times here, as the caller
        retries the whole step on its next tick anyway.
        """
        from core.adapters.azure_client import LazyCredential, ml_client_factory

        del compute, experiment, datastore
        client_kwargs.setdefault("retry_total", 3)
        shared = LazyCredential(credential, managed_identity_client_id)
        build_ml = ml_client_factory(shared, subscription_id, resource_group, workspace, **client_kwargs)

        def build_metrics() -> Any:
            from azure.monitor.querymetrics import MetricsClient

            return MetricsClient(metrics_endpoint, shared(), **client_kwargs)

        return cls(build_ml, metrics=build_metrics if metrics_endpoint else None)

    @property
    def client(self) -> MLClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    # --- endpoints ---

    def get_endpoint(self, name: str) -> Endpoint | None:
        found = self._endpoint_entity(name)
        return None if found is None else _to_endpoint(found)

    def ensure_endpoint(self, name: str, tags: Mapping[str, str]) -> Endpoint:
        found = self.get_endpoint(name)
        if found is not None:
            return found  # never PUT an existing endpoint: that would replace its traffic
        from azure.ai.ml.entities import ManagedOnlineEndpoint
        from azure.core.exceptions import HttpResponseError

        endpoint = ManagedOnlineEndpoint(name=name, auth_mode=self.auth_mode, tags=dict(tags))
        try:
            _detach(self.client.online_endpoints.begin_create_or_update(endpoint))
        except HttpResponseError:
            # a concurrent ensure_endpoint (another worker's tick) created it between our GET and PUT
            found = self.get_endpoint(name)
            if found is None:
                raise
            return found
        log.info("creating online endpoint %s", name)
        return Endpoint(name=name, state="creating")

    # --- deployments ---

    def deploy(self, spec: DeploymentSpec) -> Deployment:
        name = check_deployment_name(spec.name)
        existing = self.get_deployment(spec.endpoint, name)
        if existing is not None:
            return existing  # the name derives from model and version: an existing one is this deployment
        if self._idle_endpoint(spec.endpoint) is None:
            log.info("endpoint %s is busy; %s is created on a later call", spec.endpoint, name)
            return _pending(spec, name)
        from azure.core.exceptions import HttpResponseError

        try:
            _detach(self.client.online_deployments.begin_create_or_update(self._build(spec, name)))
        except HttpResponseError as exc:
            if exc.status_code != 409:
                raise
            # busy after all (an operation started between our read and the PUT), or a concurrent
            # deploy of the same name won: either way the next poll sorts it out
            log.warning("deployment %s on %s not started (409): %s", name, spec.endpoint, _message(exc))
            return self.get_deployment(spec.endpoint, name) or _pending(spec, name)
        log.info("creating deployment %s (%s:%s) on %s", name, spec.model_name, spec.model_version, spec.endpoint)
        return _pending(spec, name)

    def get_deployment(self, endpoint: str, name: str) -> Deployment | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self.client.online_deployments.get(name=name.lower(), endpoint_name=endpoint)
        except ResourceNotFoundError:
            return None
        deployment = _to_deployment(endpoint, found)
        if deployment.state == "failed":
            return _with_error(deployment, self._failure_reason(endpoint, found))
        return deployment

    def list_deployments(self, endpoint: str) -> list[Deployment]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [_to_deployment(endpoint, d) for d in self.client.online_deployments.list(endpoint_name=endpoint)]
        except ResourceNotFoundError:  # no such endpoint
            return []

    def scale(self, endpoint: str, name: str, instance_count: int) -> None:
        if instance_count < 1:
            raise ValueError(f"instance_count must be at least 1, got {instance_count}")
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self.client.online_deployments.get(name=name.lower(), endpoint_name=endpoint)
        except ResourceNotFoundError:
            log.warning("scale: deployment %s on %s does not exist; nothing to scale", name, endpoint)
            return
        if found.instance_count == instance_count:
            return  # a repeated scale would start another update of the deployment for nothing
        found.instance_count = instance_count
        self._write(endpoint, lambda: self.client.online_deployments.begin_create_or_update(found))
        log.info("scaling deployment %s on %s to %d instance(s)", name, endpoint, instance_count)

    def delete_deployment(self, endpoint: str, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._write(endpoint, lambda: self.client.online_deployments.begin_delete(
                name=name.lower(), endpoint_name=endpoint))
        except ResourceNotFoundError:
            return  # absent (or the endpoint is): nothing to delete
        log.info("deleting deployment %s on %s", name, endpoint)

    # --- traffic ---

    def set_traffic(self, endpoint: str, traffic: Mapping[str, int],
                    mirror: Mapping[str, int] | None = None) -> Endpoint:
        want, want_mirror = checked_traffic(traffic), None if mirror is None else checked_mirror(mirror)
        entity = self._idle_endpoint(endpoint)
        if entity is None:
            raise EndpointBusy(f"endpoint {endpoint} is still busy after {self._busy_wait:g} s; traffic unchanged")
        entity.traffic = dict(want)  # the whole map: deployments left out get 0 %
        if want_mirror is not None:
            entity.mirror_traffic = dict(want_mirror)
        self._write(endpoint, lambda: self.client.online_endpoints.begin_create_or_update(entity))
        return self._read_back(endpoint, want, want_mirror)

    def _read_back(self, name: str, want: Mapping[str, int], want_mirror: Mapping[str, int] | None) -> Endpoint:
        """The endpoint once a GET shows the new split (the first GETs after the PUT may not)."""
        seen: Endpoint | None = None
        for delay in (*_backoff(self._visible_wait), None):
            seen = self.get_endpoint(name)
            if seen is not None and seen.traffic == want and (want_mirror is None or seen.mirror == want_mirror):
                return seen
            if delay is not None:
                self._sleep(delay)
        shown = "nothing" if seen is None else f"traffic {dict(seen.traffic)}, mirror {dict(seen.mirror)}"
        raise EndpointBusy(f"traffic change on {name} accepted but not visible after {self._visible_wait:g} s "
                           f"(wanted {dict(want)}, still shows {shown})")

    # --- scoring and health ---

    def score(self, endpoint: str, body: bytes, deployment: str | None = None,
              timeout: float = 10.0) -> ScoreResult:
        return self._scorer.score(endpoint, body, deployment, timeout)

    def _scoring_target(self, endpoint: str) -> tuple[str, Any]:
        """The scoring URI and the SDK's keys (or token) of an endpoint, for ``EndpointScorer``."""
        entity = self._endpoint_entity(endpoint)
        if entity is None:
            raise NotScorable(f"endpoint {endpoint} does not exist")
        if not entity.scoring_uri:  # a new endpoint gets its URI once created
            raise NotScorable(f"endpoint {endpoint} has no scoring URI yet ({entity_state(entity)})")
        return entity.scoring_uri, self.client.online_endpoints.get_keys(endpoint)

    def deployment_health(self, endpoint: str, name: str, since: datetime) -> DeploymentHealth:
        """Requests, 5xx errors and p95 latency from Azure Monitor (see ``azure_endpoint_metrics``)."""
        c = self.client
        resource = (f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group_name}/providers/"
                    f"Microsoft.MachineLearningServices/workspaces/{c.workspace_name}/onlineEndpoints/{endpoint}")
        return self._metrics.health(resource, name, since, self._clock())

    # --- sample requests ---

    def sample_request(self, model_name: str, version: str) -> bytes | None:
        """The model's ``sample_input.json``. The SDK downloads a model version whole (it is small: the
        model, its card, baseline and sample), once per version: versions are immutable."""
        key = (model_name, str(version))
        with self._lock:
            if key in self._samples:
                return self._samples[key]
        from azure.core.exceptions import ResourceNotFoundError

        with tempfile.TemporaryDirectory(prefix="reactor-model-") as folder:
            try:
                self.client.models.download(name=model_name, version=str(version), download_path=folder)
            except ResourceNotFoundError:
                return None  # not cached: the version may be registered later
            sample = _find_sample(Path(folder))
        with self._lock:
            self._samples[key] = sample
        return sample

    # --- helpers ---

    def _endpoint_entity(self, name: str) -> OnlineEndpoint | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.online_endpoints.get(name)
        except ResourceNotFoundError:
            return None

    def _idle_endpoint(self, name: str) -> OnlineEndpoint | None:
        """The endpoint once it accepts writes, waiting ``busy_wait`` seconds at most; None while still busy.
        LookupError when it does not exist (``ensure_endpoint`` comes first)."""
        for delay in (*_backoff(self._busy_wait), None):
            entity = self._endpoint_entity(name)
            if entity is None:
                raise LookupError(f"online endpoint {name} does not exist")
            if entity_state(entity) not in _BUSY:
                return entity
            if delay is not None:
                self._sleep(delay)
        return None

    def _write(self, endpoint: str, begin: Callable[[], LROPoller[T]]) -> None:
        """Start a write, retrying a 409 (endpoint busy) within ``busy_wait``; EndpointBusy after that."""
        from azure.core.exceptions import HttpResponseError

        for delay in (*_backoff(self._busy_wait), None):
            try:
                _detach(begin())
                return
            except HttpResponseError as exc:
                if exc.status_code != 409:
                    raise
                if delay is None:
                    raise EndpointBusy(f"endpoint {endpoint} is busy: {_message(exc)}") from exc
                self._sleep(delay)

    def _build(self, spec: DeploymentSpec, name: str) -> ManagedOnlineDeployment:
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

        return ManagedOnlineDeployment(
            name=name,
            endpoint_name=spec.endpoint,
            model=f"azureml:{spec.model_name}:{spec.model_version}",
            environment=_environment(),
            code_configuration=CodeConfiguration(code=str(self._score_code()), scoring_script=SCORE_SCRIPT.name),
            instance_type=spec.instance_type or self.instance_type,
            instance_count=spec.instance_count,
            environment_variables=dict(spec.environment),
            tags=dict(spec.tags),
        )

    def _score_code(self) -> Path:
        """A folder holding only score.py: the code snapshot the SDK hashes and uploads once (the same
        content hashes the same wherever the folder is, so later deploys reuse the uploaded asset)."""
        with self._lock:
            if self._code_dir is None:
                folder = Path(tempfile.mkdtemp(prefix="reactor-score-"))
                shutil.copy2(SCORE_SCRIPT, folder / SCORE_SCRIPT.name)
                weakref.finalize(self, shutil.rmtree, folder, True)
                self._code_dir = folder
            return self._code_dir

    def _failure_reason(self, endpoint: str, deployment: OnlineDeployment) -> str:
        """The deployment resource carries no error text; the inference server's last log lines usually
        say why (a failing init(), a missing package). Best effort: the state alone when there are none."""
        from azure.core.exceptions import HttpResponseError

        state = _plain(deployment.provisioning_state) or "Failed"
        try:
            logs = self.client.online_deployments.get_logs(name=str(deployment.name), endpoint_name=endpoint,
                                                           lines=20)
        except HttpResponseError:
            logs = ""
        tail = " | ".join(line.strip() for line in str(logs or "").splitlines() if line.strip())
        return f"provisioning state {state}" + (f"; last log lines: {tail[-800:]}" if tail else "")


# --- the SDK's pollers ---


class _Detached(Exception):
    """Raised inside the SDK's polling thread to end it; never reaches our callers."""


def _detach(poller: LROPoller[Any]) -> None:
    """End the poller's background thread at its next poll. Its first poll may already be under way;
    after that the thread sleeps, calls ``update_status`` and stops on the exception (``LROPoller`` keeps
    it as the operation's outcome, which nobody asks for: the state machine reads the resource instead)."""

    def stop() -> None:
        raise _Detached

    poller.polling_method().update_status = stop  # type: ignore[attr-defined]


# --- traffic maps ---


def checked_traffic(traffic: Mapping[str, int]) -> dict[str, int]:
    """Lower-case names, zeros dropped (as Azure stores them); ValueError unless the weights sum to 100 or 0."""
    weights = _weights(traffic, "traffic")
    if sum(weights.values()) not in (0, 100):
        raise ValueError(f"traffic weights must sum to 100 (or 0), got {sum(weights.values())}: {dict(traffic)}")
    return weights


def checked_mirror(mirror: Mapping[str, int]) -> dict[str, int]:
    """Azure mirrors to one deployment, at most 50 % of the requests."""
    weights = _weights(mirror, "mirror")
    if len(weights) > 1 or any(v > 50 for v in weights.values()):
        raise ValueError(f"mirror traffic goes to one deployment, at most 50 %, got {dict(mirror)}")
    return weights


def _weights(raw: Mapping[str, Any] | None, what: str = "traffic") -> dict[str, int]:
    weights: dict[str, int] = {}
    for name, weight in (raw or {}).items():  # names differing in case are one deployment: add them up
        weights[str(name).lower()] = weights.get(str(name).lower(), 0) + int(weight)
    if any(not 0 <= v <= 100 for v in weights.values()):
        raise ValueError(f"{what} weights are percentages from 0 to 100, got {dict(raw or {})}")
    return {k: v for k, v in weights.items() if v}


def _backoff(total: float, first: float = 0.25) -> Iterator[float]:
    """Delays 0.25, 0.5, 1, 2 ... s, the last one cut so that they add up to ``total``."""
    spent, delay = 0.0, first
    while spent < total:
        step = min(delay, total - spent)
        yield step
        spent, delay = spent + step, delay * 2


# --- conversions ---


def entity_state(entity: OnlineEndpoint | None) -> str:
    return "absent" if entity is None else _plain(entity.provisioning_state).lower()


def _plain(value: Any) -> str:
    """The text of an SDK enum member (``DeploymentProvisioningState.FAILED`` -> ``Failed``) or string."""
    return str(getattr(value, "value", value) or "")


def _to_endpoint(entity: OnlineEndpoint) -> Endpoint:
    return Endpoint(name=str(entity.name), state=entity_state(entity), scoring_uri=entity.scoring_uri or "",
                    traffic=_weights(entity.traffic), mirror=_weights(entity.mirror_traffic))


def _to_deployment(endpoint: str, found: OnlineDeployment) -> Deployment:
    matched = _MODEL_ID.search(str(found.model or ""))
    model, version = matched.groups() if matched else (str(found.model or ""), "")
    state = map_state(found.provisioning_state)
    return Deployment(endpoint=endpoint, name=str(found.name).lower(), model_name=model, model_version=version,
                      state=state, instance_count=int(found.instance_count or 1),
                      error=f"provisioning state {_plain(found.provisioning_state)}" if state == "failed" else "")


def _with_error(deployment: Deployment, error: str) -> Deployment:
    return replace(deployment, error=error)


def _pending(spec: DeploymentSpec, name: str) -> Deployment:
    return Deployment(endpoint=spec.endpoint, name=name, model_name=spec.model_name,
                      model_version=spec.model_version, state="creating", instance_count=spec.instance_count)


def _environment() -> Environment:
    """The pipeline steps' runtime (image + conda file of ml/azureml/environment.yml), registered by the SDK
    as an anonymous environment keyed by its content hash: idempotent, nothing to register by hand."""
    from azure.ai.ml import load_environment
    from azure.ai.ml.entities import Environment

    declared = load_environment(source=ENVIRONMENT_FILE)
    return Environment(image=declared.image, conda_file=declared.conda_file)


def _message(exc: Exception) -> str:
    return str(getattr(getattr(exc, "error", None), "message", None) or getattr(exc, "message", None) or exc)


def _find_sample(folder: Path) -> bytes | None:
    """The shallowest sample_input.json: the SDK nests a folder model under its name."""
    found = sorted(folder.rglob(SAMPLE_FILE), key=lambda p: len(p.parts))
    return found[0].read_bytes() if found else None
