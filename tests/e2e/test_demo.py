"""The demo scenario end to end, as ``make demo`` runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from embedded.azurite import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_runs_the_retraining_and_release_loop() -> None:
    env = {**os.environ, "REACTOR_DEMO_PORT": str(free_port()), "REACTOR_DEMO_RECEIVER_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "embedded.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=420)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "3 BlobCreated events arrived at on_blob_created and joined one batching window" in text
    assert "window closed: ONE retraining job started" in text and "(3 files, reason data)" in text
    assert "registered version 1" in text and "ModelRegistered arrived at on_model_registered  diabetes:1" in text
    assert "all skipped as duplicates, nothing retrained" in text
    assert "challenger LOST, champion kept" in text
    assert text.count("retrain.started") == 2, "one job per batch of data, no more"
    assert "one grouped notification per receiver arrived: pagerduty, slack, teams" in text
    assert "release diabetes:1: deployed to QA and smoke-tested -> awaiting_approval" in text
    assert "$ reactor approve diabetes:1" in text and "release diabetes:1: PROMOTED  diabetes-v1 100%" in text
    assert "release diabetes:2: QA_FAILED  10 of 10 smoke requests failed" in text
    assert "release diabetes:3: passed QA -> awaiting_approval" in text
    assert "release diabetes:3: ROLLED_BACK automatically  health check failed" in text
    assert "production traffic after the rollback  diabetes-v1 100%" in text
    assert "10% of production traffic to diabetes-v3" in text, "the canary went step by step"
    assert "deploying diabetes-v2 to diabetes-prod" not in text, "the broken version never reached production"
    assert "$ reactor status" in text and "/api/dashboard" in text
    assert "each receiver got the resolve" in text
    assert "demo-routing-key" not in text and "demo-webhook" not in text, "secrets never printed"
    assert "our own event at a subscriber (CloudEvents 1.0 via the local Event Grid topic)  " \
        "mlops.reactor.ReleasePromoted models/diabetes:1 id release/diabetes:1/ReleasePromoted" in text
    assert "demo-topic-key" not in text, "the topic key is never printed"
    assert "stopped the host, the endpoints, the platform and Azurite" in text
    # the metric rule on local metrics: injected 5xx -> pending -> firing -> notified -> resolved
    steps = ["errors injected into production traffic", "rule diabetes-prod-5xx: PENDING",
             "rule diabetes-prod-5xx: FIRING",
             "one grouped notification per receiver for diabetes-prod-5xx: pagerduty, slack, teams",
             "errors stopped", "rule diabetes-prod-5xx: RESOLVED",
             "resolve notification reached each receiver for diabetes-prod-5xx: pagerduty, slack, teams"]
    assert all(step in text for step in steps), [step for step in steps if step not in text]
    assert [text.index(step) for step in steps] == sorted(text.index(step) for step in steps), "in this order"
    took = float(re.search(r"metric alert round trip ([0-9.]+) s", text).group(1))  # type: ignore[union-attr]
    assert took < 30, took
    # the feedback loop: collected production requests, late labels, live quality in reactor status
    assert "inference data collected from diabetes-prod" in text
    assert "labels arrived for 100 earlier production requests (+3 unknown ids)" in text
    live = re.search(r"live quality of diabetes:1: RMSE ([0-9.]+), MAE ([0-9.]+) over 100 labelled predictions", text)
    assert live, "the labels were joined to the predictions"
    assert 20 < float(live.group(1)) < 120 and 0 < float(live.group(2)) <= float(live.group(1))  # a plausible ridge
    assert "3 label(s) for unknown request ids recorded in the audit trail" in text
    assert "LIVE RMSE" in text and re.search(r"diabetes\s+v1\s+" + live.group(1)[:4], text), "reactor status shows it"
