"""The local ML platform: Azure ML's part of the loop, on one machine, for real.

``make dev``, the demo and the integration tests need the whole loop (new data -> retrain ->
gate -> register -> the reactor reacting) without a workspace. Faking the outcome would test
nothing, so this adapter runs the same ``python -m ml.train / ml.evaluate / ml.register``
commands the Azure ML pipeline steps run, keeps model versions in the storage account
(Azurite locally), and announces what happened with the Event Grid events Azure ML emits, in
the same schema, so the app cannot tell the two platforms apart.

Storage (``prefix`` from settings):
    {prefix}mljobs        PK "job", RK job name        status, owner, error, tags, log location
    {prefix}mlmodels      PK model, RK 10-digit version  state, tags, properties, created_at
    {prefix}-models       {model}/{version}/<files>     the registered package (container, lower case)
                          jobs/{job}/log.txt            every step's command line and output

Why it is shaped like this:
- Submitting is get-or-create on the job name (insert-if-absent), so a submit repeated after a
  crash finds the job instead of training twice. The caller is an Azure Function handler that
  must return at once, so a new job runs in a background thread.
- Status changes are ETag-conditional. Each job row names its owner (pid and a random instance
  id) and keeps the whole request. Azure ML runs a job on its own compute, which outlives the
  Functions host; this platform runs it inside the host, so a job whose owner is gone is *resumed*:
  whoever reads it first (``get_job``, which the retraining timer calls, or a platform starting up)
  takes it over with an ETag-conditional update (new owner, attempt n+1, ``resumed_at``) and runs
  it again from the start under the same name. One taker wins; the others report what is stored.
  After ``attempts`` runs the job ends failed instead (unless it registered its version: then it
  is finished, below), and only the winner of that update announces it, so a killed host neither
  leaves a job "running" forever nor announces it twice.
- A re-run registers at most one version. Every version row names its job: a job resumed after it
  registered announces that version again (the same event id, which the app's ledger drops as a
  duplicate) and ends, without training again; one resumed between reserving a number and making
  it ready reuses the number.
- A version number is reserved with an insert-if-absent before the files are uploaded, and the
  row only becomes visible ("ready") once the files are there: a reader never finds a version
  without its model.
- Outcomes are stored before they are announced. Publishing can fail (the local host is down);
  that is logged at error level with the job name and never loses the outcome. Event ids are
  deterministic per job, so a re-publish is deduplicated by the app's ledger.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from core.adapters.local_eventgrid import Delivery
from core.errors import ConflictError, PreconditionFailed, StoreError
from core.logs import get_logger, log
from core.ml_platform import (
    TAG_CHAMPION_KEPT,
    TAG_CHAMPION_VERSION,
    TAG_REGISTERED_VERSION,
    TAG_VERDICT_REASON,
    Job,
    ModelVersion,
    RetrainRequest,
)
from core.ports import BlobStore, Clock, Entity, StateStore, utcnow

ML_TOPIC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
            "Microsoft.MachineLearningServices/workspaces/local")
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_TYPE = "azureml.PipelineRun"



STALE_ERROR = "the local platform stopped while the job ran"
DEFAULT_ATTEMPTS = 3  # runs of a job in all, the first and the resumed ones (REACTOR_LOCAL_JOB_ATTEMPTS)
STEP_TIMEOUT = 1800.0  # seconds; a hung step must end the job, not hold it "running" forever
JOB_PARTITION = "job"
LOG_FILE = "log.txt"
VERSION_DIGITS = 10  # zero-padded row keys sort versions numerically
MAX_ERROR = 2000  # characters kept in the job row; the log blob keeps everything
ERROR_LINES = 5  # last stderr lines that make the job's error: the ml CLIs put the cause last
VERSION_ATTEMPTS = 50
REGISTRATION = "registration.json"  # ml.register's record of the verdict, uploaded with the package

# Job names become row keys and blob paths: keep them to what both (and Azure ML) accept.
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_EVENT_NAMESPACE = uuid.UUID("3f1c2a8e-7b4d-4e0a-9c6b-2d5e8f1a0b47")
_ROOT = Path(__file__).resolve().parents[2]  # the project root, where the ml package lives
_log = get_logger("local_ml")

# Platform objects alive in this process, by instance id: a job owned by our pid but by none of
# these was started by an earlier process that had the same pid (a restarted container).
_LIVE: weakref.WeakValueDictionary[str, LocalMLPlatform] = weakref.WeakValueDictionary()


def models_container(prefix: str) -> str:
    """The blob container holding registered versions; the local serving platform reads it too."""
    return f"{prefix.lower()}-models"


class StepFailed(Exception):
    """A pipeline step could not finish; the message is the job's error, fit for a person."""


