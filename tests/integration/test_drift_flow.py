"""The drift check on real adapters: state and baselines in Azurite, the signal published by the
Event Grid emulator through the subscriptions file to a real host, whose retraining starts a job
for reason drift."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from core.adapters.local_eventgrid import EventGridEmulator
from core.adapters.local_ml import ML_TOPIC, models_container
from core.adapters.model_baselines import BlobBaselines
from core.bootstrap import Services, build
from core.feedback.drift_check import DriftCheck
from core.ports import utcnow
from core.release.store import ModelFacts, Release
from core.settings import Settings
from ml.baseline import summarize
from ml.sample_data import make_batch
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
MODEL, ENDPOINT = "diabetes", "diabetes-prod"


class CollectedInputs:
    """What a collected-data reader would return: the same shifted rows for any window."""

    def __init__(self) -> None:
        self.rows = make_batch(120, 21, "shifted")[0].tolist()
        self.asked: list[tuple[str, datetime, datetime]] = []

    def inputs(self, endpoint: str, since: datetime, until: datetime, features: Sequence[str]) -> list[list[float]]:
        self.asked.append((endpoint, since, until))
        return self.rows if endpoint == ENDPOINT else []


@pytest.fixture(scope="module")
def world(azurite) -> Iterator[tuple[HostProcess, Services, CollectedInputs]]:
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(REACTOR_ML_PLATFORM="local", REACTOR_RETRAIN_TICK_SCHEDULE="*/1 * * * * *",
               REACTOR_RETRAIN_POLICIES=json.dumps({MODEL: {
                   "container": "data", "prefix": "diabetes/", "test_container": "data", "test_blob": "h.csv",
                   "cooldown_seconds": 0, "monitors": ["diabetes-drift"]}}))
    host = HostProcess(env)
    env.update(REACTOR_LOCAL_EVENTGRID_URL=host.url, REACTOR_RELEASE_POLICIES=json.dumps({MODEL: {
        "qa_endpoint": "diabetes-qa", "prod_endpoint": ENDPOINT}}),
        REACTOR_DRIFT_MONITORS=json.dumps({MODEL: {"monitor": "diabetes-drift", "window_seconds": 2,
                                                   "delay_seconds": 0, "min_samples": 100}}))
    inputs = CollectedInputs()
    services = build(Settings.from_env(env))
    baseline = summarize(np.vstack([make_batch(150, 11, "good", i)[0] for i in range(3)]))
    services.blobs.put(f"{services.settings.table_prefix.lower()}-models", f"{MODEL}/1/baseline.json",
                       json.dumps(baseline).encode())
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    services.releases.store.insert(Release(MODEL, "1").with_step(hour_ago, "promoted", "100%"))
    services.releases.store.save_facts(ModelFacts(MODEL, champion_version="1"), "")
    yield host, services, inputs
    host.stop()


def audit(services: Services, action: str) -> list[dict[str, Any]]:
    return [r for r in services.ledger.audit_records() if r["action"] == action]


def test_a_drifted_window_starts_a_drift_retrain_in_the_host_once(world) -> None:
    host, services, inputs = world
    emulator = EventGridEmulator(host.url)
    published: list[dict[str, Any]] = []

    def publish(events: Any) -> bool:  # the real emulator, recording what went out
        published.extend(events)
        return all(d.ok for d in emulator.publish(events))

    check = DriftCheck(services.store, services.ledger, services.releases.store,
                       BlobBaselines(services.blobs, models_container(services.settings.table_prefix)), inputs,
                       publish, services.settings.drift_monitors, endpoints={MODEL: ENDPOINT},
                       prefix=services.settings.table_prefix, topic=ML_TOPIC, clock=utcnow)
    [outcome] = check.tick()
    assert "signal" in outcome, outcome
    assert inputs.asked[-1][0] == ENDPOINT and inputs.asked[-1][2] - inputs.asked[-1][1] == timedelta(seconds=2)
    [started] = wait_for("the drift retrain in the host", lambda: audit(services, "retrain.started"))
    assert started["detail"]["reason"] == "drift" and started["detail"]["triggers"] == [outcome["signal"]]
    [arrived] = [r for r in audit(services, "event.processed") if r["event_id"] == outcome["signal"]]
    assert arrived["function"] == "on_run_status_changed"
    checked = audit(services, "drift.checked")
    assert checked[0]["detail"]["features"]["bp"]["breached"] and checked[0]["version"] == "1"
    assert check.state(MODEL)["pending"] == ""
    # Event Grid redelivers the signal: one event for the host's ledger, no second job
    before = len(audit(services, "event.duplicate"))
    assert all(d.ok for d in emulator.publish(published))
    wait_for("the duplicate", lambda: len(audit(services, "event.duplicate")) > before)
    # later windows of the same drifting version are checked but not signalled again (repeat_seconds)
    wait_for("the next window", lambda: [o for o in check.tick() if o.get("outcome", "").startswith("drifted")])
    assert len(published) == 1
    assert len([r for r in audit(services, "retrain.started") if r["detail"]["reason"] == "drift"]) == 1
