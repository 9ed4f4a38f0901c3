"""The retraining policy on fakes of the outside world: storage in memory, a platform that records."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from core.events import parse_event
from core.ledger import Ledger
from core.ml_platform import Job, ModelVersion, RetrainRequest
from core.retrain_policy import parse_policies
from core.retraining import Retraining
from tests.conftest import memory_or_azurite
from tests.fakes import Clock
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


def test_a_start_by_the_timer_between_trigger_and_decision_is_reported_to_the_caller(world) -> None:
    retraining, platform, _clock, _ledger = world
    original = retraining._try_start

    def timer_first(policy, trigger):
        if trigger is not None:
            original(policy, trigger=None)  # the tick wins the race for this window
        return original(policy, trigger)

    retraining._try_start = timer_first
    outcome = retraining.request("diabetes", "now", actor="ops")
    assert outcome["action"] == "started" and outcome["job"] == platform.submits[0].job_name
    assert len(platform.submits) == 1
