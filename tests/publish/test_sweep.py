"""Our events are never lost: an event whose store failed with its decision is stored by a later
drain's sweep of the audit trail, sent once, never twice; the sweep reads key ranges, a bounded
number per drain, and its watermark survives a restart and two drains at once. Storage is the
in-memory fake, refusing writes as a busy storage account does; time moves by hand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from core.errors import StoreError
from core.ledger import AuditRecord, Ledger, audit_stamp
from core.notify.outbox import Outbox
from core.ports import Entity
from core.publish import publisher as pub
from core.publish.catalogue import event_for
from core.publish.sweep import MARGIN, Sweep
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore
from tests.publish.test_decisions import SOURCE, RecordingTopic

PREFIX = pub.table_prefix("t")
LATER = MARGIN + timedelta(seconds=1)  # past the sweep's margin


class BusyStore(MemoryStateStore):
    """Storage that refuses the next ``refuse[table]`` inserts into a table (503 Server Busy) and
    records the reads it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: Counter[str] = Counter()
        self.scans: list[str] = []
        self.ranges: list[tuple[str, str, str, str]] = []

    def insert(self, table: str, partition: str, row: str, props: Mapping[str, Any]) -> str:
        if self.refuse[table] > 0:
            self.refuse[table] -= 1
            raise StoreError(f"{table}: 503 Server Busy")
        return super().insert(table, partition, row, props)

    def query(self, table: str, partition: str | None = None,
              where: Mapping[str, Any] | None = None) -> Iterator[Entity]:
        self.scans.append(table)
        return super().query(table, partition, where)

    def query_rows(self, table: str, partition: str, *, below: str, limit: int, above: str = "",
                   prefixes: Mapping[str, Sequence[str]] | None = None) -> Iterator[Entity]:
        self.ranges.append((table, partition, above, below))
        return super().query_rows(table, partition, below=below, limit=limit, above=above, prefixes=prefixes)


class World:
    """One app instance: ledger, events outbox and publisher on shared storage and a shared clock."""

    def __init__(self, store: BusyStore | None = None, clock: Clock | None = None, limit: int = 1000) -> None:
        self.store, self.clock = store or BusyStore(), clock or Clock()
        self.ledger = Ledger(self.store, MemoryBlobStore(), prefix="t", container="t-internal", clock=self.clock,
                             lease_seconds=60)
        self.topic = RecordingTopic()
        self.outbox = Outbox(self.store, self.ledger, prefix=PREFIX, clock=self.clock, send=self.topic,
                             routes=pub.topic_routes("https://t/api/events", ""), build=pub.build_request)
        self.sweep = Sweep(self.store, self.ledger, self.outbox, prefix=PREFIX, clock=self.clock, limit=limit)
        self.publisher = pub.Publisher(self.outbox, self.sweep, source=SOURCE)
        self.ledger.on_audit = self.publisher.observe

    def promote(self, version: str, **detail: Any) -> AuditRecord:
        record = AuditRecord("release.promoted", f"c{version}", function="releases", model="diabetes",
                             version=version, detail={"release": f"diabetes:{version}", **detail})
        self.ledger.audit(record)
        return record

    def drain(self, after: timedelta = timedelta(0)) -> pub.PublishReport:
        self.clock.now += after
        return self.publisher.drain(self.clock.now)

    def sent(self) -> Counter[str]:
        return Counter(r.body["id"] for r in self.topic.sent)


