"""The local ML platform's bookkeeping on in-memory storage: who resumes a dead host's job (one
taker, a bounded number of attempts), what start-up resumes, and version numbers taken under
contention or again by a resumed job. (Training and events end to end: tests/integration.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from core.adapters.local_ml import JOB_PARTITION, STALE_ERROR, LocalMLPlatform
from core.events import RunStatusChanged, parse_event
from core.ml_platform import BlobFolder, DataRef, RetrainRequest
from tests.fakes import MemoryBlobStore, MemoryStateStore
from tests.waiting import wait_for

PREFIX = "unit"


class RacingStore(MemoryStateStore):
    """Runs a rival's step just before the next write: a race between two readers, made deterministic."""

    def __init__(self) -> None:
        super().__init__()
        self.before_write: Callable[[], object] | None = None

    def _rival(self) -> None:
        rival, self.before_write = self.before_write, None
        if rival is not None:
            rival()

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        self._rival()
        return super().update(table, partition, row, props, etag)

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        self._rival()
        return super().insert(table, partition, row, props)


def request(job: str = "retrain-x") -> RetrainRequest:
    return RetrainRequest(job, "diabetes", BlobFolder("data", "diabetes/"), "data", "holdout.csv", "rmse", 0.0,
                          "data", correlation_id="c1", decision_id="d1")


# What a resumed job of these tests does: the pipeline's first step finds no data (no training here).
NO_DATA = "no CSV files under data/diabetes/"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def running_job(store: MemoryStateStore, platform: LocalMLPlatform, *, pid: int, instance: str,
                job: str = "retrain-x", status: str = "running", **changes: Any) -> None:
    """A job row as a host leaves it when it dies mid-job."""
    row = {**platform._new_job_row(request(job)), "status": status, "owner_pid": pid, "owner_instance": instance,
           **changes}
    store.insert(platform.jobs_table, JOB_PARTITION, job, row)


def platform_on(store: MemoryStateStore, published: list[dict[str, Any]], attempts: int = 3,
                blobs: MemoryBlobStore | None = None) -> LocalMLPlatform:
    return LocalMLPlatform(store, blobs or MemoryBlobStore(), published.extend, prefix=PREFIX, attempts=attempts)


def row(store: MemoryStateStore, platform: LocalMLPlatform, job: str = "retrain-x") -> Mapping[str, Any]:
    entity = store.get(platform.jobs_table, JOB_PARTITION, job)
    assert entity is not None
    return entity.props


def failures(published: list[dict[str, Any]]) -> list[str]:
    events = [parse_event(e) for e in published]
    assert all(isinstance(e, RunStatusChanged) and e.failed for e in events), events
    return [e.properties["reactor_error"] for e in events if isinstance(e, RunStatusChanged)]


def test_a_request_survives_its_round_trip_through_a_row() -> None:
    full = RetrainRequest("retrain-y", "diabetes", BlobFolder("data", "diabetes/"), "data", "holdout.csv", "mae",
                          0.05, "manual", correlation_id="c", decision_id="d",
                          new_data=(DataRef("http://a/data/diabetes/x.csv", '"0x1"', 10, "ev-1"),),
                          tags={"reactor_requested_by": "ana"})
    assert RetrainRequest.from_json(full.to_json()) == full


def test_of_two_readers_of_a_dead_hosts_job_only_one_resumes_it() -> None:
    store = RacingStore()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    platform, rival = platform_on(store, ours), platform_on(store, theirs)
    gone = dead_pid()
    running_job(store, platform, pid=gone, instance="gone")
    store.before_write = lambda: rival.get_job("retrain-x")  # the rival reads and wins between our read and write

    job = platform.get_job("retrain-x")
    ended = rival.wait("retrain-x", timeout=60)

    assert job is not None and job.name == "retrain-x"  # what is stored: the rival's job, not ours
    assert (ended.status, ended.error) == ("failed", NO_DATA)  # the rival ran it again, from the start
    props = row(store, platform)
    assert (props["owner_instance"], props["attempt"]) == (rival.instance, 2)
    assert props["resumed_from"] == f"pid {gone} instance gone" and props["resumed_at"]
    assert ours == [] and failures(theirs) == [NO_DATA]  # one run, announced once, by its runner
    assert platform.get_job("retrain-x") == ended and ours == []


def test_a_job_left_by_an_earlier_process_with_our_pid_is_resumed() -> None:
    # a restarted container often gets the same pid; the instance id tells the two processes apart
    store, blobs, published = MemoryStateStore(), MemoryBlobStore(), list[dict[str, Any]]()
    platform = platform_on(store, published, blobs=blobs)
    running_job(store, platform, pid=os.getpid(), instance="from-before-the-restart")

    job = platform.get_job("retrain-x")
    ended = platform.wait("retrain-x", timeout=60)

    assert job is not None and job.status == "queued"
    assert ended.status == "failed" and failures(published) == [NO_DATA]
    assert (row(store, platform)["owner_instance"], row(store, platform)["attempt"]) == (platform.instance, 2)
    log_text = blobs.get(platform.container, "jobs/retrain-x/log.txt").decode()
    assert "--- attempt 2 of at most 3: the previous runner is gone" in log_text


