"""The local ML platform against Azurite: real training in subprocesses, versions in storage, and
the events Azure ML would publish, checked against the real event types."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from core.adapters.blob_store import AzureBlobStore
from core.adapters.local_ml import JOB_PARTITION, STALE_ERROR, LocalMLPlatform
from core.adapters.table_store import TableStateStore
from core.events import ModelRegistered, RunCompleted, RunStatusChanged, parse_event
from core.ml_platform import TAG_CORRELATION, TAG_DECISION, TAG_MODEL, BlobFolder, DataRef, RetrainRequest
from ml.sample_data import write_batches, write_holdout
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

MODEL = "diabetes-ridge"
ML_TYPES = "Microsoft.MachineLearningServices."


class PublishedEvents:
    """Where the platform's events go: a recording of the outside world, not a mock of our code."""

    def __init__(self, fail: bool = False) -> None:
        self.raw: list[dict[str, Any]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, events: list[dict[str, Any]]) -> list[Any]:
        if self.fail:
            raise ConnectionError("the local host is unreachable")
        with self._lock:
            self.raw.extend(events)
        return []

    def types(self) -> list[str]:
        return [e["eventType"].removeprefix(ML_TYPES) for e in self.raw]

    def parsed(self) -> list[Any]:
        return [parse_event(e) for e in self.raw]


