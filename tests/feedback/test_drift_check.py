"""The drift check service on fakes of the outside world (storage in memory, an Event Grid that
routes through the real subscriptions file into the real intake and retraining policy)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from core.adapters.eventgrid_subscriptions import load, route
from core.adapters.model_baselines import BlobBaselines
from core.events import DatasetDriftDetected, RunStatusChanged, parse_event
from core.feedback.drift_check import DriftCheck
from core.feedback.drift_policy import DriftMonitor, parse_monitors
from core.intake import Intake
from core.ledger import Ledger
from core.release.store import ModelFacts, Release, ReleaseStore
from core.retrain_policy import parse_policies
from core.retraining import Retraining
from core.sources import SourcePolicy
from ml.baseline import summarize
from ml.dataset import FEATURES
from ml.sample_data import make_batch
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore
from tests.unit.test_retraining import RecordingPlatform

TOPIC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
         "Microsoft.MachineLearningServices/workspaces/local")
MODEL, ENDPOINT = "diabetes", "diabetes-prod"
WINDOW = 60


class SentInputs:
    """Production inputs by time, as a collected-data reader would return them."""

    def __init__(self) -> None:
        self.rows: list[tuple[datetime, list[float]]] = []

    def add(self, at: datetime, rows: np.ndarray) -> None:
        self.rows += [(at, r) for r in rows.tolist()]

    def inputs(self, endpoint: str, since: datetime, until: datetime, features: Sequence[str]) -> list[list[float]]:
        assert endpoint == ENDPOINT and tuple(features) == FEATURES, "asked in the baseline's order"
        return [r for t, r in self.rows if since <= t < until]


class EventGrid:
    """Delivers through the subscriptions file to the intake; ``down`` makes publishing fail."""

    def __init__(self, intake: Intake) -> None:
        self.intake, self.down = intake, False
        self.published: list[dict[str, Any]] = []

    def publish(self, events: Sequence[Mapping[str, Any]]) -> bool:
        if self.down:
            raise ConnectionError("host unreachable")
        self.published += [dict(e) for e in events]
        for function, selected in route(load(), events).items():
            for event in selected:
                self.intake.receive(function, event)
        return True


class World:
    def __init__(self, signal: str = "model-monitoring", **monitor: Any) -> None:
        self.clock = Clock(datetime(2026, 11, 22, 12, 0, 0, tzinfo=Clock().now.tzinfo))
        self.store, self.blobs = MemoryStateStore(), MemoryBlobStore()
        self.ledger = Ledger(self.store, self.blobs, prefix="t", container="t-internal", clock=self.clock,
                             lease_seconds=60)
        policies, problems = parse_policies(json.dumps({MODEL: {
            "container": "data", "prefix": "diabetes/", "test_container": "data", "test_blob": "h.csv",
            "cooldown_seconds": 0, "monitors": ["diabetes-drift"]}}))
        assert problems == []
        self.platform = RecordingPlatform()
        self.retraining = Retraining(self.store, self.ledger, self.platform, policies, prefix="t", clock=self.clock)
        handlers = {RunStatusChanged: self.retraining.on_run_event, DatasetDriftDetected: self.retraining.on_drift}
        intake = Intake(self.ledger, SourcePolicy([], [TOPIC]), handlers)
        self.grid = EventGrid(intake)
        self.releases = ReleaseStore(self.store, "t")
        self.inputs = SentInputs()
        self.monitor = DriftMonitor(MODEL, "diabetes-drift", signal, window_seconds=WINDOW, delay_seconds=5,
                                    min_samples=100, **monitor)
        self.check = DriftCheck(self.store, self.ledger, self.releases, BlobBaselines(self.blobs, "t-models"),
                                self.inputs, self.grid.publish, {MODEL: self.monitor}, endpoints={MODEL: ENDPOINT},
                                prefix="t", topic=TOPIC, clock=self.clock)

    def register(self, version: str, promoted_at: datetime) -> None:
        X = np.vstack([make_batch(150, 11, "good", i)[0] for i in range(3)])
        self.blobs.put("t-models", f"{MODEL}/{version}/baseline.json", json.dumps(summarize(X)).encode())
        release = Release(MODEL, version).with_step(promoted_at.isoformat(), "promoted", "100%")
        self.releases.insert(release)
        facts = self.releases.facts(MODEL)
        self.releases.save_facts(ModelFacts(MODEL, champion_version=version), facts.etag)

    def traffic(self, kind: str, rows: int = 150, seed: int = 1) -> None:
        """``rows`` production inputs in the window that ends at the next boundary; then time moves past it."""
        start = self.clock.now
        self.inputs.add(start + timedelta(seconds=1), make_batch(rows, seed, kind)[0])
        end = start + timedelta(seconds=WINDOW)
        self.clock.now = end + timedelta(seconds=6)

    def audit(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.ledger.audit_records() if r["action"] == action]


@pytest.fixture
def world() -> World:
    w = World()
    w.register("1", w.clock.now - timedelta(hours=1))
    return w


def test_shifted_traffic_signals_v2_breach_and_starts_a_drift_retrain(world) -> None:
    world.traffic("shifted")
    [outcome] = world.check.tick()
    [event] = world.grid.published
    parsed = parse_event(event)
    assert isinstance(parsed, RunStatusChanged) and parsed.is_monitor_breach and parsed.failed
    assert parsed.experiment_name == "diabetes-drift" and outcome["signal"] == event["id"]
    text = parsed.tags["azureml_modelmonitor_threshold_breached"]
    assert "has failed due to one or more features violating metric thresholds" in text and '"bmi"' in text
    assert [s.reason for s in world.platform.submits] == ["drift"], "the retraining drift path ran unchanged"
    [checked] = world.audit("drift.checked")
    assert checked["version"] == "1" and checked["detail"]["action"] == "drifted"
    assert checked["detail"]["features"]["bmi"]["breached"] and checked["detail"]["samples"] == 150
    assert world.audit("drift.signalled")[0]["event_id"] == event["id"]


def test_v1_schema_when_configured() -> None:
    world = World(signal="data-drift")
    world.register("1", world.clock.now - timedelta(hours=1))
    world.traffic("shifted")
    world.check.tick()
    [event] = world.grid.published
    parsed = parse_event(event)
    assert isinstance(parsed, DatasetDriftDetected) and parsed.drift_name == "diabetes-drift"
    assert parsed.drift_coefficient == pytest.approx(0.3)  # 3 of 10 features
    assert [s.reason for s in world.platform.submits] == ["drift"]


def test_fresh_traffic_is_audited_clear_and_signals_nothing(world) -> None:
    world.traffic("good", seed=5)
    world.check.tick()
    assert world.grid.published == [] and world.platform.submits == []
    [checked] = world.audit("drift.checked")
    assert checked["detail"]["action"] == "clear" and set(checked["detail"]["features"]) >= {"age", "bmi"}


def test_each_window_is_checked_once(world) -> None:
    world.traffic("shifted")
    world.check.tick()
    world.check.tick()
    world.check.tick()
    assert len(world.grid.published) == 1 and len(world.audit("drift.checked")) == 1


def test_a_signal_that_could_not_be_published_is_retried_with_the_same_id(world) -> None:
    world.traffic("shifted")
    world.grid.down = True
    world.check.tick()
    assert world.grid.published == [] and world.check.state(MODEL)["pending"]
    world.traffic("shifted", seed=2)  # later windows wait: the undelivered signal is not replaced
    assert world.check.tick()[0]["action"] == "waiting" and len(world.audit("drift.checked")) == 1
    world.grid.down = False
    world.check.tick()
    [event] = world.grid.published
    assert event["id"] == world.audit("drift.checked")[0]["detail"]["signal"]
    assert world.check.state(MODEL)["pending"] == "" and len(world.platform.submits) == 1


def test_a_redelivered_signal_is_one_event_for_the_app(world) -> None:
    world.traffic("shifted")
    world.check.tick()
    world.grid.publish(world.grid.published[:1])  # Event Grid delivers it again
    assert len(world.platform.submits) == 1
    assert len(world.audit("event.duplicate")) == 1


def test_a_drifting_version_is_not_signalled_again_within_repeat_seconds(world) -> None:
    world.traffic("shifted", seed=1)
    world.traffic("shifted", seed=2)
    assert len(world.grid.published) == 0
    world.check.tick()  # only the latest ended window is checked
    world.traffic("shifted", seed=3)
    world.check.tick()
    assert len(world.grid.published) == 1
    assert [r["detail"]["action"] for r in world.audit("drift.checked")] == ["drifted", "drifted"]


def test_a_new_production_version_is_signalled_on_its_own(world) -> None:
    world.traffic("shifted", seed=1)
    world.check.tick()
    world.register("2", world.clock.now)  # took production after that window
    world.traffic("shifted", seed=2)  # this window began before version 2 was promoted
    world.check.tick()
    assert len(world.grid.published) == 1
    assert "took production during the window" in world.check.state(MODEL)["last_outcome"]
    world.traffic("shifted", seed=3)
    world.check.tick()
    assert len(world.grid.published) == 2 and world.audit("drift.checked")[-1]["version"] == "2"


def test_too_few_inputs_is_not_a_check(world) -> None:
    world.traffic("shifted", rows=40)
    world.check.tick()
    assert world.grid.published == [] and world.audit("drift.checked") == []
    assert "fewer than the 100" in world.check.state(MODEL)["last_outcome"]


def test_no_production_version_no_check() -> None:
    world = World()
    world.traffic("shifted")
    assert world.check.tick()[0]["outcome"] == "no production version"
    assert world.grid.published == []


class RacingStore(MemoryStateStore):
    """Lets another instance run its whole tick just before this instance's first drift-state write."""

    def __init__(self, base: MemoryStateStore) -> None:
        self.__dict__.update(base.__dict__)
        self.other: DriftCheck | None = None

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        if table == "tdrift" and self.other is not None:
            other, self.other = self.other, None
            other.tick()
        return super().insert(table, partition, row, props)


