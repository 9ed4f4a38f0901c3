"""Crash soak (issue 8, item 2), run by ``make soak``, not by ``make test`` (the file name is not
``test_*``): ``SOAK_RUNS`` runs (default 50) on one local stack, each uploading a batch of data
that is retrained into a new version and released (QA, smoke test, automatic approval, canary
50 -> 100 %) while production traffic flows; the host process is SIGKILLed at a random moment
of that work (once or twice), and restarted.

Event Grid is played by this test: an event whose delivery got no 2xx answer (the host died under
it) is redelivered to the new host after the claim lease, as Event Grid's retry would be.

After each run every release must converge to the end state of a run without crashes: the new
version promoted exactly once, production traffic 100 % on it, and never, at any moment, traffic
naming a deployment that is not up. A retraining job killed with its host is resumed by the local
platform of the next host (as an Azure ML job would have run on without it) and completes: the run
still ends with exactly one new version, and the soak counts the jobs that needed a resume.
``SOAK_SEED`` repeats a sequence of kill times.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from core.adapters.local_eventgrid import EventGridEmulator
from core.adapters.local_ml import JOB_PARTITION
from core.adapters.table_store import TableStateStore
from core.release.store import ACTIVE_STATES
from embedded.blob_events import blob_created_event
from ml.sample_data import write_batches, write_holdout
from tests.integration.test_release_flow import MODEL, PROD, World
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
RUNS = int(os.environ.get("SOAK_RUNS", "50"))
SEED = int(os.environ.get("SOAK_SEED", "0")) or random.randrange(1, 10**6)
LEASE = 5  # REACTOR_CLAIM_LEASE_SECONDS of World: a redelivery after it takes the claim over
KILL_WINDOW = 22.0  # seconds after the upload (a run settles in ~24 s): window, job, registration, release
RETRAIN = {MODEL: {"container": "data", "prefix": "diabetes/", "test_container": "data",
                   "test_blob": "holdout/diabetes.csv", "window_seconds": 2, "min_new_files": 1,
                   "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.0, "monitors": []}}


class Delivery(threading.Thread):
    """One event, delivered until some host answers 2xx (Event Grid's at-least-once)."""

    def __init__(self, world: World, event: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.world, self.event, self.attempts = world, event, 0

    def run(self) -> None:
        while True:
            self.attempts += 1
            if EventGridEmulator(self.world.host.url, retries=0).publish([self.event])[0].ok:
                return
            time.sleep(LEASE + 1)  # Event Grid's first retry comes 10 s later; here just past the lease


class Soak:
    def __init__(self, world: World, blobs: BlobServiceClient, data: Path, rng: random.Random) -> None:
        self.world, self.blobs, self.data, self.rng = world, blobs, data, rng
        self.kills: Counter[str] = Counter()
        self.converge_s: list[float] = []
        self.store = TableStateStore.from_connection(world.env["REACTOR_STORAGE_CONNECTION"])
        self.attempts: Counter[int] = Counter()  # the jobs' attempts: 1 = never resumed
        self.redelivered = 0

    def upload(self, run: int) -> Delivery:
        # The same rows under the same name each run (a new ETag, so a new event): every job trains
        # the same model, which ties the champion and passes the gate (improvement 0 >= 0), so each
        # run registers a version and releases it.
        [path] = write_batches(self.data / "batch", files=1, rows=80, seed=7)
        name = "diabetes/soak/batch.csv"
        blob = self.blobs.get_blob_client("data", name)
        info = blob.upload_blob(path.read_bytes(), overwrite=True)
        event = blob_created_event(container="data", name=name, etag=str(info["etag"]), size=path.stat().st_size,
                                   content_type="text/csv", url=blob.url, sequence=run, when=datetime.now(UTC))
        delivery = Delivery(self.world, event)
        delivery.start()
        return delivery

    def phase(self) -> str:
        """What the host was doing when it was killed."""
        s = self.world.services.retraining.state(MODEL)
        active = [r.state for r in self.world.services.releases.store.of_model(MODEL) if r.state in ACTIVE_STATES]
        if active:
            return f"release:{active[0]}"
        if s["in_flight_job"]:
            return "retraining job"
        return "window open" if s["window_id"] else "intake or idle"

    def settled(self) -> bool:
        s = self.world.services.retraining.state(MODEL)
        releases = list(self.world.services.releases.store.of_model(MODEL))
        return not s["window_id"] and not s["in_flight_job"] and all(r.state not in ACTIVE_STATES for r in releases)

    def versions(self) -> list[str]:
        return sorted((m.version for m in self.world.platform.list_models(MODEL)), key=int)

    def last_job(self) -> dict[str, Any]:
        """The job row of the run's retraining job, as the local platform keeps it."""
        name = self.world.services.retraining.state(MODEL)["last_job"]
        entity = self.store.get(self.world.platform.jobs_table, JOB_PARTITION, name)
        assert entity is not None, f"no job row for {name!r}"
        return {"name": name, **{k: entity.props.get(k) for k in ("status", "error", "attempt", "resumed_at")}}

    def one(self, run: int) -> None:
        before = self.versions()
        t0 = time.monotonic()
        delivery = self.upload(run)
        for at in sorted(self.rng.uniform(0.2, KILL_WINDOW) for _ in range(self.rng.choice((1, 1, 2)))):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            self.kills[self.phase()] += 1
            self.world.kill_and_restart_host()
        delivery.join(120)
        assert not delivery.is_alive(), "the BlobCreated event was never acknowledged"
        self.redelivered += delivery.attempts - 1
        wait_for("the run to settle", self.settled, timeout=300, interval=0.5)
        job = self.last_job()  # a job killed with its host was resumed by the next one, never lost
        assert job["status"] == "completed" and self.versions() != before, f"the run's job did not complete: {job}"
        self.attempts[int(job["attempt"] or 1)] += 1
        self.converge_s.append(time.monotonic() - t0)
        self.check(before)

    def check(self, before: list[str]) -> None:
        services, newest = self.world.services, self.versions()[-1]
        assert len(self.versions()) == len(before) + 1, f"one new version per run: {before} -> {self.versions()}"
        releases = {r.version: r for r in services.releases.store.of_model(MODEL)}
        assert set(releases) == set(self.versions()), "every registered version has its release"
        assert releases[newest].state == "promoted", releases[newest].timeline[-3:]
        promoted = Counter(a["version"] for a in services.ledger.audit_records({"model": MODEL})
                           if a["action"] == "release.promoted")
        assert promoted[newest] == 1 and max(promoted.values()) == 1, f"promoted more than once: {promoted}"
        ep = self.world.serving.get_endpoint(PROD)
        assert ep is not None and dict(ep.traffic) == {f"diabetes-v{newest}": 100}, ep
        assert not self.world.violations, self.world.violations[:3]

    def stuck_claims(self) -> int:
        """Claims still 'processing' whose lease has run out: left by a kill, taken over on redelivery."""
        now = datetime.now(UTC).isoformat()
        rows = self.store.query(self.world.services.ledger.events_table, where={"status": "processing"})
        return sum(1 for e in rows if str(e.props.get("lease_until", "")) < now)


def test_crash_soak(azurite: Any, tmp_path: Path) -> None:
    world = World(azurite, tmp_path, env={"REACTOR_RETRAIN_POLICIES": json.dumps(RETRAIN),
                                          "REACTOR_RETRAIN_TICK_SCHEDULE": "*/1 * * * * *",
                                          "REACTOR_ML_PLATFORM": "local"})
    try:
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        if not blobs.get_container_client("data").exists():
            blobs.create_container("data")
        holdout = write_holdout(tmp_path / "holdout").read_bytes()
        blobs.get_blob_client("data", "holdout/diabetes.csv").upload_blob(holdout, overwrite=True)
        soak = Soak(world, blobs, tmp_path, random.Random(SEED))
        started = time.monotonic()
        for run in range(RUNS):
            soak.one(run)
        took = time.monotonic() - started
        times = sorted(soak.converge_s)
        print(f"\ncrash soak: {RUNS} runs, seed {SEED}, {sum(soak.kills.values())} SIGKILLs in {took:.0f} s "
              "(2-core machine, shared)")
        print("  killed during: " + ", ".join(f"{k} {v}" for k, v in sorted(soak.kills.items())))
        resumed = sum(n for attempt, n in soak.attempts.items() if attempt > 1)
        print(f"  upload -> promoted: p50 {times[len(times) // 2]:.1f} s, max {times[-1]:.1f} s; "
              f"BlobCreated redeliveries: {soak.redelivered}")
        by_attempt = ", ".join(f"{n} on attempt {a}" for a, n in sorted(soak.attempts.items()))
        print(f"  jobs completed {sum(soak.attempts.values())}, of which resumed by the platform after their "
              f"host was killed {resumed} ({by_attempt}); jobs failed or redone by hand 0")
        print(f"  double promotions 0, traffic to a missing deployment 0, production requests "
              f"{dict(sorted(world.statuses.items()))}, expired claims left processing {soak.stuck_claims()}")
    finally:
        world.stop()