@dataclass(frozen=True)
class _Outcome:
    verdict: Mapping[str, Any]
    champion: ModelVersion | None
    registered: ModelVersion | None = None

    def tags(self) -> dict[str, str]:
        reason = {TAG_VERDICT_REASON: str(self.verdict.get("reason", ""))}
        if self.registered is not None:
            return {TAG_REGISTERED_VERSION: self.registered.version, **reason}
        champion = self.champion.version if self.champion else "none"
        return {TAG_CHAMPION_KEPT: "true", TAG_CHAMPION_VERSION: champion, **reason}

    def properties(self) -> dict[str, str]:
        metric = str(self.verdict.get("metric", ""))
        return {"reactor_metric": metric, "reactor_challenger": _text(self.verdict.get("challenger")),
                "reactor_champion": _text(self.verdict.get("champion")),
                "reactor_improvement": _text(self.verdict.get("improvement"))}


@dataclass
class _JobLog:
    """The full output of a job's steps, kept in a blob for a person to read."""

    blobs: BlobStore
    container: str
    job_name: str
    parts: list[str] = field(default_factory=list)

    @property
    def blob(self) -> str:
        return f"jobs/{self.job_name}/{LOG_FILE}"

    def write(self, text: str) -> None:
        self.parts.append(text if text.endswith("\n") else text + "\n")

    def save(self) -> None:
        try:
            self.blobs.put(self.container, self.blob, "".join(self.parts).encode(), "text/plain; charset=utf-8")
        except Exception as exc:  # the log is for people; losing it must not change the job's outcome
            log(_log, logging.ERROR, "job log could not be saved", job=self.job_name,
                error=f"{type(exc).__name__}: {exc}")


