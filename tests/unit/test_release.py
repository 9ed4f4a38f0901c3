"""The release state machine on fakes of the outside world: storage in memory (and Azurite), and
online endpoints that behave as Azure ML's do (deployments come up after a few polls, traffic must
name succeeded deployments, a deployment with traffic cannot be deleted)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.errors import PreconditionFailed
from core.events import parse_event
from core.ledger import Ledger
from core.release.policy import parse_release_policies
from core.release.service import Conflict, Forbidden, NotFound, Releases, deployment_name
from core.release.store import ReleaseStore
from tests.conftest import memory_or_azurite
from tests.fakes import Clock, FakeServing, MemoryBlobStore, MemoryStateStore
from tests.payloads import sample

MODEL = "diabetes"
POLICY: dict[str, Any] = {
    "qa_endpoint": "diabetes-qa", "prod_endpoint": "diabetes-prod", "match_tags": {"stage": "candidate"},
    "approval": "manual", "approval_timeout_minutes": 60, "smoke": {"requests": 5, "p95_ms": 200},
    "canary": {"steps": [10, 50, 100], "step_seconds": 30, "max_error_rate": 0.05, "max_p95_ms": 300,
               "min_requests": 10}, "retention": 1}


class World:
    def __init__(self, store: Any, blobs: Any, policy: dict[str, Any] | None = None, prefix: str = "t") -> None:
        self.clock = Clock()
        self.serving = FakeServing(ready_after=2)
        self.incidents: list[tuple[str, dict[str, str], bool, str]] = []
        self.ledger = Ledger(store, blobs, prefix=prefix, container=f"{prefix.lower()}-internal", clock=self.clock,
                             lease_seconds=60)
        policies, problems = parse_release_policies(json.dumps({MODEL: policy or POLICY}))
        assert not problems
        self.releases = Releases(ReleaseStore(store, prefix), self.ledger, self.serving, policies, clock=self.clock,
                                 incident=lambda *a: self.incidents.append(a))

    def register(self, version: str, tags: dict[str, str] | None = None, event_id: str = "") -> dict[str, Any]:
        raw = sample("ModelRegistered")
        raw["id"] = event_id or raw["id"]
        raw["data"].update(ModelName=MODEL, ModelVersion=version, ModelTags=tags or {"stage": "candidate"})
        return dict(self.releases.on_model_registered(parse_event(raw), None))

    def state(self, version: str) -> str:
        return self.releases.get(f"{MODEL}:{version}").state

    def pass_time(self, seconds: float, ticks: int = 1) -> None:
        for _ in range(ticks):
            self.clock.now += timedelta(seconds=seconds / ticks)
            self.releases.tick()

    def to_approval(self, version: str) -> None:
        self.register(version)
        for _ in range(5):
            self.pass_time(1)
        assert self.state(version) == "awaiting_approval"

    def to_production(self, version: str) -> None:
        self.to_approval(version)
        self.releases.approve(f"{MODEL}:{version}", "lead", ["approver"])
        for _ in range(5):
            self.serving.served[deployment_name(MODEL, version)] = (50, 0, 20.0)
            self.pass_time(31)
        assert self.state(version) == "promoted", self.releases.get(f"{MODEL}:{version}").timeline

    def traffic(self) -> dict[str, int]:
        return dict(self.serving.endpoints["diabetes-prod"].traffic)

    def audit(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.ledger.audit_records() if r["action"] == action]


@pytest.fixture(params=["memory", "azurite"])
def world(request: pytest.FixtureRequest) -> World:
    store, blobs, prefix = memory_or_azurite(request)
    return World(store, blobs, prefix=prefix)


def test_happy_path_qa_smoke_approval_canary_promotion(world: World) -> None:
    world.to_approval("1")
    r = world.releases.get("diabetes:1")
    assert r.deployment == "diabetes-v1"
    assert world.serving.endpoints["diabetes-qa"].traffic == {"diabetes-v1": 100}
    smoke = world.audit("release.smoke")[-1]["detail"]
    assert smoke["passed"] and smoke["requests"] == 5 and smoke["p95_ms"] == 4.0
    world.releases.approve("diabetes:1", "lead", ["approver"])
    assert world.state("1") in ("prod_deploying", "canary")
    world.serving.served["diabetes-v1"] = (40, 0, 25.0)
    world.pass_time(1, ticks=2)
    assert world.state("1") == "canary" and world.traffic() == {"diabetes-v1": 100}
    world.pass_time(31)
    assert world.state("1") == "promoted"
    assert world.traffic() == {"diabetes-v1": 100}  # first version: no previous, straight to 100 %
    facts = world.releases.store.facts(MODEL).value
    assert (facts.champion_version, facts.lock) == ("1", "")
    assert world.releases.get("diabetes:1").decided_by == "lead"


def test_second_version_goes_through_each_canary_step(world: World) -> None:
    world.to_production("1")
    world.to_approval("2")
    world.releases.approve("diabetes:2", "lead", ["approver"])
    seen = []
    for _ in range(12):
        world.serving.served["diabetes-v2"] = (50, 0, 30.0)
        world.pass_time(16)
        seen.append(world.traffic())
    assert {"diabetes-v2": 10, "diabetes-v1": 90} in seen and {"diabetes-v2": 50, "diabetes-v1": 50} in seen
    assert world.state("2") == "promoted" and world.traffic() == {"diabetes-v2": 100}
    assert ("diabetes-prod", "diabetes-v1", 1) in world.serving.scale_calls  # kept for rollback, scaled down
    facts = world.releases.store.facts(MODEL).value
    assert (facts.champion_version, facts.previous_deployment, facts.previous_version) == ("2", "diabetes-v1", "1")


def test_retention_deletes_deployments_older_than_the_previous(world: World) -> None:
    for version in ("1", "2", "3"):
        world.to_production(version)
    names = {d.name for d in world.serving.list_deployments("diabetes-prod")}
    assert names == {"diabetes-v3", "diabetes-v2"}
    assert {d.name for d in world.serving.list_deployments("diabetes-qa")} == {"diabetes-v3"}


def test_failing_smoke_test_fails_qa_and_never_touches_production(world: World) -> None:
    world.serving.faults["diabetes-v1"] = "error"
    world.register("1")
    world.pass_time(1, ticks=4)
    r = world.releases.get("diabetes:1")
    assert r.state == "qa_failed" and "5 of 5 smoke requests failed" in r.reason and "HTTP 500" in r.reason
    assert "diabetes-prod" not in world.serving.endpoints
    assert ("diabetes-qa", "diabetes-v1") not in world.serving.deployments  # no traffic: deleted
    labels = {"model": MODEL, "endpoint": "diabetes-prod", "severity": "error"}
    assert world.incidents[-1][:3] == ("ReleaseFailed", labels, True)


def test_slow_smoke_test_fails_on_p95(world: World) -> None:
    world.serving.faults["diabetes-v1"] = "slow:900"
    world.register("1")
    world.pass_time(1, ticks=4)
    assert "p95 latency 900 ms is above 200 ms" in world.releases.get("diabetes:1").reason


def test_failed_qa_deployment(world: World) -> None:
    world.serving.fail_deploy["diabetes-v1"] = "ImageBuildFailure: conda"
    world.register("1")
    world.pass_time(1, ticks=3)
    r = world.releases.get("diabetes:1")
    assert r.state == "qa_failed" and "ImageBuildFailure" in r.reason


def test_canary_health_failure_rolls_back_to_the_previous_deployment(world: World) -> None:
    world.to_production("1")
    world.to_approval("2")
    world.releases.approve("diabetes:2", "lead", ["approver"])
    world.pass_time(1, ticks=2)
    assert world.traffic() == {"diabetes-v2": 10, "diabetes-v1": 90}
    world.serving.served["diabetes-v2"] = (40, 12, 30.0)
    world.pass_time(5)  # bad before the step ends: no need to wait for it
    r = world.releases.get("diabetes:2")
    assert r.state == "rolled_back" and "error rate 30.0% above 5.0%" in r.reason
    assert world.traffic() == {"diabetes-v1": 100}
    assert world.releases.store.facts(MODEL).value.lock == ""
    labels = {"model": MODEL, "endpoint": "diabetes-prod", "severity": "critical"}
    assert world.incidents[-1][:3] == ("ReleaseRolledBack", labels, True)
    assert world.audit("release.health")[-1]["detail"]["outcome"] == "bad"


def test_failed_production_deployment_rolls_back_without_touching_traffic(world: World) -> None:
    world.to_production("1")
    world.to_approval("2")
    world.serving.fail_deploy["diabetes-v2"] = "OutOfQuota"  # the QA one is up; production's fails
    world.releases.approve("diabetes:2", "lead", ["approver"])
    world.pass_time(1, ticks=3)
    r = world.releases.get("diabetes:2")
    assert r.state == "rolled_back" and "OutOfQuota" in r.reason
    assert world.traffic() == {"diabetes-v1": 100}
    assert world.releases.store.facts(MODEL).value.lock == ""


def test_manual_approval_needs_the_approver_role_and_separation_of_duties(world: World) -> None:
    world.register("1", {"stage": "candidate", "reactor_requested_by": "key:alice"})
    world.pass_time(1, ticks=4)
    with pytest.raises(Forbidden):
        world.releases.approve("diabetes:1", "key:bob", ["operator"])
    with pytest.raises(Forbidden, match="separation of duties"):
        world.releases.approve("diabetes:1", "key:alice", ["approver"])
    assert world.state("1") == "awaiting_approval"
    world.releases.approve("diabetes:1", "key:bob", ["approver"])
    with pytest.raises(Conflict):
        world.releases.approve("diabetes:1", "key:bob", ["approver"])  # approving twice is not two releases
    with pytest.raises(NotFound):
        world.releases.approve("diabetes:9", "key:bob", ["approver"])


def test_reject_and_expiry(world: World) -> None:
    world.to_approval("1")
    world.releases.reject("diabetes:1", "lead", ["approver"], "metrics look off")
    r = world.releases.get("diabetes:1")
    assert (r.state, r.reason, r.decided_by) == ("rejected", "metrics look off", "lead")
    world.to_approval("2")
    world.pass_time(61 * 60)
    assert world.state("2") == "expired"
    assert world.incidents[-1][0] == "ReleaseApprovalExpired"


def test_auto_approval_policy() -> None:
    w = World(MemoryStateStore(), MemoryBlobStore(), {**POLICY, "approval": "auto"})
    w.register("1")
    w.pass_time(1, ticks=4)
    r = w.releases.get("diabetes:1")
    assert r.decided_by == "policy:auto" and r.state in ("prod_deploying", "canary", "promoted")


def test_filters_duplicates_and_unknown_models(world: World) -> None:
    assert world.register("1", {"stage": "experiment"})["action"] == "skipped"
    first = world.register("2", event_id="same")
    again = world.register("2", event_id="same")
    assert (first["action"], again["action"]) == ("release_created", "release_exists")
    assert len(world.releases.find(MODEL)) == 1
    assert sum(1 for c in world.serving.calls if c == ("deploy", "diabetes-qa", "diabetes-v2")) == 1
    raw = sample("ModelRegistered")
    assert world.releases.on_model_registered(parse_event(raw), None)["action"] == "ignored"


def test_model_deployed_confirms_ours_and_ignores_others(world: World) -> None:
    world.register("1")
    foreign = parse_event(sample("ModelDeployed"))
    ignored = world.releases.on_model_deployed(foreign, None)
    assert ignored["action"] == "ignored" and ignored["endpoint"] == "my-sklearn-service"
    assert "not started by a release" in ignored["reason"]
    raw = sample("ModelDeployed")
    raw["data"].update(ServiceName="diabetes-qa", ModelIds="diabetes:1",
                       ServiceTags={"reactor_release": "diabetes:1"})
    world.serving.get_deployment("diabetes-qa", "diabetes-v1")  # the platform has it up by now
    out = world.releases.on_model_deployed(parse_event(raw), None)
    assert out["action"] == "deployment_confirmed" and out["state"] == "awaiting_approval"


def test_newer_version_in_production_supersedes_an_older_approval(world: World) -> None:
    world.to_approval("1")
    world.to_production("2")
    world.releases.approve("diabetes:1", "lead", ["approver"])
    assert world.state("1") == "superseded" and world.traffic() == {"diabetes-v2": 100}


def test_one_release_holds_production_at_a_time(world: World) -> None:
    world.to_production("1")
    world.to_approval("2")
    world.to_approval("3")
    world.releases.approve("diabetes:2", "lead", ["approver"])
    world.releases.approve("diabetes:3", "lead", ["approver"])
    world.pass_time(1, ticks=2)
    assert world.state("3") == "approved" and world.state("2") == "canary"
    assert world.audit("release.waiting")
    for _ in range(20):
        world.serving.served["diabetes-v2"] = world.serving.served["diabetes-v3"] = (50, 0, 30.0)
        world.pass_time(16)
    assert world.state("2") == "promoted" and world.state("3") == "promoted"
    assert world.traffic() == {"diabetes-v3": 100}


def test_manual_rollback_of_the_champion_and_during_a_canary(world: World) -> None:
    with pytest.raises(NotFound):
        world.releases.rollback("other", "ops", ["operator"], "why")
    world.to_production("1")
    with pytest.raises(Conflict, match="no previous"):
        world.releases.rollback(MODEL, "ops", ["operator"], "bad")
    world.to_production("2")
    with pytest.raises(Forbidden):
        world.releases.rollback(MODEL, "viewer", [], "bad")
    out = world.releases.rollback(MODEL, "ops", ["operator"], "customers complain")
    assert out["to"] == "diabetes-v1" and world.traffic() == {"diabetes-v1": 100}
    assert world.state("2") == "rolled_back"
    assert world.releases.store.facts(MODEL).value.champion_version == "1"
    world.to_approval("3")
    world.releases.approve("diabetes:3", "lead", ["approver"])
    world.pass_time(1, ticks=2)
    assert world.traffic() == {"diabetes-v3": 10, "diabetes-v1": 90}
    out = world.releases.rollback(MODEL, "alerting", None, "alert LatencyHigh firing")
    assert out["release"] == "diabetes:3" and world.traffic() == {"diabetes-v1": 100}
    assert world.state("3") == "rolled_back"


def test_a_step_repeated_after_a_lost_write_does_no_harm(world: World) -> None:
    """A host that dies after a side effect but before recording it: the lease runs out and the
    step is repeated by the next tick; deploy and traffic calls are idempotent."""
    store = world.releases.store
    real_update = store.update
    calls = {"n": 0}

    def dying_update(release: Any, etag: str) -> str:
        calls["n"] += 1
        if release.state == "canary" and release.lease_until != "" and calls["n"] < 1000:
            calls["n"] = 1000
            raise PreconditionFailed("host killed before the write")
        return real_update(release, etag)

    world.to_production("1")
    world.to_approval("2")
    store.update = dying_update  # type: ignore[method-assign]
    world.releases.approve("diabetes:2", "lead", ["approver"])
    store.update = real_update  # type: ignore[method-assign]
    assert world.state("2") == "prod_deploying"
    world.pass_time(61)  # the dead instance's lease runs out
    world.pass_time(1)
    assert world.state("2") == "canary" and world.traffic() == {"diabetes-v2": 10, "diabetes-v1": 90}
    for _ in range(8):
        world.serving.served["diabetes-v2"] = (50, 0, 30.0)
        world.pass_time(31)
    assert world.state("2") == "promoted" and world.traffic() == {"diabetes-v2": 100}
    assert [a["detail"]["release"] for a in world.audit("release.promoted")].count("diabetes:2") == 1


def test_a_step_that_outlasts_its_lease_gives_way_to_the_new_holder(world: World) -> None:
    """A platform slower than the lease: another instance's timer takes the release over mid-step
    and does the step. The first advance must stand down quietly: from an event handler, an error
    would dead-letter the event."""
    real_deploy = world.serving.deploy

    def slow_deploy(spec: Any) -> Any:
        world.serving.deploy = real_deploy  # type: ignore[method-assign]
        world.clock.now += timedelta(seconds=121)  # past the 120 s lease
        world.releases.tick()
        return real_deploy(spec)

    world.serving.deploy = slow_deploy  # type: ignore[method-assign]
    assert world.register("1") == {"action": "release_created", "release": "diabetes:1", "state": "qa_deploying"}
    assert len(world.audit("release.qa_deploying")) == 1, "the step is recorded once, by its new holder"
    world.pass_time(1, ticks=4)
    assert world.state("1") == "awaiting_approval"


def test_deployment_environment_comes_from_the_model_property(world: World) -> None:
    raw = sample("ModelRegistered")
    raw["data"].update(ModelName=MODEL, ModelVersion="1", ModelTags={"stage": "candidate"},
                       ModelProperties={"deployment_env": json.dumps({"WORKERS": "2", "bad key": "x"})})
    world.releases.on_model_registered(parse_event(raw), None)
    assert json.loads(world.releases.get("diabetes:1").environment) == {"WORKERS": "2"}


def registered(model: str, tags: dict[str, str]) -> Any:
    raw = sample("ModelRegistered")
    raw["data"].update(ModelName=model, ModelVersion="3", ModelTags=tags)
    return parse_event(raw)


def deployed(tags: dict[str, str]) -> Any:
    raw = sample("ModelDeployed")
    raw["data"].update(ServiceName="diabetes-qa", ModelIds="diabetes:9", ServiceTags=tags)
    return parse_event(raw)


@pytest.mark.parametrize(("case", "event"), [
    ("a model with no release policy", registered("someone-elses", {"stage": "candidate"})),
    ("a version whose tags do not match", registered(MODEL, {"stage": "experiment"})),
    ("a deployment with no release tag", deployed({})),
    ("a deployment whose release tag is no release id", deployed({"reactor_release": "no-colon"})),
])
def test_the_triage_of_an_event_no_release_is_concerned_by_is_the_handlers_answer(
        world: World, case: str, event: Any) -> None:
    """The intake records these in one write, on the triage's word."""
    triage = world.releases.ignored(event)
    handler = world.releases.on_model_registered if event.type.endswith("Registered") \
        else world.releases.on_model_deployed
    assert triage is not None and handler(event, None) == triage
    assert world.serving.calls == [] and world.releases.find(MODEL) == [] and world.ledger.audit_records() == []


def test_the_triage_leaves_events_with_work_to_the_handlers(world: World) -> None:
    assert world.releases.ignored(registered(MODEL, {"stage": "candidate"})) is None
    unknown = deployed({"reactor_release": "diabetes:9"})  # a release id: the store must be asked
    assert world.releases.ignored(unknown) is None
    assert world.releases.on_model_deployed(unknown, None)["action"] == "ignored"
