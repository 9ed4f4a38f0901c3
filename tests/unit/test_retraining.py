"""The retraining policy on fakes of the outside world: storage in memory, a platform that records."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from core.events import parse_event
from core.ledger import Ledger
from core.ml_platform import Job, ModelVersion, RetrainRequest
from core.retrain_policy import parse_policies
from core.retraining import Retraining
from tests.conftest import memory_or_azurite
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore
from tests.payloads import sample

POLICY = {"diabetes": {"container": "data", "prefix": "diabetes/", "test_container": "data",
                       "test_blob": "holdout/diabetes.csv", "window_seconds": 60, "min_new_files": 2,
                       "min_new_bytes": 0, "cooldown_seconds": 300, "monitors": ["myDriftMonitor"]}}


class RecordingPlatform:
    """A fake Azure ML: records submits; get-or-create by job name, as the port promises."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.submits: list[RetrainRequest] = []
        self.down = False
        self.unreadable: set[str] = set()  # jobs whose GET fails (the platform's API erring on them)

    def submit_retraining(self, request: RetrainRequest) -> Job:
        if self.down:
            raise ConnectionError("platform unreachable")
        self.submits.append(request)
        return self.jobs.setdefault(request.job_name, Job(request.job_name, "running", request.model_name,
                                                          tags=request.lineage_tags()))

    def get_job(self, name: str) -> Job | None:
        if self.down or name in self.unreadable:
            raise ConnectionError("platform unreachable")
        return self.jobs.get(name)

    def get_model(self, name: str, version: str) -> ModelVersion | None:
        return None

    def list_models(self, name: str) -> list[ModelVersion]:
        return []

    def finish(self, name: str, status: str) -> Job:
        job = self.jobs[name]
        self.jobs[name] = Job(job.name, status, job.model_name, tags=job.tags)  # type: ignore[arg-type]
        return self.jobs[name]


@pytest.fixture(params=["memory", "azurite"])
def world(request):
    """The same policy tests on the in-memory fake and on real Table Storage (Azurite)."""
    clock = Clock()
    store, blobs, prefix = memory_or_azurite(request)
    ledger = Ledger(store, blobs, prefix=prefix, container=f"{prefix}-internal", clock=clock, lease_seconds=60)
    platform = RecordingPlatform()
    policies, problems = parse_policies(json.dumps(POLICY))
    assert problems == []
    return Retraining(store, ledger, platform, policies, prefix=prefix, clock=clock), platform, clock, ledger


def blob(name: str = "diabetes/batch.csv", size: int = 100) -> Any:
    raw = sample("BlobCreated")
    raw["subject"] = f"/blobServices/default/containers/data/blobs/{name}"
    raw["data"]["url"] = f"http://127.0.0.1/devstoreaccount1/data/{name}"
    raw["data"]["contentLength"] = size
    return parse_event(raw)


def actions(ledger: Ledger) -> list[str]:
    return [r["action"] for r in ledger.audit_records()]


def test_files_in_a_window_become_one_job(world) -> None:
    retraining, platform, clock, _ledger = world
    events = [blob(f"diabetes/b{i}.csv") for i in range(200)]
    outcomes = [retraining.on_blob_created(e, None) for e in events]
    assert {o["action"] for o in outcomes} == {"coalesced"}
    assert platform.submits == []
    clock.now += timedelta(seconds=61)
    [started] = retraining.tick()
    assert started["action"] == "started" and started["trigger_count"] == 200
    [request] = platform.submits
    assert request.reason == "data" and request.data.prefix == "diabetes/"
    assert len(request.new_data) == 50, "lineage on the job is capped; the audit trail has every trigger"
    assert retraining.tick() == [] and len(platform.submits) == 1


def test_other_containers_and_non_csv_are_ignored(world) -> None:
    retraining, _platform, clock, _ = world
    assert retraining.on_blob_created(blob("other/x.csv"), None)["action"] == "ignored"
    assert retraining.on_blob_created(blob("diabetes/readme.txt"), None)["action"] == "ignored"
    clock.now += timedelta(seconds=120)
    assert retraining.tick() == []


def test_below_threshold_waits_and_says_so_once(world) -> None:
    retraining, platform, clock, ledger = world
    retraining.on_blob_created(blob("diabetes/one.csv"), None)
    clock.now += timedelta(seconds=61)
    assert [o["action"] for o in retraining.tick()] == ["skipped"]
    assert retraining.tick() == []
    retraining.on_blob_created(blob("diabetes/two.csv"), None)
    assert platform.submits and platform.submits[0].reason == "data"
    assert actions(ledger).count("retrain.skipped") == 1