def test_an_event_refused_with_its_decision_is_sent_once_by_a_later_drain(caplog) -> None:
    world = World()
    world.store.refuse[world.outbox.notifications_table] = 1
    record = world.promote("4", note="diabetes-v4 serves 100%")
    at = world.clock.now
    assert "our event could not be stored with its decision" in caplog.text and "503 Server Busy" in caplog.text
    first = world.drain()
    assert (first.sent, first.sweep.recovered) == (0, 0), "within the margin the sweep has not reached it"
    later = world.drain(LATER)
    assert (later.sent, later.sweep.recovered, later.sweep.failed) == (1, 1, 0)
    assert "event recovered from the audit trail" in caplog.text
    for _ in range(3):
        again = world.drain(timedelta(minutes=10))
        assert (again.sent, again.sweep.recovered) == (0, 0)
    expected = event_for(record, at, SOURCE)
    assert expected is not None and world.sent() == {"release/diabetes:4/ReleasePromoted": 1}
    body = world.topic.sent[0].body
    assert body == expected.to_dict(), "the event as observe would have stored it, time of the decision included"


def test_an_enqueue_cut_short_after_its_notification_row_gets_its_delivery() -> None:
    world = World()
    world.store.refuse[world.outbox.deliveries_table] = 1
    world.promote("4")
    assert world.drain().sent == 0
    report = world.drain(LATER)
    assert (report.sent, report.sweep.recovered) == (1, 1)
    assert world.drain(timedelta(minutes=10)).sent == 0 and world.sent() == {"release/diabetes:4/ReleasePromoted": 1}


def test_events_stored_with_their_decisions_are_neither_stored_nor_sent_again() -> None:
    world = World()
    for version in ("1", "2", "3"):
        world.promote(version)
    world.promote("3")  # the same decision recorded again (a retried step): one event
    assert world.drain().sent == 3
    writes = world.store.writes
    report = world.drain(LATER)
    assert (report.sweep.read, report.sweep.recovered, report.sent) == (4, 0, 0)
    assert world.store.writes == writes + 1, "the sweep wrote its watermark and nothing else"
    assert set(world.sent().values()) == {1} and len(world.sent()) == 3


def test_storage_refusing_the_sweep_stops_it_there_and_a_later_drain_goes_on() -> None:
    world = World()
    world.store.refuse[world.outbox.notifications_table] = 3  # both decisions' events, then the sweep's first
    world.promote("1")
    world.promote("2")
    stopped = world.drain(LATER)
    assert (stopped.sweep.failed, stopped.sweep.recovered, stopped.sent) == (1, 0, 0)
    resumed = world.drain(timedelta(seconds=30))
    assert (resumed.sweep.failed, resumed.sweep.recovered, resumed.sent) == (0, 2, 2)
    assert world.sent() == {"release/diabetes:1/ReleasePromoted": 1, "release/diabetes:2/ReleasePromoted": 1}


def test_a_row_that_is_no_record_is_logged_and_passed_not_a_stall(caplog) -> None:
    world = World()
    world.store.refuse[world.outbox.notifications_table] = 2
    world.promote("1", note="x" * 40_000)  # the ledger clips the detail: no longer JSON
    world.promote("2")
    report = world.drain(LATER)
    assert (report.sweep.unreadable, report.sweep.recovered, report.sent) == (1, 1, 1)
    assert "audit row unreadable" in caplog.text
    assert world.sent() == {"release/diabetes:2/ReleasePromoted": 1}
    assert world.drain(LATER).sweep.read == 0, "the watermark moved past it"


def test_the_watermark_survives_a_restart() -> None:
    first = World()
    first.promote("1")
    assert first.drain(LATER).sweep.read == 1
    [mark] = first.store.query(first.sweep.table)
    first.store.refuse[first.outbox.notifications_table] = 1
    first.promote("2")  # lost with its decision, then the instance stops
    restarted = World(first.store, first.clock)
    report = restarted.drain(LATER)
    # a sweep without the mark would start FIRST_LOOKBACK back and read the first decision's record too
    assert (report.sweep.read, report.sweep.recovered, report.sent) == (1, 1, 1), "only what came after the mark"
    audit_ranges = [r for r in first.store.ranges if r[0] == first.ledger.audit_table]
    assert audit_ranges[-1][2] == mark.props["after"], "the restarted sweep started at the stored mark"
    assert first.sent() == {"release/diabetes:1/ReleasePromoted": 1}
    assert restarted.sent() == {"release/diabetes:2/ReleasePromoted": 1}


