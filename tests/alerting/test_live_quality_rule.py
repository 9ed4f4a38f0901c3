"""An alert rule on live quality, through the services as the app wires them (local metrics source,
Azurite): labelled predictions of the version in production -> RMSE above the threshold -> firing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from core import bootstrap
from core.feedback.metrics import NAMESPACE
from core.release.store import ModelFacts
from core.settings import Settings
from embedded.local_settings import SAMPLE, read_values
from tests.unit.test_feedback import _csv, collect, labels_event

pytestmark = pytest.mark.integration


def test_a_rule_on_live_rmse_of_the_production_version_fires_through_the_wired_local_source(env):
    rule = {"name": "LiveRmseHigh", "kind": "metric", "resource_ids": ["/models/diabetes"], "namespace": NAMESPACE,
            "metric": "rmse", "aggregation": "average", "window": "1h", "operator": ">", "threshold": 5,
            "severity": "warning", "labels": {"model": "diabetes"}}
    env.update(REACTOR_ALERT_RULES=json.dumps({"rules": [rule]}), REACTOR_ALERTS_SOURCE="local",
               REACTOR_RETRAIN_POLICIES=read_values(SAMPLE)["REACTOR_RETRAIN_POLICIES"])  # names the model
    services = bootstrap.build(Settings.from_env(env))
    now = datetime.now(UTC)
    collect(services.blobs, [(f"r{i}", now - timedelta(minutes=5), [1.0, 2.0, 3.0], 100.0) for i in range(4)],
            container=services.settings.collect_container)
    assert services.quality is not None
    event = labels_event(services.blobs, "late.csv", _csv([(f"r{i}", 90.0) for i in range(4)]))  # each off by 10
    assert services.quality.on_labels(event, None)["matched"] == 4

    services.alerting.tick()
    assert not [s for s in services.alerting.alerts.alerts().values() if s.value.firing], "no version in production"

    services.releases.store.save_facts(ModelFacts("diabetes", champion_version="1"), "")
    services.alerting.tick()
    [stored] = services.alerting.alerts.alerts().values()
    assert stored.value.state == "firing" and float(stored.value.value) == 10.0
