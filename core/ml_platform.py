"""The ML platform port: what the reactor asks of Azure ML (or of the local platform).

Retraining half (issue 3): submit a retraining pipeline, read a job, read model versions.
The release half (deployments, endpoints, traffic) joins this port with the release work.

A job's *name* is chosen by the caller and derived from the decision that started it, so a
submit repeated after a crash finds the job instead of starting a second one: ``submit``
is get-or-create.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

JobStatus = Literal["queued", "running", "completed", "failed", "canceled"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "canceled"})

# Tags every retraining job carries, so the events it causes lead back to the decision.
TAG_CORRELATION = "reactor_correlation_id"
TAG_DECISION = "reactor_decision_id"
TAG_MODEL = "reactor_model"
TAG_REASON = "reactor_reason"
TAG_REQUESTED_BY = "reactor_requested_by"  # the operator who asked for a manual retrain
# Tags the pipeline adds to its run when it finishes: what became of the challenger.
TAG_REGISTERED_VERSION = "reactor_registered_version"
TAG_CHAMPION_KEPT = "reactor_champion_kept"
TAG_CHAMPION_VERSION = "reactor_champion_version"
TAG_VERDICT_REASON = "reactor_verdict_reason"


@dataclass(frozen=True)
class DataRef:
    """One training-data blob, as its BlobCreated event described it (for lineage)."""

    url: str
    etag: str
    size: int
    event_id: str


@dataclass(frozen=True)
class BlobFolder:
    """All training data of a model: every CSV under ``container/prefix`` in the storage account."""

    container: str
    prefix: str


@dataclass(frozen=True)
class RetrainRequest:
    job_name: str  # deterministic: repeated submits of one decision are one job
    model_name: str
    data: BlobFolder  # the challenger trains on all of it, not only the new files
    test_container: str  # the fixed held-out set the challenger and champion are compared on
    test_blob: str
    metric: str  # rmse | mae | r2
    min_improvement: float  # relative improvement the challenger needs over the champion
    reason: str  # data | drift | manual
    correlation_id: str
    decision_id: str
    new_data: tuple[DataRef, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def lineage_tags(self) -> dict[str, str]:
        """Tags for the job (and, through the pipeline, the model it registers). Tag values are
        short (Azure ML caps them), so they name the first triggers; the audit trail has all."""
        return {**self.tags, TAG_CORRELATION: self.correlation_id, TAG_DECISION: self.decision_id,
                TAG_MODEL: self.model_name, TAG_REASON: self.reason,
                "reactor_new_files": str(len(self.new_data)),
                "reactor_trigger_events": _joined(d.event_id for d in self.new_data),
                "reactor_data_etags": _joined(f"{d.url.rsplit('/', 1)[-1]}@{d.etag.strip(chr(34))}"
                                              for d in self.new_data)}

    def to_json(self) -> str:
        """The whole request, so that whoever stores it can submit or run it again exactly."""
        return json.dumps({**self.__dict__, "data": self.data.__dict__,
                           "new_data": [d.__dict__ for d in self.new_data], "tags": dict(self.tags)})

    @classmethod
    def from_json(cls, text: str) -> RetrainRequest:
        body = json.loads(text)
        body["data"] = BlobFolder(**body["data"])
        body["new_data"] = tuple(DataRef(**d) for d in body["new_data"])
        return cls(**body)


def _joined(items: Iterable[str], limit: int = 240) -> str:
    text = ""
    for item in items:
        candidate = f"{text},{item}" if text else item
        if len(candidate) > limit:
            return text + ",..."
        text = candidate
    return text


@dataclass(frozen=True)
class Job:
    name: str
    status: JobStatus
    model_name: str = ""
    url: str = ""  # where a person looks at it (Azure ML studio, or the local job log)
    error: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


class MLPlatform(Protocol):
    def submit_retraining(self, request: RetrainRequest) -> Job:
        """Start the pipeline (train -> evaluate -> register) or return the job of that name."""
        ...

    def get_job(self, name: str) -> Job | None: ...

    def get_model(self, name: str, version: str) -> ModelVersion | None: ...

    def list_models(self, name: str) -> list[ModelVersion]:
        """All versions of a model, oldest first; empty when there are none."""
        ...


# -- release half: endpoints, deployments, traffic ------------------------------------------------
#
# An endpoint is a stable scoring URL; deployments behind it each serve one model version, and the
# endpoint's traffic map splits requests between them by weight (percent, summing to 100 or 0).
# Mirror traffic copies a share of requests to a deployment whose answers are discarded.
#
# Names: Azure ML lowercases deployment names and drops zero entries from traffic maps, so the port
# speaks lower-case names only, and a deployment missing from ``traffic`` has 0 %.

DeploymentState = Literal["creating", "succeeded", "failed", "deleting"]


@dataclass(frozen=True)
class DeploymentSpec:
    endpoint: str
    name: str  # lower case, derived from model and version: repeated deploys are one deployment
    model_name: str
    model_version: str
    instance_type: str = ""  # Azure VM size; ignored locally
    instance_count: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)  # deployment environment variables
    tags: Mapping[str, str] = field(default_factory=dict)  # carried to the ModelDeployed event


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    name: str
    model_name: str
    model_version: str
    state: DeploymentState
    instance_count: int = 1
    error: str = ""  # why it failed, fit for a person


@dataclass(frozen=True)
class Endpoint:
    name: str
    state: str  # creating | succeeded | updating | failed | deleting (Azure's provisioning state, lower case)
    scoring_uri: str = ""
    traffic: Mapping[str, int] = field(default_factory=dict)  # deployment -> percent; missing = 0
    mirror: Mapping[str, int] = field(default_factory=dict)

    def share(self, deployment: str) -> int:
        return int(self.traffic.get(deployment.lower(), 0))


@dataclass(frozen=True)
class ScoreResult:
    """One real scoring call: what came back and how long it took."""

    status: int  # HTTP status; 0 when no response arrived (connection refused, timeout)
    body: bytes
    latency_ms: float
    error: str = ""  # transport error, when status is 0


@dataclass(frozen=True)
class DeploymentHealth:
    """What a deployment served over a window: the canary's health check reads this."""

    requests: int
    errors: int  # 5xx answers and failed connections
    p95_ms: float | None  # None when there were no requests
    window_seconds: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class ServingPlatform(Protocol):
    """Online endpoints and deployments: the release half of the ML platform port.

    Every call is idempotent and returns without waiting for long-running work: the release
    state machine polls (``get_deployment``) from a timer instead of holding a function open.
    """

    def ensure_endpoint(self, name: str, tags: Mapping[str, str]) -> Endpoint:
        """Get the endpoint, creating it if absent (creation is not idempotent in Azure: get first)."""
        ...

    def get_endpoint(self, name: str) -> Endpoint | None: ...

    def deploy(self, spec: DeploymentSpec) -> Deployment:
        """Get-or-create the deployment and return its current state (``creating`` at first)."""
        ...

    def get_deployment(self, endpoint: str, name: str) -> Deployment | None: ...

    def list_deployments(self, endpoint: str) -> list[Deployment]: ...

    def set_traffic(self, endpoint: str, traffic: Mapping[str, int],
                    mirror: Mapping[str, int] | None = None) -> Endpoint:
        """Make the endpoint's traffic (and mirror, when given) exactly these weights, and return the
        endpoint once the change is visible. Weights name existing deployments and sum to 100 (or 0)."""
        ...

    def scale(self, endpoint: str, name: str, instance_count: int) -> None:
        """Scale a deployment (a promoted release keeps its predecessor at a minimum, for rollback)."""
        ...

    def delete_deployment(self, endpoint: str, name: str) -> None:
        """Delete a deployment; absent is fine. Never called for one that has traffic."""
        ...

    def score(self, endpoint: str, body: bytes, deployment: str | None = None,
              timeout: float = 10.0) -> ScoreResult:
        """A real scoring request, routed to ``deployment`` when given, else by the traffic split."""
        ...

    def deployment_health(self, endpoint: str, name: str, since: datetime) -> DeploymentHealth:
        """Requests, errors and p95 latency the deployment served since ``since``."""
        ...

    def sample_request(self, model_name: str, version: str) -> bytes | None:
        """The sample scoring request stored with the model version, if it has one."""
        ...
