"""MLPlatform on Azure Machine Learning (SDK v2, ``azure-ai-ml``): the production path of the port.

Why it looks like this:

* ``azure.ai.ml`` takes about 2 s and 100 MB to import, and ``ml.pipeline`` pulls in scikit-learn
  (another ~2 s). The Functions app builds its services at cold start, so nothing here imports them
  at module level: every SDK import sits inside the method that needs it, and ``from_settings``
  hands over a *factory*, so the ``MLClient`` is built on first use, not at start-up.
* ``submit_retraining`` is get-or-create by job name. The name comes from the decision, so a submit
  repeated after a crash (or a duplicate event) finds the job instead of starting a second run. If
  the create fails and the job exists after all (a concurrent submit won the race, or the service
  created it before the error reached us), that job is the answer.
* Not found is ``None`` (or an empty list), never an exception. Every other failure (throttling,
  5xx after the SDK's own retries, auth) propagates: the caller records it and retries or
  dead-letters the event.
* Job inputs are datastore URIs, ``azureml://datastores/<datastore>/paths/<path>``, not
  ``https://<account>.blob.core.windows.net/...`` URLs; see ``datastore_uri``. The settings name the
  datastore(s); which container each one covers is read from the workspace once (``GET datastores``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from core.ml_platform import TAG_MODEL, BlobFolder, Job, JobStatus, ModelVersion, RetrainRequest

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Job as AzureJob
    from azure.ai.ml.entities import Model as AzureModel
    from azure.ai.ml.entities import PipelineJob

log = logging.getLogger(__name__)

# Azure ML job statuses (azure.ai.ml._restclient ... JobStatus, compared case-insensitively like the
# SDK's enum) -> the port's five. CancelRequested and NotResponding are not finished: the job may
# still write outputs or come back. Anything unknown counts as running, never as finished.
_STATUS: dict[str, JobStatus] = {
    "notstarted": "queued",
    "starting": "queued",
    "provisioning": "queued",
    "preparing": "queued",
    "queued": "queued",
    "paused": "queued",
    "running": "running",
    "finalizing": "running",
    "cancelrequested": "running",
    "notresponding": "running",
    "completed": "completed",
    "failed": "failed",
    "canceled": "canceled",
}


def map_status(azure_status: str | None) -> JobStatus:
    """The port's status for an Azure ML job status; unknown or missing ones count as running."""
    status = _STATUS.get((azure_status or "").lower())
    if status is None:
        log.warning("unknown Azure ML job status %r, treated as running", azure_status)
        return "running"
    return status


def datastore_uri(datastore: str, path: str, folder: bool) -> str:
    """``azureml://datastores/<datastore>/paths/<path>`` for a path inside the datastore's container.

    Why a datastore URI rather than the blob's https URL: the reactor's datastores are
    identity-based (no account key or SAS stored in the workspace), and a job reads a datastore URI
    with the compute's managed identity or the submitter's identity, whichever the job runs as. The
    URI names no account, endpoint suffix or secret, so the same reactor works in any cloud and
    the storage grant is managed once, on the datastore's storage, not in the reactor's settings.
    The studio also shows the datastore as the job input's source (lineage). Folders end in ``/``
    (``ml.pipeline`` binds anything not ending in ``.csv`` as ``uri_folder``).
    """
    clean = path.strip("/")
    if folder and clean:
        clean += "/"
    return f"azureml://datastores/{datastore}/paths/{clean}"


def _model_uri(model: ModelVersion) -> str:
    return f"azureml:{model.name}:{model.version}"


def _version_key(version: str) -> tuple[int, int | str]:
    """Numeric versions in numeric order (2 < 10); other strings after them, alphabetically."""
    return (0, int(version)) if version.isdigit() else (1, version)


