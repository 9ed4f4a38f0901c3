from __future__ import annotations

from datetime import timedelta

import pytest

from core.ledger import AuditRecord, Ledger, event_key
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(clock: Clock) -> Ledger:
    return Ledger(MemoryStateStore(), MemoryBlobStore(), prefix="t", container="t-internal", clock=clock,
                  lease_seconds=60)


def test_first_claim_wins_second_sees_in_flight_then_duplicate(ledger: Ledger) -> None:
    first = ledger.claim("on_x", "k1", {}, "c")
    assert first.state == "won"
    assert ledger.claim("on_x", "k1", {}, "c").state == "in_flight"
    assert ledger.finish(first, "done", {"action": "recorded"})
    again = ledger.claim("on_x", "k1", {}, "c")
    assert (again.state, again.status) == ("duplicate", "done")


def test_same_event_for_another_function_is_its_own_claim(ledger: Ledger) -> None:
    assert ledger.claim("on_x", "k1", {}, "c").state == "won"
    assert ledger.claim("on_y", "k1", {}, "c").state == "won"


def test_expired_lease_is_taken_over_once(ledger: Ledger, clock: Clock) -> None:
    crashed = ledger.claim("on_x", "k1", {}, "c")
    clock.now += timedelta(seconds=61)
    retry = ledger.claim("on_x", "k1", {}, "c")
    assert (retry.state, retry.attempt) == ("won", 2)
    assert ledger.claim("on_x", "k1", {}, "c").state == "in_flight"
    assert not ledger.finish(crashed, "done", {}), "the crashed holder lost its claim"
    assert ledger.finish(retry, "done", {})


def test_event_key_separates_sources_and_types() -> None:
    assert event_key("/a", "T", "1") == event_key("/A", "t", "1")
    assert event_key("/a", "T", "1") != event_key("/b", "T", "1")
    assert event_key("/a", "T1", "1") != event_key("/a", "T2", "1")


def test_dead_letter_keeps_payload_once(ledger: Ledger) -> None:
    letter, created = ledger.dead_letter("on_x", b'{"bad": 1}', reason="id: is required", field_name="id")
    again, created_again = ledger.dead_letter("on_x", b'{"bad": 1}', reason="id: is required", field_name="id")
    assert (letter, created, created_again) == (again, True, False)
    [stored] = ledger.dead_letters()
    assert stored.field == "id" and stored.status == "pending"
    assert ledger.dead_letter_payload(stored) == b'{"bad": 1}'


def test_audit_records_are_ordered_and_filterable(ledger: Ledger, clock: Clock) -> None:
    ledger.audit(AuditRecord("a.first", "c1", model="m"))
    clock.now += timedelta(seconds=1)
    ledger.audit(AuditRecord("a.second", "c1", model="m", detail={"n": 2}))
    ledger.audit(AuditRecord("other", "c2"))
    records = ledger.audit_records({"correlation_id": "c1"})
    assert [r["action"] for r in records] == ["a.first", "a.second"]
    assert records[1]["detail"] == {"n": 2}


def test_failed_claim_is_taken_over_only_by_a_replay(ledger: Ledger) -> None:
    claim = ledger.claim("on_x", "k1", {}, "c")
    ledger.finish(claim, "failed", {"error": "boom"})
    assert ledger.claim("on_x", "k1", {}, "c").state == "duplicate"
    retry = ledger.claim("on_x", "k1", {}, "c", retry_failed=True)
    assert (retry.state, retry.attempt) == ("won", 2)
    assert ledger.claim("on_x", "k1", {}, "c", retry_failed=True).state == "in_flight"


def test_the_finish_is_the_events_audit_record(ledger: Ledger, clock: Clock) -> None:
    ledger.audit(AuditRecord("before", "c"))
    clock.now += timedelta(seconds=1)
    summary = {"event_id": "e1", "event_type": "T", "model": "m", "version": "2"}
    claim = ledger.claim("on_x", "k1", summary, "c")
    assert [r["action"] for r in ledger.audit_records()] == ["before"], "a claim in flight is not a record yet"
    clock.now += timedelta(seconds=1)
    assert ledger.finish(claim, "done", {"action": "recorded"}, record=AuditRecord("event.processed", "c"))
    clock.now += timedelta(seconds=1)
    ledger.audit(AuditRecord("after", "c"))
    records = ledger.audit_records({"correlation_id": "c"})
    assert [r["action"] for r in records] == ["before", "event.processed", "after"], "one time order"
    processed = records[1]
    assert {k: processed[k] for k in ("function", "event_id", "event_type", "model", "version", "actor", "detail")} \
        == {"function": "on_x", "event_id": "e1", "event_type": "T", "model": "m", "version": "2",
            "actor": "system", "detail": {"action": "recorded"}}
    assert [r["id"] for r in ledger.audit_records({"function": "on_x", "action": "event.processed"})] \
        == [processed["id"]]
    assert ledger.audit_records({"function": "on_y"}) == []


def test_a_crashed_holder_leaves_no_record_and_the_taker_leaves_one(ledger: Ledger, clock: Clock) -> None:
    crashed = ledger.claim("on_x", "k1", {"event_id": "e1"}, "c")
    clock.now += timedelta(seconds=61)
    taker = ledger.claim("on_x", "k1", {"event_id": "e1"}, "c")
    assert not ledger.finish(crashed, "done", {}, record=AuditRecord("event.processed", "c"))
    assert ledger.finish(taker, "done", {"by": "taker"}, record=AuditRecord("event.processed", "c"))
    [record] = ledger.audit_records({"event_id": "e1"})
    assert (record["action"], record["detail"]) == ("event.processed", {"by": "taker"})


