"""A failed or canceled retraining job is an incident through the real alerting service (grouped,
deduplicated, notified, audited), and the model's next completed job resolves it; on the in-memory
fake and on Azurite."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.alerting import Alerting
from core.alerting.rules import parse_alerting
from core.alerting.sources import MemorySource
from core.events import parse_event
from core.ledger import Ledger
from core.retrain_policy import parse_policies
from core.retraining import Retraining
from tests.alerting.kit import RecordingSink
from tests.conftest import memory_or_azurite
from tests.fakes import Clock
from tests.payloads import sample
from tests.unit.test_retraining import POLICY, RecordingPlatform


class Crash(BaseException):
    """A process dying: not an Exception, so nothing in the service catches it."""


class World:
    def __init__(self, store: Any, blobs: Any, prefix: str) -> None:
        self.clock = Clock()
        self.ledger = Ledger(store, blobs, prefix=prefix, container=f"{prefix}-internal", clock=self.clock,
                             lease_seconds=60)
        self.sink = RecordingSink()
        config, problems = parse_alerting(json.dumps({"group_by": ["model"], "group_wait": 0, "group_interval": 1}))
        assert problems == []
        self.alerting = Alerting(store, self.ledger, self.sink, MemorySource(), config, prefix=prefix,
                                 clock=self.clock)
        self.crash_after_incident = False
        self.platform = RecordingPlatform()
        policies, problems = parse_policies(json.dumps(POLICY))
        assert problems == []
        self.retraining = Retraining(store, self.ledger, self.platform, policies, prefix=prefix, clock=self.clock,
                                     incident=self._incident)

    def _incident(self, *args: Any) -> object:
        changed = self.alerting.incident(*args)
        if self.crash_after_incident:
            self.crash_after_incident = False
            raise Crash()
        return changed

    def start_job(self) -> str:
        self.retraining.request("diabetes", "try", actor="ops")
        return self.retraining.state("diabetes")["in_flight_job"]

    def outcome(self, job: str, status: str, error: str = "") -> dict[str, Any]:
        raw = sample("RunStatusChanged")
        raw["id"] = f"{job}-{status}"
        request = next(r for r in self.platform.submits if r.job_name == job)
        raw["data"].update(runId=job, runTags=request.lineage_tags(), runStatus=status,
                           runProperties={"reactor_error": error, "reactor_log": f"file:///jobs/{job}.log"})
        self.clock.now += timedelta(seconds=5)
        return dict(self.retraining.on_run_event(parse_event(raw), None))

    def alerts(self) -> dict[str, tuple[str, dict[str, str]]]:
        return {s.value.labels["job"]: (s.value.state, s.value.labels) for s in self.alerting.alerts.alerts().values()}

    def audits(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.ledger.audit_records() if r["action"] == action]


@pytest.fixture(params=["memory", "azurite"])
def world(request: pytest.FixtureRequest) -> World:
    return World(*memory_or_azurite(request))


def test_failed_and_canceled_jobs_raise_incidents_and_the_next_completed_job_resolves_them(world):
    first = world.start_job()
    done = world.outcome(first, "Failed", "train.py: data/diabetes/b1.csv: column 'bmi' is missing")
    assert done["action"] == "failed" and done["incident"] == "raised"
    assert world.alerts() == {first: ("firing", {"model": "diabetes", "job": first, "status": "failed",
                                                 "severity": "error", "alertname": "RetrainingJobFailed"})}
    [note] = world.sink.sent
    assert note.kind == "firing" and "RetrainingJobFailed" in note.title and note.severity == "error"
    assert "column 'bmi' is missing" in note.summary and f"file:///jobs/{first}.log" in note.summary

    second = world.start_job()
    assert world.outcome(second, "Canceled")["action"] == "canceled"
    assert world.alerts()[second][0] == "firing" and world.alerts()[second][1]["severity"] == "warning"
    assert len(world.sink.sent) == 2 and world.sink.sent[-1].alerts == 2  # one group (the model), two alerts

    third = world.start_job()
    done = world.outcome(third, "Completed")
    assert done["action"] == "completed" and done["incidents_resolved"] == 2
    assert {job: state for job, (state, _) in world.alerts().items()} == {first: "resolved", second: "resolved"}
    world.clock.now += timedelta(seconds=2)
    world.alerting.tick()  # the timer's next flush (group_interval) sends the group's resolve
    assert world.sink.sent[-1].kind == "resolved"
    assert [len(world.audits(a)) for a in ("alert.firing", "alert.resolved")] == [2, 2]
    assert json.loads(world.retraining.state("diabetes")["failed_jobs"]) == []


def test_a_redelivered_outcome_raises_nothing_twice(world):
    job = world.start_job()
    world.outcome(job, "Failed", "boom")
    assert world.outcome(job, "Failed", "boom")["action"] == "ignored"
    assert len(world.audits("alert.firing")) == 1 and len(world.sink.sent) == 1
    later = world.start_job()
    world.outcome(later, "Completed")
    assert world.outcome(later, "Completed")["action"] == "ignored"
    assert len(world.audits("alert.resolved")) == 1 and [n.kind for n in world.sink.sent] == ["firing", "resolved"]


def test_a_crash_after_the_incident_and_before_the_slot_is_released_is_repaired_by_redelivery(world):
    job = world.start_job()
    world.crash_after_incident = True
    with pytest.raises(Crash):
        world.outcome(job, "Failed", "boom")
    assert world.retraining.state("diabetes")["in_flight_job"] == job  # the process died before the release
    assert world.outcome(job, "Failed", "boom")["action"] == "failed"  # Event Grid delivers it again
    assert world.retraining.state("diabetes")["in_flight_job"] == ""
    assert len(world.audits("alert.firing")) == 1 and len(world.sink.sent) == 1  # raised once all the same
    assert [r["detail"]["incident"] for r in world.audits("retrain.failed")] == ["raised"]