def test_two_instances_racing_on_a_window_check_it_once(world) -> None:
    racing = RacingStore(world.store)

    def instance(store: MemoryStateStore) -> DriftCheck:
        return DriftCheck(store, world.ledger, world.releases, BlobBaselines(world.blobs, "t-models"), world.inputs,
                          world.grid.publish, {MODEL: world.monitor}, endpoints={MODEL: ENDPOINT}, prefix="t",
                          topic=TOPIC, clock=world.clock)

    racing.other = instance(world.store)
    world.traffic("shifted")
    [outcome] = instance(racing).tick()
    assert outcome["action"] == "skipped", "the loser of the ETag write does nothing"
    assert len(world.grid.published) == 1 and len(world.audit("drift.checked")) == 1


def test_off_does_nothing(world) -> None:
    world.check.enabled = False
    world.traffic("shifted")
    assert world.check.tick() == [] and world.grid.published == []


@pytest.mark.parametrize("raw, problem", [
    ({"diabetes": {}}, "REACTOR_DRIFT_MONITORS.diabetes.monitor: required"),
    ({"diabetes": {"monitor": "m", "signal": "v3"}}, "REACTOR_DRIFT_MONITORS.diabetes.signal: one of"),
    ({"diabetes": {"monitor": "m", "ks_p_value": 0}}, "REACTOR_DRIFT_MONITORS.diabetes.ks_p_value: a number above 0"),
    ({"diabetes": {"monitor": "m", "window_seconds": 0}}, "REACTOR_DRIFT_MONITORS.diabetes.window_seconds"),
    ({"diabetes": {"monitor": "m", "colour": "red"}}, "REACTOR_DRIFT_MONITORS.diabetes.colour: unknown key"),
])
def test_monitor_settings_name_the_problem(raw, problem) -> None:
    monitors, problems = parse_monitors(json.dumps(raw))
    assert monitors == {} and any(p.startswith(problem) for p in problems), problems


