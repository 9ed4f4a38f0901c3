"""The ML platform down for a while (issue 8, item 4): Azure ML's API answering 500, or carrying a
request out and answering after the client gave up, while new data and a registered model arrive.

The local platform fails where Azure ML would (``core.adapters.local_outage``): the jobs and models
API in the host, and the serving control plane's endpoint routes in its own process; production
scoring stays up. During the outage the retraining slot is taken but the job cannot be submitted,
and the release of the late-delivered ModelRegistered cannot deploy. After recovery each must
happen once: one job, one promotion, no dead letter, and production traffic never naming a
deployment that is not up.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from core.adapters.blob_store import AzureBlobStore
from core.adapters.local_eventgrid import EventGridEmulator
from core.adapters.local_ml import JOB_PARTITION, LocalMLPlatform
from core.adapters.table_store import TableStateStore
from core.release.store import ACTIVE_STATES
from embedded.blob_events import blob_created_event
from ml.sample_data import write_batches, write_holdout
from tests.conftest import unique_prefix
from tests.integration.test_release_flow import MODEL, PROD, World
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
HANG = 11.0  # seconds the platform takes to answer in a timeout outage: past LocalServing's 10 s


def retrain_env(container: str) -> dict[str, str]:
    """Retraining from a container of the run's own (other tests train on everything under their
    prefix). The challenger must beat the champion by 90 %: it never does, so the job keeps the
    champion and registers nothing, and the only release is the one of the late ModelRegistered."""
    policy = {MODEL: {"container": container, "prefix": "diabetes/", "test_container": container,
                      "test_blob": "holdout/diabetes.csv", "window_seconds": 1, "min_new_files": 1,
                      "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.9, "monitors": []}}
    return {"REACTOR_RETRAIN_POLICIES": json.dumps(policy), "REACTOR_RETRAIN_TICK_SCHEDULE": "*/1 * * * * *",
            "REACTOR_ML_PLATFORM": "local"}


class Outages:
    """A World and what an outage run does to it: hold a registration's events, switch the
    platform off and on, deliver new data, read what was recorded."""

    def __init__(self, world: World, tmp: Path, container: str) -> None:
        self.world, self.tmp, self.container = world, tmp, container
        connection = world.env["REACTOR_STORAGE_CONNECTION"]
        self.store = TableStateStore.from_connection(connection)
        self.held: list[dict[str, Any]] = []
        # Registers as the platform does, but Event Grid holds the events until ``deliver``.
        self.registry = LocalMLPlatform(self.store, AzureBlobStore.from_connection(connection), self.held.extend,
                                        prefix=world.env["REACTOR_TABLE_PREFIX"], workdir=tmp)
        self.blobs = BlobServiceClient.from_connection_string(connection)
        self.blobs.create_container(container)
        holdout = write_holdout(tmp / "holdout").read_bytes()
        self.blobs.get_blob_client(container, "holdout/diabetes.csv").upload_blob(holdout, overwrite=True)
        self.uploads = 0

    # -- the platform ------------------------------------------------------------------------
    def start(self, mode: str, seconds: float = 600, hang: float = HANG) -> None:
        self._put({"mode": mode, "seconds": seconds, "hang_seconds": hang})

    def end(self) -> None:
        self._put({"mode": ""})

    def failed_requests(self) -> int:
        return int(requests.get(f"{self.world.control.url}/outage", timeout=10).json()["failed_requests"])

    def _put(self, body: dict[str, Any]) -> None:
        answer = requests.put(f"{self.world.control.url}/outage", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        time.sleep(0.3)  # past the switch's cache: the host sees it too (local_outage.CACHE_SECONDS)

    # -- what arrives --------------------------------------------------------------------------
    def register_held(self) -> str:
        """A version registered just before the outage; its ModelRegistered is not delivered yet."""
        return self.registry.register_package(MODEL, self.world.package, {"stage": "candidate"}, {}).version

    def deliver_held(self) -> None:
        events, self.held[:] = list(self.held), []
        assert events and all(d.ok for d in EventGridEmulator(self.world.host.url).publish(events))

    def new_data(self) -> None:
        self.uploads += 1
        [path] = write_batches(self.tmp / f"batch{self.uploads}", files=1, rows=80, seed=7)
        name = f"diabetes/outage/batch{self.uploads}.csv"
        blob = self.blobs.get_blob_client(self.container, name)
        info = blob.upload_blob(path.read_bytes(), overwrite=True)
        event = blob_created_event(container=self.container, name=name, etag=str(info["etag"]),
                                   size=path.stat().st_size, content_type="text/csv", url=blob.url,
                                   sequence=self.uploads, when=datetime.now(UTC))
        assert all(d.ok for d in EventGridEmulator(self.world.host.url).publish([event]))

    # -- what happened -------------------------------------------------------------------------
    def audit(self, action: str, version: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.world.services.ledger.audit_records({"model": MODEL})
                if a["action"] == action and (version is None or a["version"] == version)]

    def jobs(self) -> list[dict[str, Any]]:
        table = f"{self.world.env['REACTOR_TABLE_PREFIX']}mljobs"
        return [{"name": e.row, **e.props} for e in self.store.query(table, JOB_PARTITION)]

    def retrain_state(self) -> dict[str, Any]:
        return self.world.services.retraining.state(MODEL)

    def idle(self) -> bool:
        s = self.retrain_state()
        return not s["window_id"] and not s["in_flight_job"]


def run_container() -> str:
    return f"outage-{unique_prefix()}"


@pytest.fixture
def outages(azurite: Any, tmp_path: Path) -> Any:
    container = run_container()
    world = World(azurite, tmp_path, env=retrain_env(container))
    yield Outages(world, tmp_path, container)
    world.stop()


@pytest.mark.parametrize("mode", ["error", "timeout"])
def test_work_that_arrives_in_an_outage_is_done_once_after_it(outages: Outages, mode: str) -> None:
    world = outages.world
    first = world.register()
    wait_for("version 1 in production", lambda: world.release(first).state == "promoted", timeout=150)
    late = outages.register_held()

    outages.start(mode)
    outages.deliver_held()  # Event Grid delivers the registration during the outage: handled, not failed
    outages.new_data()
    wait_for("the retraining slot taken", lambda: outages.audit("retrain.started"), timeout=60)
    wait_for("the release to retry twice", lambda: len(outages.audit("release.step_error", late)) >= 2,
             timeout=120)
    if mode == "error":
        wait_for("the submit to fail", lambda: outages.audit("retrain.submit_failed"), timeout=60)
        assert outages.jobs() == [], "refused: the platform has no job"
    assert world.release(late).state == "pending", world.release(late).timeline
    assert outages.failed_requests() > 0
    outages.end()

    wait_for(f"the release of version {late} to end", lambda: world.release(late).state not in ACTIVE_STATES,
             timeout=240)
    assert world.release(late).state == "promoted", world.release(late).timeline
    wait_for("the retraining job to finish", outages.idle, timeout=180)
    state = outages.retrain_state()
    [job] = outages.jobs()
    assert (job["name"], job["status"], state["last_outcome"]) == (state["started_job"], "completed", "completed")
    assert len(outages.audit("retrain.started")) == 1 and len(outages.audit("retrain.completed")) == 1
    assert len(outages.audit("release.created", late)) == 1 and len(outages.audit("release.promoted", late)) == 1
    ep = world.serving.get_endpoint(PROD)
    assert ep is not None and dict(ep.traffic) == {f"diabetes-v{late}": 100}
    assert list(world.services.ledger.dead_letters()) == [], "an outage is retried, not dead-lettered"
    assert not world.services.ledger.audit_records({"action": "event.failed"})
    assert not world.violations, world.violations[:3]
    assert world.statuses.get(200, 0) > 20 and not world.statuses.get(500), world.statuses


def test_a_platform_slower_than_the_leases_dead_letters_nothing(outages: Outages) -> None:
    """Answers 6 s late, within the clients' 10 s but past the 5 s lease on a release's work
    (World's REACTOR_CLAIM_LEASE_SECONDS): two advances of one release overlap, and the one that
    lost its lease must stand down, not fail the event that started it."""
    world = outages.world
    first = world.register()
    wait_for("version 1 in production", lambda: world.release(first).state == "promoted", timeout=150)
    late = outages.register_held()
    outages.start("timeout", hang=6.0)
    outages.deliver_held()
    outages.new_data()
    wait_for("the retraining job", outages.jobs, timeout=120)
    outages.end()
    wait_for(f"the release of version {late} to end", lambda: world.release(late).state not in ACTIVE_STATES,
             timeout=240)
    assert world.release(late).state == "promoted", world.release(late).timeline
    wait_for("the retraining job to finish", outages.idle, timeout=180)
    assert len(outages.jobs()) == 1 and len(outages.audit("retrain.started")) == 1
    assert len(outages.audit("release.promoted", late)) == 1
    assert list(world.services.ledger.dead_letters()) == [], "an outage is retried, not dead-lettered"
    assert not world.violations, world.violations[:3]