def test_trigger_during_a_running_job_starts_exactly_one_follow_up(world) -> None:
    retraining, platform, clock, ledger = world
    retraining.request("diabetes", "first", actor="ops")
    first = platform.submits[0].job_name
    retraining.on_blob_created(blob("diabetes/late1.csv"), None)
    retraining.on_blob_created(blob("diabetes/late2.csv"), None)
    clock.now += timedelta(seconds=400)
    retraining.tick()
    assert len(platform.submits) == 1, "one job in flight at most"
    platform.finish(first, "completed")
    outcome = retraining.finish_job("diabetes", first, "completed", {})
    assert outcome.action == "completed"
    assert len(platform.submits) == 2 and platform.submits[1].job_name != first
    assert retraining.finish_job("diabetes", first, "completed", {}).action == "ignored", "duplicate outcome"
    assert actions(ledger).count("retrain.queued") == 1


def test_cooldown_defers_data_but_not_a_manual_request(world) -> None:
    retraining, platform, clock, _ledger = world
    retraining.request("diabetes", "first", actor="ops")
    retraining.finish_job("diabetes", platform.submits[0].job_name, "completed", {})
    retraining.on_blob_created(blob("diabetes/a.csv"), None)
    retraining.on_blob_created(blob("diabetes/b.csv"), None)
    clock.now += timedelta(seconds=61)
    assert [o["action"] for o in retraining.tick()] == ["deferred"]
    assert len(platform.submits) == 1
    clock.now += timedelta(seconds=300)
    assert [o["action"] for o in retraining.tick()] == ["started"]
    retraining.finish_job("diabetes", platform.submits[1].job_name, "completed", {})
    assert retraining.request("diabetes", "urgent", actor="ops")["action"] == "started"


def test_drift_starts_at_once_and_respects_in_flight(world) -> None:
    retraining, platform, _clock, _ = world
    drift = parse_event(sample("DatasetDriftDetected"))
    assert retraining.on_drift(drift, None)["action"] == "started"
    assert platform.submits[0].reason == "drift"
    second = parse_event(sample("DatasetDriftDetected"))
    assert retraining.on_drift(second, None)["action"] in ("coalesced", "queued")
    assert len(platform.submits) == 1


def test_monitor_breach_run_event_is_a_drift_trigger(world) -> None:
    retraining, platform, _, _ = world
    raw = sample("RunStatusChanged")
    raw["data"]["experimentName"] = "myDriftMonitor"
    raw["data"]["runTags"] = {"azureml_modelmonitor_threshold_breached": "violated"}
    assert retraining.on_run_event(parse_event(raw), None)["action"] == "started"
    assert platform.submits[0].reason == "drift"


def test_failed_job_releases_the_slot_and_is_recorded(world) -> None:
    retraining, platform, _clock, ledger = world
    retraining.request("diabetes", "try", actor="ops")
    job = platform.submits[0]
    raw = sample("RunStatusChanged")
    raw["data"]["runId"] = job.job_name
    raw["data"]["runTags"] = job.lineage_tags()
    raw["data"]["runStatus"] = "Failed"
    assert retraining.on_run_event(parse_event(raw), None)["action"] == "failed"
    assert retraining.state("diabetes")["in_flight_job"] == ""
    assert "retrain.failed" in actions(ledger)
    assert retraining.request("diabetes", "again", actor="ops")["action"] == "started"


def test_platform_down_then_tick_resubmits_the_same_job(world) -> None:
    retraining, platform, _clock, ledger = world
    platform.down = True
    assert retraining.request("diabetes", "x", actor="ops")["action"] == "started"
    assert "retrain.submit_failed" in actions(ledger)
    platform.down = False
    retraining.tick()
    retraining.tick()
    assert len(platform.jobs) == 1 and retraining.state("diabetes")["submitted"] is True


