"""The demo scenario end to end, as ``make demo`` runs it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from embedded.azurite import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_runs_the_retraining_and_release_loop() -> None:
    env = with_fake_secrets({**os.environ, "REACTOR_DEMO_PORT": str(free_port()),
                             "REACTOR_DEMO_RECEIVER_PORT": str(free_port())})
    out = subprocess.run([sys.executable, "-m", "embedded.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=540)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "3 BlobCreated events arrived at on_blob_created and joined one batching window" in text
    assert "window closed: ONE retraining job started" in text and "(3 files, reason data)" in text
    assert "registered version 1" in text and "ModelRegistered arrived at on_model_registered  diabetes:1" in text
    assert "all skipped as duplicates, nothing retrained" in text
    assert "challenger LOST, champion kept" in text
    assert text.count("retrain.started") == 3, "one job per batch of data and one for the drift, no more"
    assert "one grouped notification per receiver arrived: pagerduty, slack, teams" in text
    assert "release diabetes:1: deployed to QA and smoke-tested -> awaiting_approval" in text
    assert "$ reactor approve diabetes:1" in text and "release diabetes:1: PROMOTED  diabetes-v1 100%" in text
    assert "release diabetes:2: QA_FAILED  10 of 10 smoke requests failed" in text
    assert "release diabetes:3: passed QA -> awaiting_approval" in text
    assert "release diabetes:3: ROLLED_BACK automatically  health check failed" in text
    assert "production traffic after the rollback  diabetes-v1 100%" in text
    assert "10% of production traffic to diabetes-v3" in text, "the canary went step by step"
    assert "deploying diabetes-v2 to diabetes-prod" not in text, "the broken version never reached production"
    assert "production traffic SHIFTED" in text
    assert "drift check: diabetes:1 DRIFTED" in text and "(bmi, bp, s5)" in text
    assert "drift signal RunStatusChanged (run tag azureml_modelmonitor_threshold_breached) arrived at " \
           "on_run_status_changed  -> started (reason drift)" in text
    assert text.count("drift.signalled") == 1, "one signal for the drifting version, not one per window"
    assert "retraining started for reason drift" in text and "drift retrain completed: registered version 4" in text
    assert "release diabetes:4: PROMOTED under shifted traffic  diabetes-v4 100%" in text
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
    assert_no_secret_leaked(out, env)


# -- secrets (issue 8): recognisable fake values in every secret setting, looked for everywhere ---
FAKE_STORAGE_KEY = base64.b64encode(b"fake-storage-account-key-for-leak-check-4Tz7").decode()
SECRET_TOKENS = {
    "REACTOR_NOTIFY_SECRET_ML_TEAMS": "fake-teams-webhook-secret-8Rw3",
    "REACTOR_NOTIFY_SECRET_ML_SLACK": "fake-slack-webhook-secret-5Jq6",
    "REACTOR_NOTIFY_SECRET_ONCALL": "fake-pagerduty-routing-key-3Vn8",
    "LOCAL_MASTER_KEY": "fake-master-key-6Hd1Zp",
    "LOCAL_FUNCTION_KEYS": "fake-function-key-2Lm5Qc",
    "AZURITE_ACCOUNTS": FAKE_STORAGE_KEY.rstrip("="),  # the storage account key of the connection string
}


def with_fake_secrets(env: dict[str, str]) -> dict[str, str]:
    """The demo's environment with a fake value in each secret setting (the demo only fills gaps),
    and where it should leave what it answered, stored and sent (embedded/demo_evidence.py)."""
    receiver = f"http://127.0.0.1:{env['REACTOR_DEMO_RECEIVER_PORT']}"
    t = SECRET_TOKENS
    return {**env, "REACTOR_NOTIFY_SECRET_ML_TEAMS": f"{receiver}/teams/{t['REACTOR_NOTIFY_SECRET_ML_TEAMS']}",
            "REACTOR_NOTIFY_SECRET_ML_SLACK": f"{receiver}/slack/{t['REACTOR_NOTIFY_SECRET_ML_SLACK']}",
            "REACTOR_NOTIFY_SECRET_ONCALL": t["REACTOR_NOTIFY_SECRET_ONCALL"],
            "LOCAL_MASTER_KEY": t["LOCAL_MASTER_KEY"], "LOCAL_FUNCTION_KEYS": f"default:{t['LOCAL_FUNCTION_KEYS']}",
            "AZURITE_ACCOUNTS": f"devstoreaccount1:{FAKE_STORAGE_KEY}",
            "REACTOR_DEMO_EVIDENCE": env.get("REACTOR_DEMO_EVIDENCE") or tempfile.mkdtemp(prefix="demo-evidence-")}


def leaks(where: str, text: str) -> list[str]:
    return [f"{setting} in {where}" for setting, token in SECRET_TOKENS.items() if token in text]


def assert_no_secret_leaked(out: subprocess.CompletedProcess[str], env: dict[str, str]) -> None:
    evidence = Path(env["REACTOR_DEMO_EVIDENCE"])
    responses = json.loads((evidence / "responses.json").read_text(encoding="utf-8"))
    audit = json.loads((evidence / "audit.json").read_text(encoding="utf-8"))
    sent = json.loads((evidence / "notifications.json").read_text(encoding="utf-8"))
    # Not vacuous: the secrets were used, and there is plenty to look through.
    assert {r["path"]: r["status"] for r in responses}["releases/diabetes%3A1"] == 200
    assert all(r["status"] == 200 for r in responses[:len(responses) - 7]), [r["path"] for r in responses]
    assert all(400 <= r["status"] < 500 for r in responses[-7:]), [(r["path"], r["status"]) for r in responses]
    assert len(audit) > 40 and {n["kind"] for n in sent} == {"teams", "slack", "pagerduty"} and len(sent) >= 6
    pagerduty = [n for n in sent if n["kind"] == "pagerduty"]
    assert {n["body"].pop("routing_key") for n in pagerduty} == {SECRET_TOKENS["REACTOR_NOTIFY_SECRET_ONCALL"]}
    assert all(SECRET_TOKENS["REACTOR_NOTIFY_SECRET_ML_TEAMS"] in n.pop("path") for n in sent if n["kind"] == "teams")
    for n in sent:  # the webhook URL is where a message goes, never what it says
        n.pop("path", None)
    found = [*leaks("stdout", out.stdout), *leaks("stderr", out.stderr),
             *leaks("admin API responses", json.dumps(responses)), *leaks("audit records", json.dumps(audit)),
             *leaks("notifications", json.dumps(sent))]
    assert found == [], found
    if shutil.which("/usr/bin/chromium"):
        assert (evidence / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not os.environ.get("REACTOR_DEMO_EVIDENCE"):  # kept only when the caller asked for it
        shutil.rmtree(evidence, ignore_errors=True)