def test_the_sweep_reads_key_ranges_a_bounded_number_per_drain() -> None:
    world = World(limit=3)
    world.store.refuse[world.outbox.notifications_table] = 7
    for version in range(1, 8):
        world.promote(str(version))
        world.clock.now += timedelta(seconds=1)
    world.store.scans.clear()
    recovered = [world.drain(LATER if i == 0 else timedelta(seconds=30)).sweep.recovered for i in range(4)]
    assert recovered == [3, 3, 1, 0]
    assert world.ledger.audit_table not in world.store.scans, "never a scan of the audit table"
    audit_ranges = [r for r in world.store.ranges if r[0] == world.ledger.audit_table]
    assert {r[1] for r in audit_ranges} == {world.clock.now.strftime("%Y%m%d")}
    assert len(world.sent()) == 7 and set(world.sent().values()) == {1}


def test_a_storm_of_audited_duplicates_never_reaches_the_sweep() -> None:
    world = World(limit=3)
    for i in range(50):  # each duplicate delivery is audited: rows the service filters out of the range
        world.ledger.audit(AuditRecord("event.duplicate", f"e{i}", function="on_blob_created", event_id=f"e{i}"))
    world.store.refuse[world.outbox.notifications_table] = 1
    world.promote("1")
    report = world.drain(LATER)
    assert (report.sweep.read, report.sweep.recovered, report.sent) == (1, 1, 1)


def test_records_on_both_sides_of_midnight_are_swept() -> None:
    world = World(clock=Clock(datetime(2026, 12, 1, 23, 59, 30, tzinfo=timezone.utc)))
    world.store.refuse[world.outbox.notifications_table] = 2
    world.promote("1")
    world.clock.now += timedelta(minutes=1)
    world.promote("2")
    report = world.drain(LATER)
    assert (report.sweep.recovered, report.sent) == (2, 2)
    assert {r[1] for r in world.store.ranges if r[0] == world.ledger.audit_table} >= {"20261201", "20261202"}


class RacingStore(BusyStore):
    """Another instance's drain runs in full right after this one read the sweep's watermark."""

    def __init__(self) -> None:
        super().__init__()
        self.race: World | None = None

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        found = super().get(table, partition, row)
        if table.endswith("sweep") and self.race is not None:
            other, self.race = self.race, None
            other.drain()
        return found


def test_two_drains_sweeping_at_once_store_and_send_a_missing_event_once() -> None:
    store = RacingStore()
    one = World(store)
    other = World(store, Clock(one.clock.now))
    store.refuse[one.outbox.notifications_table] = 1
    one.promote("1")
    one.drain(LATER - timedelta(seconds=1))  # the record is still within the margin
    one.clock.now += timedelta(seconds=1)
    other.clock.now = one.clock.now + timedelta(seconds=30)  # the other instance's clock runs ahead
    store.race = other
    report = one.drain()  # reads the mark; the other instance sweeps, stores and sends; then this one goes on
    assert report.sweep.recovered == 0 and report.sent == 0
    assert other.sent() == {"release/diabetes:1/ReleasePromoted": 1} and one.sent() == {}
    [mark] = store.query(one.sweep.table)
    assert mark.props["after"] == audit_stamp(other.clock.now - MARGIN), "the slower drain did not move it back"


def test_the_first_sweep_looks_back_ten_minutes_not_to_decisions_taken_before_publishing() -> None:
    world = World()
    world.ledger.on_audit = None  # publishing off: decisions are audited, no event is stored
    world.promote("1")
    world.clock.now += timedelta(minutes=20)
    world.promote("2")
    world.ledger.on_audit = world.publisher.observe  # publishing switched on; its first drain comes now
    report = world.drain(LATER)
    assert (report.sweep.read, report.sweep.recovered) == (1, 1), "only the decision within FIRST_LOOKBACK"
    assert world.sent() == {"release/diabetes:2/ReleasePromoted": 1}