def test_a_job_the_platform_cannot_read_holds_up_no_other_model(world) -> None:
    retraining, platform, clock, ledger = world
    housing = {**POLICY["diabetes"], "prefix": "housing/", "test_blob": "holdout/housing.csv", "monitors": []}
    policies, problems = parse_policies(json.dumps({**POLICY, "housing": housing}))
    assert problems == []
    retraining.policies = policies
    retraining.request("diabetes", "x", actor="ops")
    platform.unreadable.add(platform.submits[0].job_name)
    for name in ("housing/a.csv", "housing/b.csv"):
        retraining.on_blob_created(blob(name), None)
    clock.now += timedelta(seconds=61)
    assert [(o["action"], o["model"]) for o in retraining.tick()] == [("started", "housing")]
    assert [r.model_name for r in platform.submits] == ["diabetes", "housing"]
    assert actions(ledger).count("retrain.reconcile_failed") == 1
    platform.unreadable.clear()
    platform.finish(platform.submits[0].job_name, "completed")
    retraining.tick()
    assert retraining.state("diabetes")["last_outcome"] == "completed", "looked at again once readable"


def test_lost_outcome_event_is_repaired_by_the_timer(world) -> None:
    retraining, platform, _clock, _ledger = world
    retraining.request("diabetes", "x", actor="ops")
    platform.finish(platform.submits[0].job_name, "completed")
    retraining.tick()
    assert retraining.state("diabetes")["last_outcome"] == "completed"