class LocalMLPlatform:
    """MLPlatform on this machine: real training in subprocesses, versions in storage, Azure ML's events."""

    def __init__(self, store: StateStore, blobs: BlobStore, publish: Callable[[list[dict[str, Any]]], object], *,
                 prefix: str, python: str = sys.executable, clock: Clock = utcnow,
                 workdir: Path | None = None, attempts: int = DEFAULT_ATTEMPTS) -> None:
        self._store = store
        self._blobs = blobs
        self._publish = publish
        self._python = python
        self._clock = clock
        self._workdir = workdir
        self._attempts = max(1, attempts)
        self.jobs_table = f"{prefix}mljobs"
        self.models_table = f"{prefix}mlmodels"
        self.container = models_container(prefix)
        self.instance = uuid.uuid4().hex
        self._active: set[str] = set()  # jobs this object is running (from before the insert to the end)
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        _LIVE[self.instance] = self

    # -- the port ----------------------------------------------------------------------------
    def submit_retraining(self, request: RetrainRequest) -> Job:
        name = request.job_name
        if not _JOB_NAME.match(name):
            raise ValueError(f"invalid job name {name!r}: use letters, digits, '-', '_', '.' (at most 255)")
        if not self._claim(name):
            return self._existing(name)  # this object runs it already
        try:
            etag = self._store.insert(self.jobs_table, JOB_PARTITION, name, self._new_job_row(request))
        except ConflictError:
            self._forget(name)
            return self._existing(name)
        except BaseException:
            self._forget(name)
            raise
        self._start(request, etag, attempt=1)
        log(_log, logging.INFO, "job submitted", job=name, model=request.model_name,
            correlation_id=request.correlation_id)
        return Job(name, "queued", request.model_name, self._log_url(name), tags=request.lineage_tags())

    def get_job(self, name: str) -> Job | None:
        entity = self._store.get(self.jobs_table, JOB_PARTITION, name)
        if entity is None:
            return None
        if entity.props.get("status") in ("queued", "running") and self._orphaned(entity):
            return self._resume_orphan(entity)
        return _job(entity)

    def start(self) -> LocalMLPlatform:
        """Start up: resume, in the background, the jobs that processes gone before left queued or
        running (the retraining timer's reads would find its own jobs too, but not any others)."""
        threading.Thread(target=self._resume_at_start, name="mljob-resume", daemon=True).start()
        return self

    def get_model(self, name: str, version: str) -> ModelVersion | None:
        try:
            row = _version_key(int(version))
        except ValueError:
            return None  # not a number: no such version
        entity = self._store.get(self.models_table, name, row)
        if entity is None or entity.props.get("state") != "ready":
            return None
        return _model(entity)

    def list_models(self, name: str) -> list[ModelVersion]:
        rows = self._store.query(self.models_table, name, {"state": "ready"})
        return [_model(e) for e in sorted(rows, key=lambda e: e.row)]

    # -- for tests, the demo and the release work ------------------------------------------
    def wait(self, job_name: str, timeout: float = 120.0) -> Job:
        """The job once finished. For a job this object runs, also after its events were published."""
        deadline = time.monotonic() + timeout
        with self._lock:
            thread = self._threads.get(job_name)
        if thread is not None:
            thread.join(timeout)
        while True:
            job = self.get_job(job_name)
            if job is None:
                raise LookupError(f"no job named {job_name!r}")
            if job.finished and (thread is None or not thread.is_alive()):
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_name} is still {job.status} after {timeout:g} s")
            time.sleep(0.1)

    def register_package(self, name: str, package_dir: Path, tags: Mapping[str, str],
                         properties: Mapping[str, str]) -> ModelVersion:
        """Register a model package (the files of a model directory) as the next version, outside any
        job: for tests and the demo, which need deployable versions without training through a job."""
        if not _JOB_NAME.match(name):
            raise ValueError(f"invalid model name {name!r}: use letters, digits, '-', '_', '.' (at most 255)")
        if not any(p.is_file() for p in Path(package_dir).iterdir()):
            raise ValueError(f"{package_dir}: no files to register")
        # the event id derives from this name: unique per registration, as a job name is per job
        return self._store_version(name, Path(package_dir), {str(k): str(v) for k, v in tags.items()},
                                   {str(k): str(v) for k, v in properties.items()},
                                   f"register-{name}-{uuid.uuid4().hex[:12]}")

    def model_files(self, name: str, version: str, dest_dir: Path) -> Path:
        """Download a registered version's files into ``dest_dir`` and return it."""
        if self.get_model(name, version) is None:
            raise LookupError(f"model {name}:{version} is not registered")
        prefix = f"{name}/{int(version)}/"
        blobs = list(self._blobs.list(self.container, prefix))
        if not blobs:
            raise LookupError(f"model {name}:{version} has no files under {self.container}/{prefix}")
        dest = Path(dest_dir)
        for blob in blobs:
            self._download(self.container, blob.name, dest, blob.name[len(prefix):])
        return dest

    # -- the job thread ----------------------------------------------------------------------
    def _start(self, request: RetrainRequest, etag: str, attempt: int) -> None:
        name = request.job_name
        thread = threading.Thread(target=self._run, args=(request, etag, attempt), name=f"mljob-{name}",
                                  daemon=True)
        with self._lock:  # started before wait() can see it: a thread not yet started cannot be joined
            try:
                thread.start()
            except RuntimeError:
                self._active.discard(name)  # the row stays queued with no runner: the next get_job resumes it
                raise
            self._threads[name] = thread

    def _run(self, request: RetrainRequest, etag: str, attempt: int) -> None:
        name = request.job_name
        try:
            self._run_job(request, etag, attempt)
        except Exception as exc:  # storage gone while recording the outcome: nothing left to record it in
            log(_log, logging.ERROR, "job thread ended without recording an outcome", job=name,
                error=f"{type(exc).__name__}: {exc}")
        finally:
            self._forget(name)

    def _run_job(self, request: RetrainRequest, etag: str, attempt: int) -> None:
        name = request.job_name
        try:
            etag = self._store.update(self.jobs_table, JOB_PARTITION, name,
                                      {"status": "running", "started_at": _iso(self._clock())}, etag)
        except PreconditionFailed:
            log(_log, logging.ERROR, "job changed before it started; not running it", job=name)
            return
        job_log = self._job_log(name, attempt)
        job_log.write(f"job {name}: retrain {request.model_name} on {request.data.container}/{request.data.prefix}"
                      f" (reason {request.reason}, correlation {request.correlation_id})")
        job_log.save()  # a trace of this attempt, should its process die in the first step
        try:
            outcome = self._earlier_registration(request, job_log) if attempt > 1 else None
            if outcome is None:
                with tempfile.TemporaryDirectory(prefix="mljob-", dir=self._workdir) as tmp:
                    outcome = self._pipeline(request, Path(tmp), job_log)
        except StepFailed as exc:
            self._finish_failed(request, etag, str(exc), job_log)
        except Exception as exc:  # storage, a bug: the job must still end as failed, with the cause
            job_log.write(traceback.format_exc())
            self._finish_failed(request, etag, f"{type(exc).__name__}: {exc}", job_log)
        else:
            self._finish_completed(request, etag, outcome, job_log)

    def _pipeline(self, request: RetrainRequest, work: Path, job_log: _JobLog) -> _Outcome:
        """train -> evaluate against the champion -> register: the Azure ML pipeline's steps."""
        data = self._download_data(request, work / "data")
        test = self._download(request.test_container, request.test_blob, work / "test", request.test_blob)
        paths = {work / "data": f"{request.data.container}/", work / "test": f"{request.test_container}/",
                 work: ""}
        model, verdict, package = work / "model", work / "verdict.json", work / "package"
        self._step("ml.train", ["--data", *map(str, data), "--out", str(model)], work, paths, job_log)
        champion = self._champion(request.model_name)
        against: list[str] = []
        if champion is not None:
            against = ["--champion", str(self.model_files(champion.name, champion.version, work / "champion"))]
        self._step("ml.evaluate", ["--challenger", str(model), *against, "--test", str(test),
                                   "--metric", request.metric, "--min-improvement", repr(request.min_improvement),
                                   "--out", str(verdict)], work, paths, job_log)
        self._step("ml.register", ["--model", str(model), "--verdict", str(verdict), "--name", request.model_name,
                                   "--tags-json", json.dumps(request.lineage_tags(), sort_keys=True),
                                   "--out", str(package)], work, paths, job_log)
        record = json.loads((package / REGISTRATION).read_text(encoding="utf-8"))
        if not record["registered"]:
            return _Outcome(record["verdict"], champion)
        return _Outcome(record["verdict"], champion, self._register(request, package, record, champion))

    def _download_data(self, request: RetrainRequest, dest: Path) -> list[Path]:
        folder = request.data
        names = sorted(b.name for b in self._blobs.list(folder.container, folder.prefix)
                       if b.name.lower().endswith(".csv"))
        if not names:
            raise StepFailed(f"no CSV files under {folder.container}/{folder.prefix}")
        return [self._download(folder.container, n, dest, n) for n in names]

    def _download(self, container: str, blob: str, dest: Path, relative: str) -> Path:
        parts = PurePosixPath(relative).parts
        if not parts or ".." in parts or PurePosixPath(relative).is_absolute():
            raise StepFailed(f"{container}/{blob}: blob name cannot be used as a local file name")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self._blobs.get(container, blob))
        return target

    def _step(self, module: str, args: list[str], work: Path, paths: Mapping[Path, str], job_log: _JobLog) -> None:
        command = [self._python, "-m", module, *args]
        job_log.write("$ " + " ".join(command))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            job_log.write(f"{module} did not finish within {STEP_TIMEOUT:g} s; killed")
            job_log.save()
            raise StepFailed(f"{module} did not finish within {STEP_TIMEOUT:g} s") from None
        job_log.write(done.stdout + done.stderr + f"exit {done.returncode}\n")
        job_log.save()
        if done.returncode != 0:
            tail = _tail(done.stderr or done.stdout, paths)
            raise StepFailed(f"{module} exited with {done.returncode}: {tail}")

    def _champion(self, model: str) -> ModelVersion | None:
        versions = self.list_models(model)
        return versions[-1] if versions else None

    # -- registering a version ---------------------------------------------------------------
    def _register(self, request: RetrainRequest, package: Path, record: Mapping[str, Any],
                  champion: ModelVersion | None) -> ModelVersion:
        name = request.model_name
        tags = {str(k): str(v) for k, v in record["tags"].items()}
        verdict = record["verdict"]
        metric = str(verdict["metric"])
        properties = {**{str(k): str(v) for k, v in record["properties"].items()},
                      "metric": metric, metric: _text(verdict.get("challenger")),
                      f"champion_{metric}": _text(verdict.get("champion")),
                      "improvement": _text(verdict.get("improvement")),
                      "champion_version": champion.version if champion else "none", "job_name": request.job_name}
        return self._store_version(name, package, tags, properties, request.job_name)

    def _store_version(self, name: str, package: Path, tags: Mapping[str, str], properties: Mapping[str, str],
                       job_name: str) -> ModelVersion:
        """Reserve the next version, upload the package, make it visible, announce ModelRegistered."""
        version, etag, created = self._reserve_version(name, tags, properties, job_name)
        for path in sorted(p for p in package.iterdir() if p.is_file()):
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._blobs.put(self.container, f"{name}/{version}/{path.name}", path.read_bytes(), content_type)
        self._store.update(self.models_table, name, _version_key(version),
                           {"state": "ready", "created_at": _iso(created)}, etag)
        model = ModelVersion(name, str(version), dict(tags), dict(properties), created)
        log(_log, logging.INFO, "model registered", job=job_name, model=name, version=model.version)
        self._announce(job_name, [self._model_registered_event(job_name, model)])
        return model

    def _reserve_version(self, name: str, tags: Mapping[str, str], properties: Mapping[str, str],
                         job_name: str) -> tuple[int, str, datetime]:
        """The next version number, taken with an insert-if-absent; invisible until its files are uploaded.
        A number an earlier attempt of the job reserved (its host died before the files were up) is reused.
        Returns the number, the row's ETag and when the number was taken: the version's creation time,
        so that creation times follow version numbers as in Azure ML, whichever upload ends first."""
        for earlier in self._store.query(self.models_table, name, {"job_name": job_name, "state": "registering"}):
            etag = self._store.update(self.models_table, name, earlier.row,
                                      {"tags": json.dumps(dict(tags)), "properties": json.dumps(dict(properties))},
                                      earlier.etag)
            taken = str(earlier.props.get("reserved_at", ""))
            return int(earlier.row), etag, datetime.fromisoformat(taken) if taken else self._clock()
        for _ in range(VERSION_ATTEMPTS):
            version = max((int(e.row) for e in self._store.query(self.models_table, name)), default=0) + 1
            reserved = self._clock()
            props = {"version": version, "state": "registering", "tags": json.dumps(dict(tags)),
                     "properties": json.dumps(dict(properties)), "job_name": job_name,
                     "reserved_at": _iso(reserved)}
            try:
                return version, self._store.insert(self.models_table, name, _version_key(version), props), reserved
            except ConflictError:
                continue  # another job took this number between our read and our insert: read again
        raise StoreError(f"could not reserve a version of {name} in {VERSION_ATTEMPTS} attempts")

    # -- finishing ---------------------------------------------------------------------------
    def _finish_completed(self, request: RetrainRequest, etag: str, outcome: _Outcome, job_log: _JobLog) -> None:
        name = request.job_name
        tags = {**request.lineage_tags(), **outcome.tags()}
        job_log.write(f"completed: {outcome.verdict.get('reason', '')}")
        job_log.save()
        if not self._record_end(name, etag, {"status": "completed", "tags": json.dumps(tags),
                                             "registered_version": outcome.tags().get(TAG_REGISTERED_VERSION, "")}):
            return
        log(_log, logging.INFO, "job completed", job=name, model=request.model_name,
            version=outcome.registered.version if outcome.registered else "")
        properties = {**self._run_properties(name), **outcome.properties()}
        self._announce(name, [self._run_event("completed", RUN_COMPLETED, name, request.model_name, tags,
                                              properties)])

    def _finish_failed(self, request: RetrainRequest, etag: str, error: str, job_log: _JobLog) -> None:
        name = request.job_name
        job_log.write(f"failed: {error}")
        job_log.save()
        if not self._record_end(name, etag, {"status": "failed", "error": error[-MAX_ERROR:]}):
            return
        log(_log, logging.ERROR, "job failed", job=name, model=request.model_name, error=error)
        self._announce(name, [self._failed_event(name, request.model_name, request.lineage_tags(), error)])

    def _record_end(self, name: str, etag: str, props: Mapping[str, Any]) -> bool:
        try:
            self._store.update(self.jobs_table, JOB_PARTITION, name, {**props, "finished_at": _iso(self._clock())},
                               etag)
        except PreconditionFailed:
            # someone declared this job dead (see get_job) and announced it; a second outcome would contradict it
            log(_log, logging.ERROR, "job changed while it ran; its outcome is not recorded", job=name,
                status=str(props.get("status")))
            return False
        return True

    # -- jobs whose owner is gone ------------------------------------------------------------
    def _orphaned(self, entity: Entity) -> bool:
        instance = str(entity.props.get("owner_instance", ""))
        pid = int(entity.props.get("owner_pid", 0))
        owner = _LIVE.get(instance)
        if owner is not None:
            return not owner._runs(entity.row)
        if pid == os.getpid():
            return True  # our pid but none of our platforms: an earlier process had this pid
        return not _pid_alive(pid)

    def _resume_orphan(self, entity: Entity) -> Job | None:
        """Take over a job whose owner is gone and run it again from the start, or end it failed once it
        has had its attempts. The update is ETag-conditional: one taker wins, the others report what is stored."""
        attempt = int(entity.props.get("attempt") or 1)
        # A job whose version is registered is finished whatever its attempts: nothing is trained again.
        if attempt >= self._attempts and not self._registered(_stored_request(entity)):
            return self._fail_orphan(entity, f"{STALE_ERROR}: its process was gone in each of its {attempt} "
                                             f"attempts (at most {self._attempts}, REACTOR_LOCAL_JOB_ATTEMPTS); "
                                             "not resumed again")
        request = _stored_request(entity)
        if request is None:
            return self._fail_orphan(entity, f"{STALE_ERROR}, and its row keeps no request to run it again")
        name = entity.row
        if not self._claim(name):
            return self._stored(name)  # another thread of this object is taking it over
        changes = {"status": "queued", "owner_pid": os.getpid(), "owner_instance": self.instance,
                   "attempt": attempt + 1, "resumed_at": _iso(self._clock()),
                   "resumed_from": f"pid {entity.props.get('owner_pid')} instance {entity.props.get('owner_instance')}"}
        try:
            etag = self._store.update(self.jobs_table, JOB_PARTITION, name, changes, entity.etag)
        except PreconditionFailed:
            self._forget(name)
            return self._stored(name)  # another platform took it over, or it moved on
        except BaseException:
            self._forget(name)
            raise
        log(_log, logging.WARNING, "job resumed: its owner is gone", job=name, model=request.model_name,
            attempt=attempt + 1, owner_pid=entity.props.get("owner_pid"))
        self._start(request, etag, attempt + 1)
        return _job(Entity(entity.partition, name, {**entity.props, **changes}, etag))

    def _registered(self, request: RetrainRequest | None) -> bool:
        """Whether an attempt of this job registered its version (then a run only announces it again)."""
        return request is not None and self._registration(request) is not None

    def _registration(self, request: RetrainRequest) -> Entity | None:
        """The version row an attempt of this job registered, if one did."""
        rows = self._store.query(self.models_table, request.model_name,
                                 {"job_name": request.job_name, "state": "ready"})
        return next(iter(rows), None)

    def _fail_orphan(self, entity: Entity, error: str) -> Job | None:
        name = entity.row
        try:
            self._store.update(self.jobs_table, JOB_PARTITION, name,
                               {"status": "failed", "error": error, "finished_at": _iso(self._clock())}, entity.etag)
        except PreconditionFailed:
            return self._stored(name)  # another reader won (and announced it), or the job moved on
        job = _job(entity)
        log(_log, logging.ERROR, "job failed: its owner is gone", job=name, model=job.model_name,
            owner_pid=entity.props.get("owner_pid"), error=error)
        self._announce(name, [self._failed_event(name, job.model_name, job.tags, error)])
        return Job(name, "failed", job.model_name, job.url, error, job.tags)

    def _resume_at_start(self) -> None:
        try:
            for status in ("queued", "running"):
                for entity in list(self._store.query(self.jobs_table, JOB_PARTITION, {"status": status})):
                    if self._orphaned(entity):
                        self._resume_orphan(entity)
        except Exception as exc:  # storage not up yet: the retraining timer's next read of each job resumes it
            log(_log, logging.ERROR, "jobs left by earlier processes could not be resumed at start-up",
                error=f"{type(exc).__name__}: {exc}")

    def _earlier_registration(self, request: RetrainRequest, job_log: _JobLog) -> _Outcome | None:
        """The outcome of an earlier attempt that registered a version and died before the job's end:
        announce that version again (same event id, so the app sees it once) instead of a second one."""
        entity = self._registration(request)
        if entity is None:
            return None
        model = _model(entity)
        record = json.loads(self._blobs.get(self.container, f"{model.name}/{model.version}/{REGISTRATION}"))
        job_log.write(f"version {model.version} was registered by an earlier attempt: announced again, "
                      "not trained again")
        self._announce(request.job_name, [self._model_registered_event(request.job_name, model)])
        return _Outcome(record["verdict"], self.get_model(model.name, model.properties.get("champion_version", "")),
                        model)

    def _job_log(self, name: str, attempt: int) -> _JobLog:
        """A new log, or for a resumed job the earlier attempts' log continued."""
        job_log = _JobLog(self._blobs, self.container, name)
        if attempt > 1:
            try:
                job_log.parts.append(self._blobs.get(self.container, job_log.blob).decode(errors="replace"))
            except Exception as exc:  # the log is for people: a lost one must not stop the job
                job_log.write(f"(the earlier attempts' log could not be read: {type(exc).__name__})")
            job_log.write(f"--- attempt {attempt} of at most {self._attempts}: the previous runner is gone; "
                          "running again from the start" if attempt <= self._attempts else
                          f"--- attempt {attempt}, past its {self._attempts}: the previous runner is gone after "
                          "registering the version; finishing the job")
        return job_log

    def _stored(self, name: str) -> Job | None:
        current = self._store.get(self.jobs_table, JOB_PARTITION, name)
        return None if current is None else _job(current)

    def _existing(self, name: str) -> Job:
        job = self.get_job(name)
        if job is None:
            raise StoreError(f"job {name} exists but could not be read")
        return job

    def _claim(self, name: str) -> bool:
        """Mark the job as run by this object (before its row exists, so get_job never takes a fresh job
        for an orphan); False when it already is."""
        with self._lock:
            if name in self._active:
                return False
            self._active.add(name)
            return True

    def _runs(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def _forget(self, name: str) -> None:
        with self._lock:
            self._active.discard(name)

    # -- events ------------------------------------------------------------------------------
    def _announce(self, job_name: str, events: list[dict[str, Any]]) -> None:
        """Publish; a failure is logged with the job, never raised: the outcome is already stored."""
        kinds = ",".join(e["eventType"].rsplit(".", 1)[-1] for e in events)
        try:
            result = self._publish(events)
        except Exception as exc:
            log(_log, logging.ERROR, "events could not be published", job=job_name, events=kinds,
                error=f"{type(exc).__name__}: {exc}")
            return
        failed = [d for d in _deliveries(result) if not d.ok]
        if failed:
            log(_log, logging.ERROR, "events were not delivered", job=job_name, events=kinds,
                error="; ".join(f"{d.function}: status {d.status} after {d.attempts} attempts" for d in failed))

    def _model_registered_event(self, job_name: str, model: ModelVersion) -> dict[str, Any]:
        data = {"ModelName": model.name, "ModelVersion": int(model.version), "ModelTags": dict(model.tags),
                "ModelProperties": dict(model.properties)}
        return self._event(job_name, "model-registered", MODEL_REGISTERED, f"models/{model.name}:{model.version}",
                           data)

    def _failed_event(self, job_name: str, model: str, tags: Mapping[str, str], error: str) -> dict[str, Any]:
        properties = {**self._run_properties(job_name), "reactor_error": error[-MAX_ERROR:]}
        return self._run_event("failed", RUN_STATUS_CHANGED, job_name, model, tags, properties,
                               runStatus="Failed")

    def _run_event(self, kind: str, event_type: str, job_name: str, model: str, tags: Mapping[str, str],
                   properties: Mapping[str, str], **extra: str) -> dict[str, Any]:
        experiment = f"retrain-{model}"
        experiment_id = str(uuid.uuid5(_EVENT_NAMESPACE, f"experiment/{experiment}"))
        data = {"experimentId": experiment_id, "experimentName": experiment, "runId": job_name,
                "runType": RUN_TYPE, "runTags": dict(tags), "runProperties": dict(properties), **extra}
        return self._event(job_name, kind, event_type, f"experiments/{experiment_id}/runs/{job_name}", data)

    def _event(self, job_name: str, kind: str, event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"topic": ML_TOPIC, "subject": subject, "eventType": event_type,
                "eventTime": _iso(self._clock()).replace("+00:00", "Z"),
                "id": str(uuid.uuid5(_EVENT_NAMESPACE, f"{job_name}/{kind}")), "data": data,
                "dataVersion": "", "metadataVersion": "1"}

    def _run_properties(self, job_name: str) -> dict[str, str]:
        return {"reactor_platform": "local", "reactor_log": self._log_url(job_name)}

    # -- rows --------------------------------------------------------------------------------
    def _new_job_row(self, request: RetrainRequest) -> dict[str, Any]:
        return {"status": "queued", "model_name": request.model_name, "error": "",
                "tags": json.dumps(request.lineage_tags()), "url": self._log_url(request.job_name),
                "data": f"{request.data.container}/{request.data.prefix}",
                "test": f"{request.test_container}/{request.test_blob}", "metric": request.metric,
                "min_improvement": request.min_improvement, "owner_pid": os.getpid(),
                "owner_instance": self.instance, "created_at": _iso(self._clock()),
                "request": request.to_json(), "attempt": 1}  # all a platform needs to run it again

    def _log_url(self, job_name: str) -> str:
        # the blob's place in the storage account; the BlobStore port has no notion of URLs
        return f"{self.container}/jobs/{job_name}/{LOG_FILE}"


def _job(entity: Entity) -> Job:
    p = entity.props
    return Job(name=entity.row, status=p.get("status", "queued"), model_name=str(p.get("model_name", "")),
               url=str(p.get("url", "")), error=str(p.get("error", "")), tags=json.loads(p.get("tags") or "{}"))


def _stored_request(entity: Entity) -> RetrainRequest | None:
    """The request a job row keeps; None for a row written before rows kept it, or unreadable."""
    try:
        return RetrainRequest.from_json(str(entity.props.get("request") or ""))
    except (ValueError, TypeError, KeyError):
        return None


def _model(entity: Entity) -> ModelVersion:
    p = entity.props
    created = p.get("created_at")
    return ModelVersion(name=entity.partition, version=str(int(entity.row)), tags=json.loads(p.get("tags") or "{}"),
                        properties=json.loads(p.get("properties") or "{}"),
                        created_at=datetime.fromisoformat(created) if created else None)


def _deliveries(result: object) -> Iterable[Delivery]:
    """The EventGridEmulator reports deliveries instead of raising; other publishers return anything."""
    if isinstance(result, list | tuple):
        return [d for d in result if isinstance(d, Delivery)]
    return []


def _tail(output: str, paths: Mapping[Path, str]) -> str:
    """The last lines of a step's output, with temporary paths turned back into blob locations."""
    lines = [line for line in output.strip().splitlines() if line.strip()][-ERROR_LINES:]
    text = "\n".join(lines) or "no output"
    for local, shown in sorted(paths.items(), key=lambda item: -len(str(item[0]))):
        text = text.replace(str(local) + os.sep, shown)
    return text[-MAX_ERROR:]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        # os.kill(pid, 0) would terminate the process on Windows; ask for its exit code instead
        kernel = ctypes.windll.kernel32
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        try:
            return bool(kernel.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _version_key(version: int) -> str:
    return f"{version:0{VERSION_DIGITS}d}"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _text(value: Any) -> str:
    return "none" if value is None else str(value)
