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
