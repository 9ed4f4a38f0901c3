"""Releases on the local platform, for real: the host (a process) drives the state machine from its
timer, the endpoints' control plane (its own process, as Azure ML's is) serves the models, and
production traffic flows the whole time.

The host is SIGKILLed as soon as the release is seen in each state, and restarted: the release must
still converge, once, and production traffic must never name a deployment that is not up."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from core.adapters.blob_store import AzureBlobStore
from core.adapters.local_eventgrid import EventGridEmulator
from core.adapters.local_ml import LocalMLPlatform
from core.adapters.local_serving import LocalServing
from core.adapters.table_store import TableStateStore
from core.bootstrap import build
from core.release.store import ACTIVE_STATES
from core.settings import Settings
from embedded.serving import ServingProcess
from ml.sample_data import write_batches
from ml.train import train
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
MODEL, PROD = "diabetes", "diabetes-prod"
POLICY = {MODEL: {"qa_endpoint": "diabetes-qa", "prod_endpoint": PROD, "approval": "auto",
                  "smoke": {"requests": 5, "p95_ms": 3000},
                  "canary": {"steps": [50, 100], "step_seconds": 3, "min_requests": 5, "max_error_rate": 0.05,
                             "max_p95_ms": 3000}, "retention": 1}}


class World:
    def __init__(self, azurite: Any, tmp: Path, env: dict[str, str] | None = None, watch: bool = False) -> None:
        self.env = base_env(azurite.connection_string, unique_prefix())
        self.env.update(REACTOR_RELEASE_POLICIES=json.dumps(POLICY), REACTOR_RELEASE_TICK_SCHEDULE="*/1 * * * * *",
                        REACTOR_CLAIM_LEASE_SECONDS="5", REACTOR_LOG_LEVEL="WARNING", **(env or {}))
        self.control = ServingProcess(self.env, log_path=tmp / "serving.log").start()
        self.env["REACTOR_LOCAL_SERVING_URL"] = self.control.url
        self.watch = watch  # the blob watcher, for runs that retrain from uploaded data (tests/soak)
        self.host = HostProcess(self.env, watch=watch)
        blobs = AzureBlobStore.from_connection(azurite.connection_string)
        store = TableStateStore.from_connection(azurite.connection_string)
        prefix = self.env["REACTOR_TABLE_PREFIX"]
        self.platform = LocalMLPlatform(store, blobs, lambda events: EventGridEmulator(self.host.url).publish(events),
                                        prefix=prefix, workdir=tmp)
        self.serving = LocalServing(self.control.url, blobs, prefix)
        self.services = build(Settings.from_env(self.env))
        train(write_batches(tmp / "data", files=1, rows=80, seed=3), tmp / "model")
        self.package = tmp / "model"
        self.violations: list[str] = []
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._traffic, daemon=True),
                         threading.Thread(target=self._watch_traffic, daemon=True)]
        for t in self._threads:
            t.start()

    def register(self) -> str:
        return self.platform.register_package(MODEL, self.package, {"stage": "candidate"}, {}).version

    def release(self, version: str) -> Any:
        return self.services.releases.get(f"{MODEL}:{version}")

    def kill_and_restart_host(self) -> None:
        self.host.proc.send_signal(signal.SIGKILL)
        self.host.proc.wait()
        self.host = HostProcess(self.env, watch=self.watch)

    def _traffic(self) -> None:
        """Production traffic, once the production endpoint exists: to its scoring URI, which clients
        know, so it flows on while the control plane is down (tests/integration/test_ml_outage.py)."""
        body, uri = b"", ""
        while not self._stop.is_set():
            try:
                ep = None if uri else self.serving.get_endpoint(PROD)
                if not uri and (ep is None or not ep.traffic):
                    time.sleep(0.3)
                    continue
                uri = uri or (ep.scoring_uri if ep else "")
                body = body or (self.serving.sample_request(MODEL, "1") or b"")
                status = requests.post(uri, data=body, timeout=5).status_code
            except (requests.RequestException, RuntimeError, ConnectionError):  # control plane down: no URI yet
                status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1
            time.sleep(0.05)

    def _watch_traffic(self) -> None:
        """Production traffic only ever names deployments that are up (read through the control plane)."""
        while not self._stop.is_set():
            try:
                ep = self.serving.get_endpoint(PROD)
                up = {d.name for d in self.serving.list_deployments(PROD) if d.state == "succeeded"}
            except Exception:  # the control plane is not what is tested here
                time.sleep(0.2)
                continue
            if ep is not None and not set(ep.traffic) <= up:
                self.violations.append(f"traffic {dict(ep.traffic)} names a deployment not up ({sorted(up)})")
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.host.stop()
        self.control.stop()


@pytest.fixture
def world(azurite: Any, tmp_path: Path) -> Any:
    built = World(azurite, tmp_path)
    yield built
    built.stop()


def test_a_release_converges_once_when_the_host_is_killed_in_every_state(world: World) -> None:
    first = world.register()
    wait_for("version 1 in production", lambda: world.release(first).state == "promoted", timeout=120)
    second = world.register()
    killed_in: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = world.release(second).state
        if state not in ACTIVE_STATES:
            break
        if state not in killed_in:
            killed_in.append(state)
            world.kill_and_restart_host()
        time.sleep(0.1)
    r = world.release(second)
    assert r.state == "promoted", r.timeline
    assert len(killed_in) >= 3, f"the host was killed in {killed_in}"
    promoted = [a for a in world.services.ledger.audit_records({"model": MODEL})
                if a["action"] == "release.promoted" and a["version"] == second]
    assert len(promoted) == 1, "promoted once"
    ep = world.serving.get_endpoint(PROD)
    assert ep is not None and dict(ep.traffic) == {f"diabetes-v{second}": 100}
    assert world.services.releases.store.facts(MODEL).value.previous_deployment == f"diabetes-v{first}"
    assert not world.violations, world.violations[:3]
    assert world.statuses.get(200, 0) > 20 and not world.statuses.get(500), world.statuses


def test_duplicate_and_out_of_order_registrations_make_one_release_each(world: World) -> None:
    first = world.register()
    wait_for("the release", lambda: [r for r in world.services.ledger.audit_records({"model": MODEL})
                                     if r["action"] == "release.created"])
    # The platform announced it once; Event Grid may deliver it again, and late: replay it 3 times.
    event = {"topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
             "Microsoft.MachineLearningServices/workspaces/local", "subject": f"models/{MODEL}:{first}",
             "eventType": "Microsoft.MachineLearningServices.ModelRegistered", "eventTime": "2026-11-22T10:00:00Z",
             "id": "replayed-registration", "dataVersion": "", "metadataVersion": "1",
             "data": {"ModelName": MODEL, "ModelVersion": first, "ModelTags": {"stage": "candidate"},
                      "ModelProperties": {}}}
    for _ in range(3):
        assert all(d.ok for d in EventGridEmulator(world.host.url).publish([event]))
    wait_for("the release in production", lambda: world.release(first).state == "promoted", timeout=120)
    created = [r for r in world.services.ledger.audit_records({"model": MODEL}) if r["action"] == "release.created"]
    assert len(created) == 1, "one release per version, however often it is announced"
    assert [d.name for d in world.serving.list_deployments("diabetes-qa")] == [f"diabetes-v{first}"]
