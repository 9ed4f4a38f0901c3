"""The ML platform port: what the reactor asks of Azure ML (or of the local platform).

Retraining half (issue 3): submit a retraining pipeline, read a job, read model versions.
The release half (deployments, endpoints, traffic) joins this port with the release work.

A job's *name* is chosen by the caller and derived from the decision that started it, so a
submit repeated after a crash finds the job instead of starting a second one: ``submit``
is get-or-create.
"""

from __future__ import annotations

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