def _settings_env(**values: str) -> dict[str, str]:
    from embedded.local_settings import SAMPLE, read_values

    return {**read_values(SAMPLE), **values}


def test_the_sample_settings_configure_a_consistent_monitor() -> None:
    from core.settings import Settings

    settings = Settings.from_env(_settings_env())
    monitor = settings.drift_monitors[MODEL]
    assert settings.drift_check == "local" and monitor.monitor in settings.retrain_policies[MODEL].monitors


@pytest.mark.parametrize("values, problem", [
    ({"REACTOR_DRIFT_MONITORS": json.dumps({MODEL: {"monitor": "other-monitor"}})},
     "REACTOR_DRIFT_MONITORS.diabetes.monitor: 'other-monitor' is not one of REACTOR_RETRAIN_POLICIES.diabetes"),
    ({"REACTOR_ML_PLATFORM": "azure", **{f"REACTOR_AML_{n}": "x" for n in (
        "SUBSCRIPTION_ID", "RESOURCE_GROUP", "WORKSPACE", "COMPUTE", "EXPERIMENT", "DATASTORE")},
      "REACTOR_RELEASE_POLICIES": ""},
     "REACTOR_DRIFT_CHECK=local reads baselines from the local ML platform"),
    ({"REACTOR_DRIFT_CHECK": "sometimes"}, "REACTOR_DRIFT_CHECK="),
])
def test_inconsistent_drift_settings_are_refused(values, problem) -> None:
    from core.errors import SettingsError
    from core.settings import Settings

    with pytest.raises(SettingsError) as err:
        Settings.from_env(_settings_env(**values))
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