def test_a_replay_keeps_the_failed_record_with_its_id(ledger: Ledger, clock: Clock) -> None:
    claim = ledger.claim("on_x", "k1", {"event_id": "e1"}, "c")
    ledger.finish(claim, "failed", {"error": "boom"}, record=AuditRecord("event.failed", "c"))
    [failed] = ledger.audit_records({"event_id": "e1"})
    clock.now += timedelta(seconds=5)
    retry = ledger.claim("on_x", "k1", {"event_id": "e1"}, "c", retry_failed=True)
    assert ledger.audit_records({"event_id": "e1"}) == [failed], "kept while the replay runs"
    ledger.finish(retry, "done", {"action": "recorded"}, record=AuditRecord("event.processed", "c"))
    kept, processed = ledger.audit_records({"event_id": "e1"})
    assert kept == failed and processed["action"] == "event.processed"


def test_a_redelivery_of_what_this_process_finished_needs_no_storage_round_trip(clock: Clock) -> None:
    store = MemoryStateStore()
    ledger = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=clock, lease_seconds=60)
    ledger.finish(ledger.claim("on_x", "k1", {}, "c"), "done", {}, record=AuditRecord("event.processed", "c"))
    failed = ledger.claim("on_x", "k2", {}, "c")
    ledger.finish(failed, "failed", {}, record=AuditRecord("event.failed", "c"))
    writes = store.writes
    again = ledger.claim("on_x", "k1", {}, "c")
    assert (again.state, again.status, store.writes) == ("duplicate", "done", writes)
    other = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=clock, lease_seconds=60)
    assert other.claim("on_x", "k1", {}, "c") == again, "another instance reads the same answer from storage"
    assert ledger.claim("on_x", "k2", {}, "c", retry_failed=True).state == "won", "a failed claim is not final"


def test_the_audit_hook_hears_of_the_record_a_finish_writes_once(clock: Clock) -> None:
    heard: list[str] = []
    ledger = Ledger(MemoryStateStore(), MemoryBlobStore(), prefix="t", container="t-internal", clock=clock,
                    lease_seconds=60, on_audit=lambda record, at: heard.append(record.action))
    crashed = ledger.claim("on_x", "k1", {}, "c")
    clock.now += timedelta(seconds=61)
    taker = ledger.claim("on_x", "k1", {}, "c")
    assert not ledger.finish(crashed, "done", {}, record=AuditRecord("event.processed", "c"))
    assert heard == [], "a lost lease wrote nothing, so there is nothing to tell"
    assert ledger.finish(taker, "done", {}, record=AuditRecord("event.processed", "c"))
    ledger.audit(AuditRecord("other", "c"))
    assert heard == ["event.processed", "other"]


def test_settle_claims_and_finishes_in_one_write(clock: Clock) -> None:
    store = MemoryStateStore()
    heard: list[str] = []
    ledger = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=clock, lease_seconds=60,
                    on_audit=lambda record, at: heard.append(record.action))
    summary = {"event_id": "e1", "event_type": "T", "model": "m", "version": "2"}
    claim = ledger.settle("on_x", "k1", summary, "c", {"action": "ignored"}, AuditRecord("event.processed", "c"))
    assert (claim.state, claim.status, store.writes) == ("won", "done", 1)
    [record] = ledger.audit_records({"event_id": "e1"})
    assert {k: record[k] for k in ("action", "function", "model", "version", "correlation_id", "detail")} == {
        "action": "event.processed", "function": "on_x", "model": "m", "version": "2", "correlation_id": "c",
        "detail": {"action": "ignored"}}
    assert heard == ["event.processed"]
    other = Ledger(store, MemoryBlobStore(), prefix="t", container="t-internal", clock=clock, lease_seconds=60)
    again = other.settle("on_x", "k1", summary, "c", {"action": "ignored"}, AuditRecord("event.processed", "c"))
    assert (again.state, again.status) == ("duplicate", "done"), "a redelivery to another instance"
    assert other.claim("on_x", "k1", summary, "c").state == "duplicate"
    assert len(ledger.audit_records({"event_id": "e1"})) == 1 and store.writes == 1


def test_settle_waits_for_a_live_claim_and_finishes_a_dead_one(ledger: Ledger, clock: Clock) -> None:
    held = ledger.claim("on_x", "k1", {"event_id": "e1"}, "c")
    outcome, record = {"action": "ignored"}, AuditRecord("event.processed", "c")
    assert ledger.settle("on_x", "k1", {"event_id": "e1"}, "c", outcome, record).state == "in_flight"
    clock.now += timedelta(seconds=61)  # the holder died: its lease ran out
    taken = ledger.settle("on_x", "k1", {"event_id": "e1"}, "c", outcome, record)
    assert (taken.state, taken.status, taken.attempt) == ("won", "done", 2)
    assert not ledger.finish(held, "done", {}, record=record), "the dead holder's late finish loses"
    [processed] = ledger.audit_records({"event_id": "e1"})
    assert processed["detail"] == outcome
    assert ledger.claim("on_x", "k1", {"event_id": "e1"}, "c").state == "duplicate"
