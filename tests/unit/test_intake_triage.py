"""The intake's triage: an event its handler has nothing to do for is claimed and finished in one
Table write; every other event is claimed, handled, then finished. The record is the same."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from core.events import BlobCreated, Event, parse_event
from core.intake import EventContext, Intake
from core.ledger import Ledger, event_key
from core.sources import SourcePolicy
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore
from tests.payloads import sample

FUNCTION = "on_blob_created"


class World:
    def __init__(self) -> None:
        self.store = MemoryStateStore()
        self.clock = Clock()
        self.ledger = Ledger(self.store, MemoryBlobStore(), prefix="t", container="t-internal", clock=self.clock,
                             lease_seconds=60)
        self.handled: list[str] = []
        self.intake = Intake(self.ledger, SourcePolicy(["*"], ["*"]))
        self.intake.handle(BlobCreated, self.handler, self.triage)

    def handler(self, event: Event, ctx: EventContext) -> Mapping[str, Any]:
        self.handled.append(event.id)
        return self.triage(event) or {"action": "coalesced"}

    @staticmethod
    def triage(event: Event) -> Mapping[str, Any] | None:
        assert isinstance(event, BlobCreated)
        return None if event.container == "data" else {"action": "ignored", "reason": "no model is fed by it"}

    def records(self, event_id: str) -> list[dict[str, Any]]:
        return self.ledger.audit_records({"event_id": event_id})


def blob(container: str) -> dict[str, Any]:
    raw = sample("BlobCreated")
    raw["subject"] = f"/blobServices/default/containers/{container}/blobs/x.csv"
    return raw


@pytest.fixture
def world() -> World:
    return World()


def test_an_event_with_no_work_costs_one_write_and_leaves_the_same_record(world: World) -> None:
    ignored, work = blob("other"), blob("data")
    receipt = world.intake.receive(FUNCTION, ignored)
    assert (receipt.status, receipt.detail["action"], world.store.writes) == ("processed", "ignored", 1)
    assert world.handled == [], "the triage answered: the handler did not run"
    world.intake.receive(FUNCTION, work)
    assert world.store.writes == 3 and world.handled == [work["id"]], "claim, then finish"
    [quiet], [busy] = world.records(ignored["id"]), world.records(work["id"])
    assert quiet.keys() == busy.keys()
    assert (quiet["action"], quiet["detail"], busy["action"]) == ("event.processed", receipt.detail,
                                                                  "event.processed")


def test_redeliveries_of_an_event_with_no_work_are_duplicates(world: World) -> None:
    raw = blob("other")
    world.intake.receive(FUNCTION, raw)
    other = Intake(Ledger(world.store, MemoryBlobStore(), prefix="t", container="t-internal", clock=world.clock,
                          lease_seconds=60), SourcePolicy(["*"], ["*"]))
    other.handle(BlobCreated, world.handler, world.triage)
    assert [other.receive(FUNCTION, raw).status, world.intake.receive(FUNCTION, raw).status] \
        == ["duplicate", "duplicate"]
    assert [r["action"] for r in world.records(raw["id"])].count("event.processed") == 1


def test_a_dead_deliverys_claim_is_taken_over_after_its_lease(world: World) -> None:
    raw = blob("other")
    event = parse_event(raw)
    key = event_key(event.source, event.type, event.id)
    world.ledger.claim(FUNCTION, key, event.summary(), "died")  # a host that died holding it
    assert world.intake.receive(FUNCTION, raw).status == "in_flight"
    world.clock.now += timedelta(seconds=61)  # after its lease
    receipt = world.intake.receive(FUNCTION, raw)
    assert (receipt.status, receipt.detail["action"]) == ("processed", "ignored")
    assert world.ledger.event_record(FUNCTION, key).props["status"] == "done"  # type: ignore[union-attr]


def test_a_triage_that_fails_leaves_the_event_to_its_handler(world: World) -> None:
    def broken(event: Event) -> Mapping[str, Any] | None:
        raise KeyError("a setting the triage needed")

    world.intake.handle(BlobCreated, world.handler, broken)
    raw = blob("other")
    receipt = world.intake.receive(FUNCTION, raw)
    assert (receipt.status, world.handled) == ("processed", [raw["id"]])


def test_setting_a_handler_without_a_triage_runs_it_for_every_event(world: World) -> None:
    world.intake.handle(BlobCreated, world.handler)
    raw = blob("other")
    world.intake.receive(FUNCTION, raw)
    assert world.handled == [raw["id"]] and world.store.writes == 2


def test_an_event_type_without_a_handler_is_recorded_in_one_write() -> None:
    store = MemoryStateStore()
    ledger = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=Clock(), lease_seconds=60)
    receipt = Intake(ledger, SourcePolicy(["*"], ["*"])).receive("on_model_deployed", sample("ModelDeployed"))
    assert (receipt.status, receipt.detail, store.writes) == ("processed", {"action": "recorded"}, 1)