def test_a_job_of_a_live_host_is_left_running() -> None:
    store, published = MemoryStateStore(), list[dict[str, Any]]()
    platform = platform_on(store, published)
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running_job(store, platform, pid=host.pid, instance="another-host")
        job = platform.get_job("retrain-x")
    finally:
        host.kill()
        host.wait()

    assert job is not None and job.status == "running"
    assert published == [] and row(store, platform)["attempt"] == 1


def test_a_job_whose_attempts_are_spent_ends_failed_naming_them() -> None:
    store = RacingStore()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    platform, rival = platform_on(store, ours, attempts=2), platform_on(store, theirs, attempts=2)
    running_job(store, platform, pid=dead_pid(), instance="gone", attempt=2)
    store.before_write = lambda: rival.get_job("retrain-x")  # the rival reads too, and wins

    job = platform.get_job("retrain-x")

    assert job is not None and job.status == "failed"
    assert job.error.startswith(STALE_ERROR) and "in each of its 2 attempts (at most 2" in job.error
    assert "not resumed again" in job.error
    assert ours == [] and failures(theirs) == [job.error]  # the failure is announced once, by the winner
    assert row(store, platform)["attempt"] == 2  # failed, not taken over


def test_one_attempt_means_a_dead_hosts_job_is_failed_at_once() -> None:
    store, published = MemoryStateStore(), list[dict[str, Any]]()
    platform = platform_on(store, published, attempts=1)
    running_job(store, platform, pid=dead_pid(), instance="gone")

    job = platform.get_job("retrain-x")

    assert job is not None and job.status == "failed" and "each of its 1 attempts (at most 1" in job.error
    assert failures(published) == [job.error]
    assert platform.get_job("retrain-x") == job and len(published) == 1


def test_a_row_that_keeps_no_request_is_failed_not_resumed() -> None:
    # rows written before jobs kept their request: nothing to run again with
    store, published = MemoryStateStore(), list[dict[str, Any]]()
    platform = platform_on(store, published)
    running_job(store, platform, pid=dead_pid(), instance="gone", request="")

    job = platform.get_job("retrain-x")

    assert job is not None and job.status == "failed"
    assert job.error == f"{STALE_ERROR}, and its row keeps no request to run it again"
    assert failures(published) == [job.error]


def test_start_up_resumes_the_jobs_earlier_processes_left() -> None:
    store, published = MemoryStateStore(), list[dict[str, Any]]()
    platform = platform_on(store, published)
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running_job(store, platform, pid=dead_pid(), instance="gone", job="retrain-dead", status="queued")
        running_job(store, platform, pid=host.pid, instance="alive", job="retrain-alive")
        running_job(store, platform, pid=dead_pid(), instance="gone", job="retrain-done", status="completed")

        assert platform.start() is platform
        wait_for("the dead host's job to be taken over", lambda: row(store, platform, "retrain-dead")["attempt"] == 2)
        ended = platform.wait("retrain-dead", timeout=60)
        alive = row(store, platform, "retrain-alive")
    finally:
        host.kill()
        host.wait()

    assert ended.status == "failed" and failures(published) == [NO_DATA]
    assert (alive["status"], alive["attempt"]) == ("running", 1)
    assert row(store, platform, "retrain-done")["attempt"] == 1


def test_a_version_number_a_dead_attempt_reserved_is_reused() -> None:
    store, published = MemoryStateStore(), list[dict[str, Any]]()
    platform = platform_on(store, published)
    first, _, taken = platform._reserve_version("diabetes", {"try": "1"}, {}, "retrain-x")  # then its host died

    again, _, retaken = platform._reserve_version("diabetes", {"try": "2"}, {}, "retrain-x")
    other, _, _ = platform._reserve_version("diabetes", {}, {}, "retrain-other")

    assert (first, again, other) == (1, 1, 2)
    assert retaken == taken  # the version was created when its number was taken, not at the retry
    reserved = store.get(platform.models_table, "diabetes", "0000000001")
    assert reserved is not None and reserved.props["tags"] == '{"try": "2"}'


def test_a_version_taken_between_read_and_insert_is_skipped() -> None:
    store, published = RacingStore(), list[dict[str, Any]]()
    platform, rival = platform_on(store, published), platform_on(store, published)
    store.before_write = lambda: rival._reserve_version("diabetes", {}, {}, "rival-job")

    version, _, _ = platform._reserve_version("diabetes", {"k": "v"}, {}, "our-job")

    assert version == 2
    assert platform.list_models("diabetes") == []  # reserved, not registered: no files yet, so not listed


def test_a_job_name_that_cannot_be_a_row_key_or_blob_path_is_refused() -> None:
    platform = platform_on(MemoryStateStore(), [])
    with pytest.raises(ValueError, match="invalid job name"):
        platform.submit_retraining(request("retrain/../x"))
