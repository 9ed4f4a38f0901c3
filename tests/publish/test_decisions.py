"""The real services' decisions become our events: the release state machine and the retraining
policy run on fakes of the outside world (storage in memory, endpoints, ML platform), and the
events their audit records make are the catalogue's, valid CloudEvents, one per decision."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.errors import StoreError
from core.ledger import Ledger
from core.notify.codec import from_props
from core.notify.outbox import Outbox
from core.notify.request import Request
from core.notify.send import Verdict
from core.publish import publisher as pub
from core.publish.cloudevent import from_notification, problems
from core.publish.sweep import Sweep
from core.retrain_policy import parse_policies
from core.retraining import Retraining
from tests.fakes import MemoryBlobStore, MemoryStateStore
from tests.unit.test_release import World
from tests.unit.test_retraining import POLICY, RecordingPlatform, blob

SOURCE = "urn:mlops-reactor:test"


class RecordingTopic:
    """A fake of the topic (the outside world): takes every request and keeps it."""

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def __call__(self, request: Request, now: datetime) -> Verdict:
        self.sent.append(request)
        return Verdict("delivered", 200)


def publishing(store: MemoryStateStore, ledger: Ledger, clock) -> tuple[pub.Publisher, RecordingTopic]:
    topic = RecordingTopic()
    outbox = Outbox(store, ledger, prefix=pub.table_prefix("t"), routes=pub.topic_routes("https://t/api/events", ""),
                    clock=clock, send=topic, build=pub.build_request)
    publisher = pub.Publisher(outbox, Sweep(store, ledger, outbox, prefix=pub.table_prefix("t"), clock=clock),
                              source=SOURCE)
    ledger.on_audit = publisher.observe
    return publisher, topic


def stored(publisher: pub.Publisher) -> list[dict]:
    rows = publisher.outbox._store.query(publisher.outbox.notifications_table)
    return sorted((from_notification(from_props(r.props)).to_dict() for r in rows), key=lambda e: e["time"])


def test_a_release_promoted_then_one_rolled_back() -> None:
    store = MemoryStateStore()
    world = World(store, MemoryBlobStore())
    publisher, topic = publishing(store, world.ledger, world.clock)
    world.to_production("1")
    world.register("1")  # a redelivered ModelRegistered: no second ReleaseStarted
    world.to_approval("2")
    world.releases.approve("diabetes:2", "lead", ["approver"])
    world.pass_time(1, ticks=2)
    world.serving.served["diabetes-v2"] = (40, 12, 30.0)
    world.pass_time(5)
    assert world.state("2") == "rolled_back"
    events = stored(publisher)
    assert [(e["type"].removeprefix("mlops.reactor."), e["subject"]) for e in events] == [
        ("ReleaseStarted", "models/diabetes:1"), ("ReleasePromoted", "models/diabetes:1"),
        ("ReleaseStarted", "models/diabetes:2"), ("ReleaseRolledBack", "models/diabetes:2")]
    assert all(problems(e) == [] and e["source"] == SOURCE for e in events)
    rolled = events[-1]["data"]
    assert rolled["state"] == "rolled_back" and "error rate 30.0% above 5.0%" in rolled["note"]
    assert publisher.drain(world.clock.now).sent == 4 and len(topic.sent) == 4
    assert sorted(r.body["id"] for r in topic.sent) == sorted(e["id"] for e in events)


def test_a_retraining_job_started_and_completed() -> None:
    from tests.fakes import Clock

    store, clock = MemoryStateStore(), Clock()
    ledger = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=clock, lease_seconds=60)
    policies, _ = parse_policies(json.dumps(POLICY))
    platform = RecordingPlatform()
    retraining = Retraining(store, ledger, platform, policies, prefix="t", clock=clock)
    publisher, _ = publishing(store, ledger, clock)
    retraining.on_blob_created(blob("diabetes/a.csv"), None)
    retraining.on_blob_created(blob("diabetes/b.csv"), None)
    clock.now += timedelta(seconds=61)
    retraining.tick()
    [job] = platform.jobs
    platform.finish(job, "completed")
    clock.now += timedelta(seconds=30)
    retraining.tick()  # the timer finds the finished job (a lost outcome event, repaired)
    retraining.tick()
    events = stored(publisher)
    assert [e["type"] for e in events] == ["mlops.reactor.RetrainStarted", "mlops.reactor.RetrainCompleted"]
    started, done = events
    assert started["subject"] == "models/diabetes" and started["data"]["files"] == 2
    assert started["data"]["job"] == done["data"]["job"] == job and done["data"]["status"] == "completed"
    assert all(problems(e) == [] for e in events)


class RefusingStore(MemoryStateStore):
    """Storage that refuses every write to the events outbox's tables while ``refusing`` (throttled, down)."""

    refusing = True

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        if self.refusing and table.startswith(pub.table_prefix("t")):
            raise StoreError(f"{table}: 503 Server Busy")
        return super().insert(table, partition, row, props)


def test_an_event_that_cannot_be_stored_never_fails_the_decision_and_is_sent_later(caplog) -> None:
    store = RefusingStore()
    world = World(store, MemoryBlobStore())
    publisher, topic = publishing(store, world.ledger, world.clock)
    world.to_production("1")  # every step audited; every event refused
    assert world.state("1") == "promoted"
    assert [r["action"] for r in world.ledger.audit_records()].count("release.promoted") == 1
    assert "our event could not be stored with its decision; a drain will store it" in caplog.text
    assert "503 Server Busy" in caplog.text
    swept = publisher.sweep.run(publisher.event_of, world.clock.now + timedelta(minutes=3))
    assert (swept.failed, swept.recovered) == (1, 0), "storage still down: the sweep says so, and does not raise"
    store.refusing = False
    report = publisher.drain(world.clock.now + timedelta(minutes=3, seconds=30))
    assert report.sweep.recovered == report.sent == 2 and len(topic.sent) == 2
    assert [r.body["type"] for r in topic.sent] == ["mlops.reactor.ReleaseStarted", "mlops.reactor.ReleasePromoted"]
