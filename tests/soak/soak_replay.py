"""Stream replay (issue 8, item 1), run by ``make soak``: a recorded stream of 10,000 events of every
handled type (BlobCreated, ModelRegistered, ModelDeployed, RunStatusChanged, RunCompleted,
DatasetDriftDetected), generated deterministically at run time (``SOAK_STREAM_EVENTS``,
``SOAK_SEED``), is delivered once in order to one host and three times, shuffled, by three
concurrent senders, to another host on its own tables. Both must end with the same jobs, releases,
deployments and notifications, and the replayed host must have processed each event exactly once.

Timers are off and the batching window is a day long, so no job starts while the stream arrives;
a manual retrain then starts one with everything the window gathered. So what happens depends on
the events alone, not on when a timer fired. Drift events name monitors no
policy watches: a watched one starts a job at once, and how many jobs follow would depend on
how long the jobs take, not on the delivery.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from core.adapters.local_eventgrid import EventGridEmulator
from core.bootstrap import Services, build
from core.settings import Settings
from embedded.azurite import free_port
from embedded.blob_events import blob_created_event
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.integration.test_release_flow import POLICY
from tests.payloads import sample
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
EVENTS = int(os.environ.get("SOAK_STREAM_EVENTS", "10000"))
SEED = int(os.environ.get("SOAK_SEED", "0")) or 20261122
MIX = {"BlobCreated": 0.55, "ModelRegistered": 0.1, "ModelDeployed": 0.1, "RunStatusChanged": 0.1,
       "RunCompleted": 0.1, "DatasetDriftDetected": 0.05}
RETRAIN = {"diabetes": {"container": "data", "prefix": "diabetes/", "test_container": "data",
                        "test_blob": "holdout/diabetes.csv", "window_seconds": 86400, "min_new_files": 1,
                        "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.0,
                        "monitors": ["diabetes-drift"]}}
# Records of when a duplicate arrived: not outcomes.
DELIVERY_ONLY = {"event.duplicate", "event.in_flight"}
# Attempts, not outcomes: a release step tried against the (absent) serving platform is retried on
# each later nudge (a ModelDeployed for its version), so how often depends on which nudges came
# after the release existed; the releases' states are compared instead.
ATTEMPTS = {"release.step_error"}


def stream(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct events in a fixed order; the same ``seed`` gives the same stream."""
    rng, now = random.Random(seed), datetime(2026, 11, 22, 10, tzinfo=UTC)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    return [_event(kind, i, rng, now) for i, kind in enumerate(kinds)]