class World:
    """Azurite with this test's tables and containers, a platform on them and the events it published."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.connection = env["REACTOR_STORAGE_CONNECTION"]
        self.prefix = env["REACTOR_TABLE_PREFIX"]
        self.store = TableStateStore.from_connection(self.connection)
        self.blobs = AzureBlobStore.from_connection(self.connection)
        self.tmp = tmp
        self.data_container = f"{self.prefix}-data"
        self.test_container = f"{self.prefix}-test"
        self.events = PublishedEvents()
        self.platform = self.new_platform(self.events)
        self.blobs.put(self.test_container, "holdout.csv", write_holdout(tmp / "holdout").read_bytes(), "text/csv")

    def new_platform(self, publish: Any, **kwargs: Any) -> LocalMLPlatform:
        return LocalMLPlatform(self.store, self.blobs, publish, prefix=self.prefix, workdir=self.tmp, **kwargs)

    def upload_batches(self, folder: str, *, seed: int, kind: str = "good", files: int = 3) -> list[str]:
        paths = write_batches(self.tmp / f"{kind}-{seed}", files=files, rows=100, seed=seed, kind=kind)
        names = [f"{folder}{p.name}" for p in paths]
        for path, name in zip(paths, names, strict=True):
            self.blobs.put(self.data_container, name, path.read_bytes(), "text/csv")
        return names

    def request(self, job: str, folder: str, min_improvement: float = 0.0) -> RetrainRequest:
        new = DataRef(f"http://azurite/{self.data_container}/{folder}x.csv", "etag", 1, f"event-{job}")
        return RetrainRequest(job, MODEL, BlobFolder(self.data_container, folder), self.test_container, "holdout.csv",
                              "rmse", min_improvement, "data", correlation_id=f"corr-{job}",
                              decision_id=f"dec-{job}", new_data=(new,), tags={"team": "ml"})

    def run(self, request: RetrainRequest) -> Any:
        self.platform.submit_retraining(request)
        return self.platform.wait(request.job_name, timeout=60)


@pytest.fixture
def world(env: dict[str, str], tmp_path: Path) -> World:
    return World(env, tmp_path)


def test_first_job_registers_version_1_and_a_poor_challenger_keeps_it(world: World) -> None:
    world.upload_batches("batches/", seed=1)
    request = world.request("retrain-first", "batches/")
    submitted = world.platform.submit_retraining(request)
    again = world.platform.submit_retraining(request)  # a repeated submit while the job runs
    elsewhere = world.new_platform(PublishedEvents()).submit_retraining(request)  # as another host would
    assert (submitted.name, submitted.status) == ("retrain-first", "queued")
    assert again.name == elsewhere.name == "retrain-first"

    job = world.platform.wait("retrain-first", timeout=60)

    assert (job.status, job.error) == ("completed", "")
    assert job.tags["reactor_registered_version"] == "1"
    assert world.platform.submit_retraining(request).status == "completed"  # after the end: still the same job
    assert world.events.types() == ["ModelRegistered", "RunCompleted"]  # one run, announced once
    registered, completed = world.events.parsed()
    assert isinstance(registered, ModelRegistered)
    assert (registered.model_name, registered.model_version, registered.subject) == (MODEL, "1", f"models/{MODEL}:1")
    assert world.events.raw[0]["data"]["ModelVersion"] == 1  # an integer, as Azure ML sends it
    assert {k: registered.tags[k] for k in (TAG_MODEL, TAG_CORRELATION, TAG_DECISION, "team")} == {
        TAG_MODEL: MODEL, TAG_CORRELATION: "corr-retrain-first", TAG_DECISION: "dec-retrain-first", "team": "ml"}
    assert float(registered.tags["rmse"]) > 0 and registered.properties["rmse"] == registered.tags["rmse"]
    assert isinstance(completed, RunCompleted)
    assert (completed.run_id, completed.run_type) == ("retrain-first", "azureml.PipelineRun")
    assert completed.tags == {**request.lineage_tags(), "reactor_registered_version": "1",
                              "reactor_verdict_reason": completed.tags["reactor_verdict_reason"]}
    assert "no champion to beat" in completed.tags["reactor_verdict_reason"]
    for raw in world.events.raw:
        assert raw["eventTime"].endswith("Z") and raw["topic"].endswith("/workspaces/local")
        assert (raw["dataVersion"], raw["metadataVersion"]) == ("", "1")

    files = world.platform.model_files(MODEL, "1", world.tmp / "v1")
    assert {p.name for p in files.iterdir()} == {"model.pkl", "model.json", "baseline.json", "sample_input.json",
                                                 "registration.json"}
    log_text = world.blobs.get(f"{world.prefix}-models", "jobs/retrain-first/log.txt").decode()
    assert "-m ml.train" in log_text and "-m ml.register" in log_text and job.url.endswith("log.txt")

    # Then poor data arrives: the challenger trains on all of it, loses, and version 1 stays the champion.
    world.upload_batches("batches/", seed=2, kind="poor")
    kept = world.run(world.request("retrain-poor", "batches/"))

    assert (kept.status, kept.error) == ("completed", "")  # a completed run that registered nothing
    assert world.events.types() == ["ModelRegistered", "RunCompleted", "RunCompleted"]
    completed = world.events.parsed()[-1]
    assert isinstance(completed, RunCompleted) and completed.run_id == "retrain-poor"
    assert completed.tags["reactor_champion_kept"] == "true"
    assert completed.tags["reactor_champion_version"] == "1"
    assert "misses the required" in completed.tags["reactor_verdict_reason"]
    assert "reactor_registered_version" not in completed.tags
    assert kept.tags["reactor_champion_kept"] == "true"
    assert [m.version for m in world.platform.list_models(MODEL)] == ["1"]


def test_concurrent_jobs_take_their_own_versions_and_an_unreachable_app_loses_nothing(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.upload_batches("first/", seed=1)
    world.upload_batches("second/", seed=3)
    offline = world.new_platform(PublishedEvents(fail=True))  # a second host that cannot reach the app
    with caplog.at_level(logging.ERROR, logger="reactor.local_ml"):
        # min_improvement -100 %: whichever registers second passes against the first
        world.platform.submit_retraining(world.request("retrain-a", "first/", min_improvement=-1.0))
        offline.submit_retraining(world.request("retrain-b", "second/", min_improvement=-1.0))
        jobs = [world.platform.wait("retrain-a", timeout=60), offline.wait("retrain-b", timeout=60)]

    assert [j.status for j in jobs] == ["completed", "completed"]
    assert sorted(j.tags["reactor_registered_version"] for j in jobs) == ["1", "2"]
    versions = world.platform.list_models(MODEL)
    assert [m.version for m in versions] == ["1", "2"]  # oldest first
    assert versions[0].created_at is not None and versions[1].created_at is not None
    assert versions[0].created_at <= versions[1].created_at
    by_job = {m.properties["job_name"]: m for m in versions}
    assert by_job["retrain-b"].tags[TAG_DECISION] == "dec-retrain-b"
    assert world.platform.get_model(MODEL, by_job["retrain-b"].version) == by_job["retrain-b"]
    assert world.platform.get_model(MODEL, "3") is None
    assert world.platform.get_model(MODEL, "latest") is None
    assert world.platform.list_models("no-such-model") == []
    assert world.events.types() == ["ModelRegistered", "RunCompleted"]  # only the reachable host's
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2, failures  # ModelRegistered, then RunCompleted
    assert all("events could not be published" in m and "retrain-b" in m for m in failures)


def test_a_bad_csv_fails_the_job_naming_the_file(world: World) -> None:
    world.upload_batches("batches/", seed=1)
    good = world.blobs.get(world.data_container, world.upload_batches("batches/", seed=1, files=1)[0]).decode()
    header, first, *rest = good.splitlines()
    broken = "\n".join([header, first, "oops," + first.split(",", 1)[1], *rest]) + "\n"
    world.blobs.put(world.data_container, "batches/broken.csv", broken.encode(), "text/csv")

    job = world.run(world.request("retrain-broken", "batches/"))

    assert job.status == "failed"
    assert f"{world.data_container}/batches/broken.csv: line 3, column age: non-numeric value 'oops'" in job.error
    assert str(world.tmp) not in job.error  # blob locations, not the job's temporary files
    [failed] = world.events.parsed()
    assert isinstance(failed, RunStatusChanged) and failed.failed
    assert (failed.run_id, failed.run_status) == ("retrain-broken", "Failed")
    assert failed.tags == world.request("retrain-broken", "batches/").lineage_tags()
    assert "broken.csv" in failed.properties["reactor_error"]
    log_text = world.blobs.get(f"{world.prefix}-models", "jobs/retrain-broken/log.txt").decode()
    assert "ml.train: error:" in log_text and "exit 1" in log_text
    assert world.platform.list_models(MODEL) == []


# A host (a process of its own) that submits a job, or takes over a dead host's jobs as a platform
# starting up does, and then lives until it is killed. Its "python" may hang, so it is caught
# mid-job; its Event Grid may kill it as it announces an event (``die_on``), so it dies between two
# steps of the job's end. (Its publish stands for the outside world: the app, reached over HTTP.)
_HOST = """
import json, os, signal, sys, time
from core.adapters.blob_store import AzureBlobStore
from core.adapters.local_ml import LocalMLPlatform
from core.adapters.table_store import TableStateStore
from core.ml_platform import RetrainRequest
args = json.loads(sys.argv[1])