class AzureMLPlatform:
    """The ``MLPlatform`` port on an Azure ML workspace (see the module docstring for the design)."""

    def __init__(
        self,
        client: MLClient | Callable[[], MLClient],
        *,
        compute: str,
        experiment: str,
        datastore: str | Sequence[str],
    ) -> None:
        """``client`` is an ``MLClient`` or a factory called once, on first use.

        ``datastore`` names the workspace datastore(s) over the blob container(s) that hold the training
        data and the test sets: one name, a comma-separated list, or a sequence. Each covers one
        container; which one is read from the workspace on the first submit.
        """
        names = [n.strip() for n in (datastore.split(",") if isinstance(datastore, str) else datastore)]
        if not compute:
            raise ValueError("compute must name a compute cluster")
        if not experiment:
            raise ValueError("experiment must name the Azure ML experiment")
        if not all(names) or not names:
            raise ValueError(f"datastore must name one or more datastores, got {datastore!r}")
        self._factory = client if callable(client) else (lambda: client)
        self._client: MLClient | None = None
        self._client_lock = threading.Lock()
        self._by_container: dict[str, str] | None = None
        self._datastore_lock = threading.Lock()
        self.compute = compute
        self.experiment = experiment
        self.datastore_names = tuple(names)

    @classmethod
    def from_settings(
        cls,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        compute: str,
        experiment: str,
        datastore: str | Sequence[str],
        credential: Any = None,  # a TokenCredential; Any because bootstrap passes **Mapping[str, str] here
        managed_identity_client_id: str | None = None,
        **client_kwargs: Any,
    ) -> AzureMLPlatform:
        """The platform for one workspace; the ``MLClient`` is built lazily, on the first call.

        Without ``credential`` it authenticates with ``DefaultAzureCredential`` (the Function App's
        managed identity in Azure; ``managed_identity_client_id`` picks a user-assigned one).
        ``client_kwargs`` go to ``MLClient`` and from there to the SDK's HTTP pipelines (for
        example ``retry_total`` or ``transport``). The SDK retries throttling and 5xx itself; by default
        only three times here (azure-core's default is ten, with up to two minutes between tries), as the
        caller retries the whole operation later anyway.
        """
        from core.adapters.azure_client import LazyCredential, ml_client_factory

        client_kwargs.setdefault("retry_total", 3)
        build = ml_client_factory(LazyCredential(credential, managed_identity_client_id),
                                  subscription_id, resource_group, workspace, **client_kwargs)
        return cls(build, compute=compute, experiment=experiment, datastore=datastore)

    @property
    def client(self) -> MLClient:
        with self._client_lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    # --- the port ---

    def submit_retraining(self, request: RetrainRequest) -> Job:
        existing = self.get_job(request.job_name)
        if existing is not None:
            log.info("job %s exists (%s); not submitting again", existing.name, existing.status)
            return existing
        return self._create(request)

    def get_job(self, name: str) -> Job | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _to_job(self.client.jobs.get(name))
        except ResourceNotFoundError:
            return None

    def get_model(self, name: str, version: str) -> ModelVersion | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _to_model(self.client.models.get(name=name, version=version))
        except ResourceNotFoundError:
            return None

    def list_models(self, name: str) -> list[ModelVersion]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            models = [_to_model(m) for m in self.client.models.list(name=name)]
        except ResourceNotFoundError:  # no model of that name at all
            return []
        return _oldest_first(models)

    # --- submitting ---

    def _create(self, request: RetrainRequest) -> Job:
        from azure.core.exceptions import HttpResponseError

        pipeline = self.build_job(request)
        try:
            created = self.client.jobs.create_or_update(pipeline, experiment_name=self.experiment)
        except HttpResponseError:
            # A concurrent submit of the same decision may have won, or the service created the job
            # before the error reached us: then that job is the answer. Otherwise the error stands.
            found = self.get_job(request.job_name)
            if found is None:
                raise
            log.info("create of %s failed but the job exists; returning it", request.job_name)
            return found
        log.info("submitted %s (%s) for model %s", created.name, created.status, request.model_name)
        return _to_job(created)

    def build_job(self, request: RetrainRequest) -> PipelineJob:
        """The ``PipelineJob`` for a request, champion included (reads datastores and model versions)."""
        from ml.pipeline import build_pipeline_job

        data_uri = self.folder_uri(request.data)
        test_uri = self.file_uri(request.test_container, request.test_blob)
        versions = self.list_models(request.model_name)
        job = build_pipeline_job(
            data_uris=[data_uri],
            test_uri=test_uri,
            model_name=request.model_name,
            metric=request.metric,
            min_improvement=request.min_improvement,
            compute=self.compute,
            tags=request.lineage_tags(),
            experiment_name=self.experiment,
            champion_uri=_model_uri(versions[-1]) if versions else None,
        )
        job.name = request.job_name
        return job

    def folder_uri(self, folder: BlobFolder) -> str:
        return datastore_uri(self.datastore_for(folder.container), folder.prefix, folder=True)

    def file_uri(self, container: str, blob: str) -> str:
        return datastore_uri(self.datastore_for(container), blob, folder=False)

    def datastore_for(self, container: str) -> str:
        """The configured datastore over ``container``; ValueError when none is (a configuration error)."""
        with self._datastore_lock:
            if self._by_container is None:
                self._by_container = self._read_datastores()
            by_container = self._by_container
        if container not in by_container:
            known = ", ".join(f"{name} ({c})" for c, name in sorted(by_container.items()))
            raise ValueError(f"no configured Azure ML datastore covers container {container!r}; "
                             f"configured: {known}")
        return by_container[container]

    def _read_datastores(self) -> dict[str, str]:
        """Container -> datastore name, from the workspace (one GET per configured datastore)."""
        from azure.core.exceptions import ResourceNotFoundError

        by_container: dict[str, str] = {}
        for name in self.datastore_names:
            try:
                store = self.client.datastores.get(name)
            except ResourceNotFoundError:
                raise ValueError(f"Azure ML datastore {name!r} does not exist in the workspace") from None
            # blob datastores name a container, ADLS Gen2 ones a filesystem (the same thing in storage)
            container = getattr(store, "container_name", None) or getattr(store, "filesystem", None)
            if not container:
                raise ValueError(f"Azure ML datastore {name!r} is not over a blob container ({store.type})")
            by_container.setdefault(str(container), name)
        return by_container


def _to_job(job: AzureJob) -> Job:
    tags = {str(k): str(v) for k, v in (job.tags or {}).items()}
    return Job(
        name=str(job.name),
        status=map_status(job.status),
        model_name=tags.get(TAG_MODEL, ""),
        url=job.studio_url or "",
        tags=tags,
    )


def _to_model(model: AzureModel) -> ModelVersion:
    context = model.creation_context
    return ModelVersion(
        name=str(model.name),
        version=str(model.version),
        tags={str(k): str(v) for k, v in (model.tags or {}).items()},
        properties={str(k): str(v) for k, v in (model.properties or {}).items()},
        created_at=context.created_at if context is not None else None,
    )


def _oldest_first(models: list[ModelVersion]) -> list[ModelVersion]:
    """Oldest first by creation time, then version: the order the service lists them in is not part of its API."""
    if any(m.created_at is None for m in models):
        return sorted(models, key=lambda m: _version_key(m.version))
    return sorted(models, key=lambda m: (cast(datetime, m.created_at), _version_key(m.version)))