def _event(kind: str, i: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    if kind == "BlobCreated":
        name = f"diabetes/stream/{i:05d}.csv"
        return blob_created_event(container="data", name=name, etag=f'"0x{i:x}"', size=100 + i % 50,
                                  content_type="text/csv", sequence=i, when=now,
                                  url=f"http://127.0.0.1/devstoreaccount1/data/{name}")
    event = copy.deepcopy(sample(kind, fresh_id=False))
    event["id"] = f"stream-{kind}-{i:05d}"
    data = event["data"]
    if kind == "ModelRegistered":  # a few diabetes candidates (released); the rest models without a policy
        model, version = ("diabetes", str(rng.randint(1, 12))) if rng.random() < 0.1 else (f"other-{i % 7}", str(i))
        data.update(ModelName=model, ModelVersion=version, ModelTags={"stage": "candidate"})
        event["subject"] = f"models/{model}:{version}"
    elif kind == "ModelDeployed":
        data.update(ServiceName=f"endpoint-{i % 5}", ModelIds=f"diabetes:{rng.randint(1, 12)}")
        event["subject"] = f"endpoints/endpoint-{i % 5}"
    elif kind in ("RunStatusChanged", "RunCompleted"):
        run = f"run-{i:05d}"
        data.update(runId=run, runStatus=rng.choice(["Completed", "Failed", "Running"]))
        event["subject"] = f"experiments/{data['experimentId']}/runs/{run}"
    else:
        data.update(DataDriftName=f"unwatched-monitor-{i % 3}", RunId=f"drift-{i:05d}")
    return event


def ordered(host: HostProcess, events: Sequence[dict[str, Any]]) -> None:
    """One delivery in stream order, as Event Grid sends each subscription its events: in order per
    function, in batches of 100."""
    assert all(d.ok for d in EventGridEmulator(host.url, batch_size=100).publish(events))


def shuffled_three_times(host: HostProcess, events: Sequence[dict[str, Any]], seed: int) -> None:
    def send(copy_no: int) -> None:
        mine = list(events)
        random.Random(seed + copy_no).shuffle(mine)
        assert all(d.ok for d in EventGridEmulator(host.url, batch_size=100).publish(mine))

    senders = [threading.Thread(target=send, args=(n,)) for n in range(3)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()


def close_the_window(host: HostProcess, services: Services) -> None:
    """A manual retrain: it starts at once with everything the window gathered (the window itself
    would stay open for a day, so no job starts while the stream arrives)."""
    key = host.env["LOCAL_FUNCTION_KEYS"].split(",")[0].partition(":")[2]
    resp = requests.post(f"{host.url}/api/retrain", json={"model": "diabetes", "reason": "stream replayed"},
                         headers={"x-functions-key": key}, timeout=60)
    assert resp.status_code in (200, 202), resp.text
    wait_for("the job's outcome", lambda: services.retraining.state("diabetes")["last_outcome"], timeout=120)


def outcome(services: Services) -> dict[str, Any]:
    """What the stream made happen, without ids that are random by design (windows, decisions)."""
    audit = services.ledger.audit_records()
    actions = Counter((r["action"], r["model"] or "", r["version"] or "") for r in audit
                      if r["action"] not in DELIVERY_ONLY | ATTEMPTS)
    jobs = [(r["detail"].get("reason"), r["detail"].get("trigger_count")) for r in audit
            if r["action"] == "retrain.started"]
    releases = sorted((r.model, r.version, r.state) for r in services.releases.store.of_model())
    return {"actions": actions, "jobs": jobs, "releases": releases, "notifications": services.outbox.backlog()}


def replay_and_compare(azurite: Any, n: int, seed: int) -> list[str]:
    """Deliver the stream of ``n`` events both ways, assert the outcomes match; the figures."""
    events = stream(n, seed)
    kinds = Counter(e["eventType"].rsplit(".", 1)[-1] for e in events)
    assert set(kinds) == set(MIX), kinds
    hosts, took = {}, {}
    try:
        for name in ("ordered", "replayed"):
            env = base_env(azurite.connection_string, unique_prefix())
            env.update(REACTOR_RETRAIN_POLICIES=json.dumps(RETRAIN), REACTOR_RELEASE_POLICIES=json.dumps(POLICY),
                       REACTOR_ML_PLATFORM="local", REACTOR_LOCAL_SERVING_URL=f"http://127.0.0.1:{free_port()}",
                       REACTOR_LOG_LEVEL="WARNING")
            hosts[name] = (HostProcess(env, timers=False), build(Settings.from_env(env)))
        t0 = time.monotonic()
        ordered(hosts["ordered"][0], events)
        took["ordered"] = time.monotonic() - t0
        t0 = time.monotonic()
        shuffled_three_times(hosts["replayed"][0], events, seed)
        took["replayed"] = time.monotonic() - t0
        for host, services in hosts.values():
            close_the_window(host, services)
        one, three = outcome(hosts["ordered"][1]), outcome(hosts["replayed"][1])
        replayed = hosts["replayed"][1].ledger.audit_records()
        ids = {e["id"] for e in events}  # the platform's own events (the job's) are not the stream's
        mine = [r for r in replayed if r["event_id"] in ids]
        processed = Counter(r["event_id"] for r in mine if r["action"] == "event.processed")
        duplicates = sum(1 for r in mine if r["action"] in DELIVERY_ONLY)
    finally:
        for host, _ in hosts.values():
            host.stop()
    assert len(processed) == n and max(processed.values()) == 1, "each event processed exactly once"
    assert duplicates == 2 * n, "the other two copies of every event were recognised as duplicates"
    assert one["jobs"] == three["jobs"] and len(one["jobs"]) == 1, (one["jobs"], three["jobs"])
    assert one["releases"] == three["releases"] and one["releases"], (one["releases"], three["releases"])
    assert one["notifications"] == three["notifications"]
    assert one["actions"] == three["actions"], set(one["actions"].items()) ^ set(three["actions"].items())
    return [f"stream replay: {n} events, seed {seed}: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
            f"  ordered once: {took['ordered']:.0f} s ({n / took['ordered']:.0f} events/s); shuffled x3 by 3 "
            f"senders: {took['replayed']:.0f} s ({3 * n / took['replayed']:.0f} events/s) (2-core machine, shared)",
            f"  processed once: {len(processed)}, duplicates recognised: {duplicates}, processed twice: 0",
            f"  jobs {len(three['jobs'])} {three['jobs']}, releases {len(three['releases'])} "
            f"({dict(Counter(s for _, _, s in three['releases']))}), notifications pending {three['notifications']}, "
            f"outcome records {sum(three['actions'].values())}: identical to the ordered delivery"]


def test_a_shuffled_triple_replay_ends_as_one_ordered_delivery(azurite: Any) -> None:
    print("\n" + "\n".join(replay_and_compare(azurite, EVENTS, SEED)))