def publish(events):
    if args["die_on"] in [e["eventType"].rsplit(".", 1)[-1] for e in events]:
        with open(args["events_file"], "w") as out:
            json.dump(events, out)
        os.kill(os.getpid(), signal.SIGKILL)

platform = LocalMLPlatform(TableStateStore.from_connection(args["connection"]),
                           AzureBlobStore.from_connection(args["connection"]), publish,
                           prefix=args["prefix"], python=args["python"], attempts=args["attempts"])
if args["resume"]:
    platform.start()
else:
    platform.submit_retraining(RetrainRequest.from_json(args["request"]))
time.sleep(120)
"""


class Host:
    """A host process running the local platform, killed (with its steps) as a crash would kill it."""

    def __init__(self, world: World, job: str, *, python: str = sys.executable, resume: bool = False,
                 attempts: int = 3, die_on: str = "") -> None:
        self.events_file = world.tmp / f"events-{job}-{time.monotonic_ns()}.json"
        args = {"connection": world.connection, "prefix": world.prefix, "python": python, "resume": resume,
                "attempts": attempts, "die_on": die_on, "events_file": str(self.events_file),
                "request": world.request(job, "batches/").to_json()}
        self.proc = subprocess.Popen([sys.executable, "-c", _HOST, json.dumps(args)], cwd=ROOT,
                                     start_new_session=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # a host that killed itself is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)  # the host and its step, as a crash would leave them
        self.proc.wait()

    def wait_for_row(self, world: World, job: str, what: str, probe: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            entity = world.store.get(world.platform.jobs_table, JOB_PARTITION, job)
            if entity is not None and probe(entity.props):
                return dict(entity.props)
            assert time.monotonic() < deadline and self.proc.poll() is None, f"the host never {what}"
            time.sleep(0.05)


def hanging_python(world: World) -> str:
    hang = world.tmp / "hanging-python"
    hang.write_text("#!/bin/sh\nexec sleep 120\n")
    hang.chmod(0o755)
    return str(hang)


def job_row(world: World, job: str) -> dict[str, Any]:
    entity = world.store.get(world.platform.jobs_table, JOB_PARTITION, job)
    assert entity is not None
    return dict(entity.props)


@pytest.mark.skipif(sys.platform == "win32", reason="kills a process group")
def test_a_job_of_a_killed_host_is_resumed_by_one_of_two_racing_platforms_and_completes(world: World) -> None:
    world.upload_batches("batches/", seed=1, files=1)
    host = Host(world, "retrain-killed", python=hanging_python(world))

    def in_first_step(props: Any) -> bool:  # running, and its attempt's log started
        return props["status"] == "running" and any(world.blobs.list(f"{world.prefix}-models", "jobs/retrain-killed/"))

    try:
        host.wait_for_row(world, "retrain-killed", "ran the job", in_first_step)
    finally:
        host.kill()

    rival_events = PublishedEvents()
    platforms = [world.platform, world.new_platform(rival_events)]
    start = threading.Barrier(len(platforms))
    seen: dict[int, Any] = {}

    def read(i: int) -> None:
        start.wait()
        seen[i] = platforms[i].get_job("retrain-killed")  # both find the dead host's job at once

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(platforms))]
    for t in readers:
        t.start()
    for t in readers:
        t.join(60)
    resumed = job_row(world, "retrain-killed")
    [winner] = [p for p in platforms if p.instance == resumed["owner_instance"]]
    job = winner.wait("retrain-killed", timeout=120)

    assert all(j is not None and not j.finished for j in seen.values()), seen  # taken over, or being run
    assert (job.status, job.error, job.tags["reactor_registered_version"]) == ("completed", "", "1")
    assert [m.version for m in world.platform.list_models(MODEL)] == ["1"]
    assert resumed["attempt"] == 2 and resumed["resumed_from"].startswith(f"pid {host.proc.pid} ")
    assert resumed["resumed_at"] and resumed["owner_pid"] == os.getpid()
    winner_events, loser_events = ((world.events, rival_events) if winner is world.platform
                                   else (rival_events, world.events))
    assert winner_events.types() == ["ModelRegistered", "RunCompleted"] and loser_events.raw == []
    log_text = world.blobs.get(f"{world.prefix}-models", "jobs/retrain-killed/log.txt").decode()
    assert log_text.count("job retrain-killed: retrain") == 2  # the dead attempt's start, then the resumed run
    assert "--- attempt 2 of at most 3: the previous runner is gone" in log_text


@pytest.mark.skipif(sys.platform == "win32", reason="kills a process group")
def test_a_job_whose_hosts_keep_dying_ends_failed_after_its_attempts(world: World) -> None:
    world.upload_batches("batches/", seed=1, files=1)
    hang = hanging_python(world)
    first = Host(world, "retrain-doomed", python=hang, attempts=2)
    try:
        first.wait_for_row(world, "retrain-doomed", "ran the job", lambda p: p["status"] == "running")
    finally:
        first.kill()
    second = Host(world, "retrain-doomed", python=hang, attempts=2, resume=True)  # a host starting up
    try:
        second.wait_for_row(world, "retrain-doomed", "resumed the job",
                            lambda p: p["status"] == "running" and p["owner_pid"] == second.proc.pid)
    finally:
        second.kill()

    limited = world.new_platform(world.events, attempts=2)
    failed = limited.get_job("retrain-doomed")
    again = world.platform.get_job("retrain-doomed")

    assert failed is not None and failed.status == "failed"
    assert failed.error == (f"{STALE_ERROR}: its process was gone in each of its 2 attempts "
                            "(at most 2, REACTOR_LOCAL_JOB_ATTEMPTS); not resumed again")
    assert again == failed
    [event] = world.events.parsed()
    assert isinstance(event, RunStatusChanged) and event.run_status == "Failed"
    assert (event.run_id, event.properties["reactor_error"]) == ("retrain-doomed", failed.error)
    assert job_row(world, "retrain-doomed")["attempt"] == 2
    assert world.platform.list_models(MODEL) == []


@pytest.mark.skipif(sys.platform == "win32", reason="kills a process group")
def test_a_host_killed_after_registering_is_resumed_without_a_second_version(world: World) -> None:
    world.upload_batches("batches/", seed=1, files=1)
    host = Host(world, "retrain-registered", die_on="ModelRegistered")  # dies as it announces the version
    try:
        assert host.proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        host.kill()
    [lost] = json.loads(host.events_file.read_text())
    assert job_row(world, "retrain-registered")["status"] == "running"
    assert [m.version for m in world.platform.list_models(MODEL)] == ["1"]

    resumed = world.platform.get_job("retrain-registered")
    job = world.platform.wait("retrain-registered", timeout=120)

    assert resumed is not None and resumed.status == "queued"
    assert (job.status, job.tags["reactor_registered_version"]) == ("completed", "1")
    assert [m.version for m in world.platform.list_models(MODEL)] == ["1"]  # no second version
    assert world.events.types() == ["ModelRegistered", "RunCompleted"]
    announced = world.events.raw[0]
    assert announced["id"] == lost["id"]  # the same event again: the app's ledger keeps one of the two
    assert announced["data"] == lost["data"]
    completed = world.events.parsed()[1]
    assert isinstance(completed, RunCompleted) and "no champion to beat" in completed.tags["reactor_verdict_reason"]
    log_text = world.blobs.get(f"{world.prefix}-models", "jobs/retrain-registered/log.txt").decode()
    assert "version 1 was registered by an earlier attempt: announced again, not trained again" in log_text


@pytest.mark.skipif(sys.platform == "win32", reason="kills a process group")
def test_a_last_attempt_killed_after_registering_ends_completed_not_failed(world: World) -> None:
    world.upload_batches("batches/", seed=1, files=1)
    host = Host(world, "retrain-last", die_on="ModelRegistered", attempts=1)  # its only attempt
    try:
        assert host.proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        host.kill()
    limited = world.new_platform(world.events, attempts=1)

    resumed = limited.get_job("retrain-last")
    job = limited.wait("retrain-last", timeout=120)

    assert resumed is not None and resumed.status == "queued", "its attempts are spent, but its version is there"
    assert (job.status, job.error, job.tags["reactor_registered_version"]) == ("completed", "", "1")
    assert [m.version for m in limited.list_models(MODEL)] == ["1"] and world.events.types() == [
        "ModelRegistered", "RunCompleted"]
    log_text = world.blobs.get(f"{world.prefix}-models", "jobs/retrain-last/log.txt").decode()
    assert "--- attempt 2, past its 1: the previous runner is gone after registering the version" in log_text
    assert "version 1 was registered by an earlier attempt: announced again, not trained again" in log_text


def test_a_version_number_reserved_by_a_dead_attempt_is_taken_by_the_resumed_run(world: World) -> None:
    # the state a host leaves when it dies between reserving a version and uploading its files
    world.upload_batches("batches/", seed=1, files=1)
    request = world.request("retrain-reserved", "batches/")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    world.store.insert(world.platform.jobs_table, JOB_PARTITION, request.job_name,
                       {**world.platform._new_job_row(request), "status": "running", "owner_pid": gone.pid,
                        "owner_instance": "gone"})
    world.platform._reserve_version(MODEL, {}, {}, request.job_name)

    assert world.platform.get_job(request.job_name) is not None
    job = world.platform.wait(request.job_name, timeout=120)

    assert (job.status, job.tags["reactor_registered_version"]) == ("completed", "1")
    assert [m.version for m in world.platform.list_models(MODEL)] == ["1"]
    [registered, _] = world.events.parsed()
    assert isinstance(registered, ModelRegistered) and registered.model_version == "1"
    assert registered.tags[TAG_DECISION] == "dec-retrain-reserved"
