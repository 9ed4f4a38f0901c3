"""Outbox housekeeping on real Azurite: the drain reads only what is due (a range of the due index,
never a scan of every delivery), delivered and rejected rows are pruned after the retention, rows
stored before the index existed are indexed once, and index rows left by a crash are dropped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from core.adapters.table_store import TableStateStore
from core.notify.outbox import Outbox, notification_key
from core.notify.send import Sender
from core.ports import Entity
from tests.notify.conftest import T0, note, routes_for

pytestmark = pytest.mark.integration


class RecordingStore:
    """The real Table Storage adapter, with a record of every read (what the drain costs)."""

    def __init__(self, inner: TableStateStore) -> None:
        self.inner = inner
        self.reads: list[tuple[str, str, str | None]] = []  # (call, table, partition)

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        return self.inner.insert(table, partition, row, props)

    def update(self, table: str, partition: str, row: str, props: Mapping[str, Any], etag: str) -> str:
        return self.inner.update(table, partition, row, props, etag)

    def delete(self, table: str, partition: str, row: str) -> None:
        self.inner.delete(table, partition, row)

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        self.reads.append(("get", table, partition))
        return self.inner.get(table, partition, row)

    def query(self, table: str, partition: str | None = None,
              where: Mapping[str, Any] | None = None) -> Iterator[Entity]:
        self.reads.append(("query", table, partition))
        return self.inner.query(table, partition, where)

    def query_rows(self, table: str, partition: str, *, below: str, limit: int, above: str = "",
                   prefixes: Mapping[str, Sequence[str]] | None = None) -> Iterator[Entity]:
        self.reads.append(("query_rows", table, partition))
        return self.inner.query_rows(table, partition, below=below, limit=limit, above=above, prefixes=prefixes)

    def scans(self, table: str) -> int:
        return sum(1 for call, t, partition in self.reads if call == "query" and t == table and partition is None)


@pytest.fixture
def recorded(store, ledger, env, clock, receiver) -> tuple[Outbox, RecordingStore]:
    recording = RecordingStore(store)
    box = Outbox(recording, ledger, prefix=env["REACTOR_TABLE_PREFIX"], routes=routes_for(receiver.url),
                 clock=clock, send=Sender(timeout=5), jitter=lambda: 1.0, retention=timedelta(hours=24))
    return box, recording


def rows(store: TableStateStore, table: str) -> list[Entity]:
    return list(store.query(table))


def test_the_drain_reads_only_due_deliveries_however_many_are_stored(recorded, receiver, clock):
    outbox, store = recorded
    for i in range(30):
        outbox.enqueue(note(i, to="slack"))
    assert outbox.drain().sent == 30 and outbox.backlog() == 0
    receiver.fail("webhook", 503)
    outbox.enqueue(note(99, to="webhook"))
    clock.now += timedelta(minutes=1)
    store.reads.clear()
    report = outbox.drain()
    assert (report.sent, report.retried) == (0, 1)
    delivery_gets = [r for r in store.reads if r[0] == "get" and r[1] == outbox.deliveries_table]
    assert len(delivery_gets) == 1, "one due delivery read, not the 30 sent ones"
    assert store.scans(outbox.deliveries_table) == 0
    store.reads.clear()
    assert outbox.drain().retried == 0 and receiver.attempts["webhook"] == 1  # not due yet: nothing read
    assert [r for r in store.reads if r[1] == outbox.deliveries_table and r[0] == "get"] == []
    receiver.recover("webhook")
    clock.now += timedelta(minutes=10)
    assert outbox.drain().sent == 1 and outbox.backlog() == 0


def test_sent_and_rejected_rows_are_pruned_after_the_retention_and_pending_ones_never(recorded, store, receiver,
                                                                                    clock, ledger):
    outbox, _ = recorded
    receiver.fail("teams", 400)
    receiver.fail("opsgenie", 500)
    for to in ("slack", "teams", "opsgenie"):
        outbox.enqueue(note(1, to=to))
    report = outbox.drain()
    assert (report.sent, report.rejected, report.retried) == (1, 1, 1)
    clock.now = T0 + timedelta(hours=23)
    assert outbox.drain().pruned == 0
    assert len(rows(store, outbox.deliveries_table)) == 3
    clock.now = T0 + timedelta(hours=24, seconds=1)
    assert outbox.drain().pruned == 2
    [left] = rows(store, outbox.deliveries_table)
    assert (left.row, left.props["status"]) == ("opsgenie", "pending")  # still owed: never pruned
    kept = {e.partition for e in rows(store, outbox.notifications_table)}
    assert kept == {notification_key("alert-opsgenie-1")}
    assert any(r["action"] == "notification_rejected" for r in ledger.audit_records()), "the audit keeps it"
    receiver.recover("opsgenie")
    clock.now += timedelta(minutes=1)  # its retry comes due
    assert outbox.drain().sent == 1
    clock.now += timedelta(hours=25)
    assert outbox.drain().pruned == 1
    assert rows(store, outbox.deliveries_table) == [] and rows(store, outbox.notifications_table) == []
    assert [e.partition for e in rows(store, outbox.index_table)] == ["meta"]


def test_rows_stored_before_the_index_are_indexed_once_and_delivered(store, ledger, env, clock, receiver):
    prefix = env["REACTOR_TABLE_PREFIX"]
    old = note(1, to="slack")
    key = notification_key(old.id)
    from core.notify.codec import to_props

    store.insert(f"{prefix}notifications", key, "n", to_props(old))  # as the outbox stored it before the index
    store.insert(f"{prefix}deliveries", key, "slack", {
        "notification_id": old.id, "receiver": "slack", "status": "pending", "attempts": 0,
        "due_at": T0.isoformat(), "lease_until": "", "created_at": T0.isoformat(), "last_error": "",
        "last_status": 0})
    recording = RecordingStore(store)
    outbox = Outbox(recording, ledger, prefix=prefix, routes=routes_for(receiver.url), clock=clock,
                    send=Sender(timeout=5), jitter=lambda: 1.0, retention=timedelta(hours=1))
    assert outbox.drain().sent == 1 and len(receiver.of("slack")) == 1
    assert recording.scans(outbox.deliveries_table) == 1  # the one backfill read
    again = Outbox(recording, ledger, prefix=prefix, routes=routes_for(receiver.url), clock=clock,
                   send=Sender(timeout=5), jitter=lambda: 1.0, retention=timedelta(hours=1))
    again.drain()
    assert recording.scans(outbox.deliveries_table) == 1  # a new instance sees the marker
    clock.now += timedelta(hours=2)
    assert again.drain().pruned == 1


def test_an_index_row_left_by_a_crash_is_dropped_and_the_delivery_is_made_once(outbox, store, receiver, clock):
    outbox.enqueue(note(1, to="slack"))
    [due] = list(store.query(outbox.index_table, partition="due"))
    # a crash between writing a new index row and moving the delivery: a row for a time it never got
    store.insert(outbox.index_table, "due", "20000101T000000000000Z|" + due.row.split("|", 1)[1], dict(due.props))
    report = outbox.drain()
    assert (report.sent, report.stale) == (1, 1) and len(receiver.of("slack")) == 1
    assert outbox.backlog() == 0 and outbox.drain().sent == 0


def test_the_same_notification_enqueued_twice_at_one_instant_keeps_its_index(outbox, receiver):
    outbox.drain()  # the index marker exists: nothing is re-indexed by a backfill any more
    assert outbox.enqueue(note(1, to="slack")) is True
    assert outbox.enqueue(note(1, to="slack")) is False  # same clock reading: the same index row
    assert outbox.backlog() == 1 and outbox.drain().sent == 1 and len(receiver.of("slack")) == 1


def test_a_notification_routed_nowhere_is_kept_for_the_retention_then_pruned(store, ledger, env, clock):
    from core.notify.routing import parse_routes

    nowhere, problems = parse_routes("", {})
    assert problems == []
    outbox = Outbox(store, ledger, prefix=env["REACTOR_TABLE_PREFIX"], routes=nowhere, clock=clock,
                    send=Sender(timeout=5), retention=timedelta(hours=1))
    assert outbox.enqueue(note(1)) is True and outbox.deliveries("alert-slack-1") == []
    assert outbox.drain().pruned == 0 and len(rows(store, outbox.notifications_table)) == 1
    clock.now += timedelta(hours=1, seconds=1)
    outbox.drain()
    assert rows(store, outbox.notifications_table) == []