def test_two_instances_racing_start_one_job(world) -> None:
    retraining, platform, clock, ledger = world
    prefix = ledger.events_table.removesuffix("events")
    twin = Retraining(retraining._store, ledger, platform, retraining.policies, prefix=prefix, clock=clock)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def go(instance: Retraining) -> None:
        barrier.wait()
        results.append(str(instance.request("diabetes", "race", actor="ops")["action"]))

    threads = [threading.Thread(target=go, args=(r,)) for r in (retraining, twin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The loser was coalesced into, queued behind, or told of the winner's job; never a second job.
    assert "started" in results and set(results) <= {"started", "queued", "coalesced"}
    assert len({r.job_name for r in platform.submits}) == 1


def test_policy_problems_are_named() -> None:
    bad = {"m": {"container": "", "window_seconds": -1, "metric": "auc", "surprise": 1}}
    policies, problems = parse_policies(json.dumps(bad))
    assert policies == {}
    text = "\n".join(problems)
    for part in ("m.container", "m.window_seconds", "m.metric", "m.surprise", "m.test_blob"):
        assert part in text
    assert parse_policies("{not json")[1][0].startswith("REACTOR_RETRAIN_POLICIES is not valid JSON")


class FirstReadHeld(MemoryStateStore):
    """Storage whose first read of a table answers only when told: meanwhile more changes queue."""

    def __init__(self, table: str) -> None:
        super().__init__()
        self.table, self.release = table, threading.Event()

    def get(self, table: str, partition: str, row: str) -> Any:
        if table == self.table and not self.release.is_set():
            self.release.wait(10)
        return super().get(table, partition, row)


def test_a_file_whose_window_a_manual_request_in_the_same_write_starts_is_answered_with_that_job() -> None:
    clock = Clock()
    store = FirstReadHeld("tretrain")
    ledger = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=clock, lease_seconds=60)
    platform = RecordingPlatform()
    policies, _ = parse_policies(json.dumps(POLICY))
    retraining = Retraining(store, ledger, platform, policies, prefix="t", clock=clock)
    answers: dict[str, Any] = {}
    calls = {"first": lambda: retraining.on_blob_created(blob("diabetes/1.csv"), None),
             "second": lambda: retraining.on_blob_created(blob("diabetes/2.csv"), None),
             "manual": lambda: retraining.request("diabetes", "now", actor="ops")}
    threads = {name: threading.Thread(target=lambda n=name: answers.update({n: calls[n]()})) for name in calls}
    for name in calls:  # "first" holds the read; "second" and then "manual" queue behind it: one write
        threads[name].start()
        time.sleep(0.2)
    store.release.set()
    for t in threads.values():
        t.join(10)
    assert answers["first"]["action"] == "coalesced", "below the threshold, inside the window: it waits"
    [submit] = platform.submits
    assert answers["manual"]["action"] == "started" and answers["manual"]["job"] == submit.job_name
    # Written alone, before the request, the second file would be "coalesced": this answer needs the shared write.
    assert (answers["second"]["action"], answers["second"]["job"]) == ("started", submit.job_name), \
        "the file's window was started by the request written with it"
    assert answers["second"]["decision_id"] == answers["first"]["decision_id"] == submit.decision_id


def run_event(status: str, tags: dict[str, str], experiment: str = "automl-local-regression") -> Any:
    raw = sample("RunStatusChanged")
    raw["data"].update(runStatus=status, runTags=tags, experimentName=experiment)
    return parse_event(raw)


def drift(name: str) -> Any:
    raw = sample("DatasetDriftDetected")
    raw["data"]["DataDriftName"] = name
    return parse_event(raw)


BREACH = {"azureml_modelmonitor_threshold_breached": "violated"}
NO_WORK = {  # the intake records these in one write, on the triage's word: it must be the handler's answer
    "a blob of another container": lambda r: (r.on_blob_created, blob("other/x.csv")),
    "a blob that is no CSV": lambda r: (r.on_blob_created, blob("diabetes/readme.txt")),
    "drift of an unwatched monitor": lambda r: (r.on_drift, drift("someone-elses-monitor")),
    "a run of another app": lambda r: (r.on_run_event, run_event("Failed", {})),
    "a run of ours, not final": lambda r: (r.on_run_event, run_event("Running", {"reactor_model": "diabetes"})),
    "a breach of an unwatched monitor": lambda r: (r.on_run_event, run_event("Completed", BREACH, "other")),
}
def final_run_of_ours(r: Retraining) -> Any:
    r.request("diabetes", "a job to finish", actor="ops")
    event = run_event("Failed", {"reactor_model": "diabetes"})
    return r.on_run_event, replace(event, run_id=r.state("diabetes")["in_flight_job"])


WORK = {  # (handler, event, the handler's action)
    "new data": lambda r: (r.on_blob_created, blob("diabetes/new.csv"), "coalesced"),
    "drift of a watched monitor": lambda r: (r.on_drift, drift("myDriftMonitor"), "started"),
    "a final run of ours": lambda r: (*final_run_of_ours(r), "failed"),
    "a breach of a watched monitor": lambda r: (r.on_run_event, run_event("Completed", BREACH, "myDriftMonitor"),
                                                "started"),
}


@pytest.mark.parametrize("case", NO_WORK)
def test_the_triage_of_an_event_with_no_work_is_the_handlers_own_answer(world, case: str) -> None:
    retraining, platform, _clock, ledger = world
    handler, event = NO_WORK[case](retraining)
    triage = retraining.ignored(event)
    assert triage is not None and triage["action"] == "ignored"
    assert handler(event, None) == triage
    assert platform.submits == [] and actions(ledger) == [] and retraining.state("diabetes")["pending_total"] == 0


@pytest.mark.parametrize("case", WORK)
def test_the_triage_leaves_events_with_work_to_the_handler(world, case: str) -> None:
    retraining, _platform, _clock, _ledger = world
    handler, event, action = WORK[case](retraining)
    assert retraining.ignored(event) is None
    assert handler(event, None)["action"] == action


def test_a_change_by_another_instance_is_never_lost_behind_this_ones_copy(world) -> None:
    """Each instance keeps the state it last wrote in place of a read: a stale copy must cost a
    failed conditional write and a fresh read, never another instance's change."""
    retraining, platform, clock, ledger = world
    prefix = ledger.events_table.removesuffix("events")
    twin = Retraining(retraining._store, ledger, platform, retraining.policies, prefix=prefix, clock=clock)
    retraining.on_blob_created(blob("diabetes/a.csv"), None)
    twin.on_blob_created(blob("diabetes/b.csv"), None)
    retraining.on_blob_created(blob("diabetes/c.csv"), None)  # on a copy that has not seen b
    assert retraining.state("diabetes")["pending_files"] == 3


def test_the_timer_sees_a_window_another_instance_opened(world) -> None:
    """A tick decides nothing on this instance's copy: it would write nothing to confirm it."""
    retraining, platform, clock, ledger = world
    prefix = ledger.events_table.removesuffix("events")
    twin = Retraining(retraining._store, ledger, platform, retraining.policies, prefix=prefix, clock=clock)
    retraining.request("diabetes", "first", actor="ops")
    retraining.finish_job("diabetes", platform.submits[0].job_name, "completed", {})  # its copy: no window
    twin.on_blob_created(blob("diabetes/a.csv"), None)
    twin.on_blob_created(blob("diabetes/b.csv"), None)
    clock.now += timedelta(seconds=400)  # past the window and the cooldown
    [started] = retraining.tick()
    assert started["action"] == "started" and started["files"] == 2
