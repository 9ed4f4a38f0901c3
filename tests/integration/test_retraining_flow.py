"""Retraining end to end on the embedded default: data lands in Azurite, the watcher publishes
BlobCreated, the host's functions batch it into one job, the local platform trains for real and
its ModelRegistered / RunCompleted / RunStatusChanged come back through the subscriptions."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from core.adapters.local_eventgrid import EventGridEmulator
from core.bootstrap import Services, build
from core.settings import Settings
from embedded.blob_events import blob_created_event
from ml.sample_data import write_batches, write_holdout
from tests.conftest import ROOT, HostProcess, base_env, unique_prefix
from tests.payloads import sample
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
MODEL = "diabetes"


def policy(**overrides: Any) -> str:
    base = {"container": "data", "prefix": "diabetes/", "test_container": "data",
            "test_blob": "holdout/diabetes.csv", "window_seconds": 3, "min_new_files": 1,
            "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.0, "monitors": ["diabetes-drift"]}
    return json.dumps({MODEL: {**base, **overrides}})


@pytest.fixture(scope="module")
def flow(azurite, tmp_path_factory) -> Iterator[tuple[HostProcess, Services, BlobServiceClient, Path]]:
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(REACTOR_RETRAIN_POLICIES=policy(), REACTOR_RETRAIN_TICK_SCHEDULE="*/1 * * * * *",
               REACTOR_ML_PLATFORM="local")
    host = HostProcess(env, watch=True)
    services = build(Settings.from_env(env))
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.get_container_client("data")
    if not container.exists():
        container.create_container()
    data = tmp_path_factory.mktemp("data")
    container.upload_blob("holdout/diabetes.csv", write_holdout(data / "holdout").read_bytes(), overwrite=True)
    yield host, services, blobs, data
    host.stop()


def retrain_audit(services: Services, action: str) -> list[dict[str, Any]]:
    return [r for r in services.ledger.audit_records({"model": MODEL}) if r["action"] == action]


def upload(blobs: BlobServiceClient, paths: list[Path], prefix: str) -> None:
    for path in paths:
        blobs.get_blob_client("data", f"{prefix}{path.name}").upload_blob(path.read_bytes(), overwrite=True)


def test_files_in_the_window_make_one_job_and_version_1_arrives(flow) -> None:
    _host, services, blobs, data = flow
    upload(blobs, write_batches(data / "first", files=3, rows=120, seed=1), "diabetes/first/")
    [started] = wait_for("one job to start", lambda: retrain_audit(services, "retrain.started"))
    assert started["detail"]["files"] == 3 and started["detail"]["reason"] == "data"
    done = wait_for("the job to finish", lambda: retrain_audit(services, "retrain.completed"))
    assert done[0]["detail"]["reactor_registered_version"] == "1"
    registered = wait_for("ModelRegistered at on_model_registered", lambda: [
        r for r in services.ledger.audit_records({"function": "on_model_registered"})
        if r["action"] == "event.processed" and r["version"] == "1"])
    assert registered[0]["model"] == MODEL
    assert registered[0]["correlation_id"] == started["correlation_id"], "lineage: same decision id"
    assert len(retrain_audit(services, "retrain.started")) == 1


def test_a_poor_batch_keeps_the_champion(flow) -> None:
    _host, services, blobs, data = flow
    before = len(retrain_audit(services, "retrain.completed"))
    upload(blobs, write_batches(data / "poor", files=2, rows=400, seed=2, kind="poor"), "diabetes/poor/")
    done = wait_for("the poor job to finish",
                    lambda: retrain_audit(services, "retrain.completed")[before:])
    assert done[0]["detail"]["reactor_champion_kept"] == "true"
    assert services.platform.list_models(MODEL)[-1].version == "1"


def test_a_bad_csv_fails_the_job_and_releases_the_slot(flow) -> None:
    _host, services, blobs, _data = flow
    blobs.get_blob_client("data", "diabetes/bad/broken.csv").upload_blob(b"age,sex\n1,oops\n", overwrite=True)
    [failed] = wait_for("the failure", lambda: retrain_audit(services, "retrain.failed"))
    assert "diabetes/bad/broken.csv: bad header: missing columns bmi" in failed["detail"]["reactor_error"]
    assert services.retraining.state(MODEL)["in_flight_job"] == ""
    blobs.get_blob_client("data", "diabetes/bad/broken.csv").delete_blob()  # later jobs train cleanly
    assert failed["detail"]["incident"] == "raised"  # through the host's own alerting
    [incident] = [a.value for a in services.alerting.alerts.alerts().values()
                  if a.value.labels.get("alertname") == "RetrainingJobFailed"]
    assert (incident.state, incident.labels["job"], incident.labels["status"]) == ("firing", failed["detail"]["job"],
                                                                                   "failed")


def test_reactor_retrain_and_the_http_contract(flow) -> None:
    host, services, _blobs, _data = flow
    key = host.env["LOCAL_FUNCTION_KEYS"].split(",")[0].partition(":")[2]
    cli = [sys.executable, "-m", "cli.reactor", "--url", host.url]
    env = {**os.environ, "REACTOR_KEY": key}
    wait_for("no job in flight", lambda: not services.retraining.state(MODEL)["in_flight_job"])
    out = subprocess.run([*cli, "retrain", MODEL, "--reason", "cli test"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "started" in out.stdout
    manual = [r for r in retrain_audit(services, "retrain.started") if r["detail"]["reason"] == "manual"]
    assert manual and "function-key: cli test" in manual[-1]["detail"]["manual"]
    unknown = subprocess.run([*cli, "retrain", "nope"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1 and "Unknown model" in unknown.stderr
    missing = requests.post(f"{host.url}/api/retrain", json={"model": MODEL}, headers={"x-functions-key": key},
                            timeout=30)
    assert missing.status_code == 400 and missing.json()["field"] == "reason"
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert requests.post(f"{host.url}/api/retrain", json={}, timeout=30).status_code == 401


def test_drift_starts_a_job_and_a_trigger_during_it_makes_exactly_one_follow_up(flow) -> None:
    host, services, blobs, data = flow
    wait_for("no job in flight", lambda: not services.retraining.state(MODEL)["in_flight_job"])
    before = len(retrain_audit(services, "retrain.started"))
    drift = sample("DatasetDriftDetected")
    drift["data"]["DataDriftName"] = "diabetes-drift"
    assert all(d.ok for d in EventGridEmulator(host.url).publish([drift]))
    [by_drift] = wait_for("the drift job", lambda: retrain_audit(services, "retrain.started")[before:])
    assert by_drift["detail"]["reason"] == "drift" and by_drift["detail"]["triggers"] == [drift["id"]]
    upload(blobs, write_batches(data / "during", files=1, rows=120, seed=5), "diabetes/during/")
    wait_for("the trigger to queue", lambda: retrain_audit(services, "retrain.queued"))
    follow = wait_for("one follow-up job", lambda: retrain_audit(services, "retrain.started")[before + 1:])
    assert follow[0]["detail"]["reason"] == "data" and follow[0]["detail"]["files"] == 1
    wait_for("the follow-up to finish", lambda: not services.retraining.state(MODEL)["in_flight_job"])
    time.sleep(4)  # windows and ticks pass: nothing else starts
    assert len(retrain_audit(services, "retrain.started")) == before + 2
    states = {a.value.state for a in services.alerting.alerts.alerts().values()
              if a.value.labels.get("alertname") == "RetrainingJobFailed"}
    assert states == {"resolved"}, "the failed job's incident ends with the next completed job"


@pytest.fixture(scope="module")
def burst_host(azurite) -> Iterator[tuple[HostProcess, Services]]:
    """A host whose window (40 s) outlasts the delivery of the whole burst, even on a loaded machine."""
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(REACTOR_RETRAIN_POLICIES=policy(window_seconds=40), REACTOR_RETRAIN_TICK_SCHEDULE="*/1 * * * * *",
               REACTOR_ML_PLATFORM="local")
    host = HostProcess(env)
    yield host, build(Settings.from_env(env))
    host.stop()


def test_200_events_delivered_three_times_shuffled_make_one_job(burst_host) -> None:
    host, services = burst_host
    now = datetime.now(timezone.utc)
    events = [blob_created_event(container="data", name=f"diabetes/burst/{i}.csv", etag=f'"0x{i:x}"', size=100,
                                 content_type="text/csv", sequence=i, when=now,
                                 url=f"http://127.0.0.1/devstoreaccount1/data/diabetes/burst/{i}.csv")
              for i in range(200)]
    deliveries = events * 3
    random.Random(7).shuffle(deliveries)
    assert all(d.ok for d in EventGridEmulator(host.url, batch_size=50).publish(deliveries))
    [started] = wait_for("the burst's job", lambda: retrain_audit(services, "retrain.started"), timeout=90)
    assert started["detail"]["trigger_count"] == 200 and started["detail"]["files"] == 200
    time.sleep(3)
    assert len(retrain_audit(services, "retrain.started")) == 1
    skipped = [r for r in services.ledger.audit_records({"function": "on_blob_created"})
               if r["action"] in ("event.duplicate", "event.in_flight")]
    processed = [r for r in services.ledger.audit_records({"function": "on_blob_created"})
                 if r["action"] == "event.processed"]
    assert (len(processed), len(skipped)) == (200, 400)
