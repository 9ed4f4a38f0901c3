"""The local ML platform's bookkeeping on in-memory storage: who may declare a job dead, and
version numbers taken under contention. (Training and events end to end: tests/integration.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from core.adapters.local_ml import JOB_PARTITION, STALE_ERROR, LocalMLPlatform
from core.events import RunStatusChanged, parse_event
from core.ml_platform import BlobFolder, RetrainRequest
from tests.fakes import MemoryBlobStore, MemoryStateStore

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


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def running_job(store: MemoryStateStore, platform: LocalMLPlatform, *, pid: int, instance: str) -> None:
    """A job row as a host leaves it when it dies mid-job."""
    row = {**platform._new_job_row(request()), "status": "running", "owner_pid": pid, "owner_instance": instance}
    store.insert(platform.jobs_table, JOB_PARTITION, "retrain-x", row)


def platform_on(store: MemoryStateStore, published: list[dict[str, Any]]) -> LocalMLPlatform:
    return LocalMLPlatform(store, MemoryBlobStore(), published.extend, prefix=PREFIX)


def test_of_two_readers_of_a_dead_hosts_job_only_one_announces_the_failure() -> None:
    store = RacingStore()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    platform, rival = platform_on(store, ours), platform_on(store, theirs)
    running_job(store, platform, pid=dead_pid(), instance="gone")
    store.before_write = lambda: rival.get_job("retrain-x")  # the rival reads and wins between our read and write

    job = platform.get_job("retrain-x")

    assert job is not None and (job.status, job.error) == ("failed", STALE_ERROR)
    assert ours == []
    [event] = [parse_event(e) for e in theirs]
    assert isinstance(event, RunStatusChanged) and event.failed and event.run_id == "retrain-x"
    assert event.tags == request().lineage_tags()
    assert platform.get_job("retrain-x") == job and ours == []  # read again: nothing new announced


def test_a_job_left_by_an_earlier_process_with_our_pid_is_failed() -> None:
    # a restarted container often gets the same pid; the instance id tells the two processes apart
    store, published = MemoryStateStore(), list[dict[str, Any]]()
    platform = platform_on(store, published)
    running_job(store, platform, pid=os.getpid(), instance="from-before-the-restart")

    job = platform.get_job("retrain-x")

    assert job is not None and job.status == "failed"
    assert [e["data"]["runStatus"] for e in published] == ["Failed"]


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
    assert published == []


def test_a_version_taken_between_read_and_insert_is_skipped() -> None:
    store, published = RacingStore(), list[dict[str, Any]]()
    platform, rival = platform_on(store, published), platform_on(store, published)
    store.before_write = lambda: rival._reserve_version("diabetes", {}, {}, "rival-job")

    version, _ = platform._reserve_version("diabetes", {"k": "v"}, {}, "our-job")

    assert version == 2
    assert platform.list_models("diabetes") == []  # reserved, not registered: no files yet, so not listed


def test_a_job_name_that_cannot_be_a_row_key_or_blob_path_is_refused() -> None:
    platform = platform_on(MemoryStateStore(), [])
    with pytest.raises(ValueError, match="invalid job name"):
        platform.submit_retraining(request("retrain/../x"))
