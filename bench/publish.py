"""Our own events: what publishing costs a decision, and how fast stored events reach the topic.

Azurite on loopback, the local topic on a local host, a local receiver as the subscriber; the app's
services publish through the real EventGridPublisherClient (one event per request).

    python bench/publish.py [--events 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azure.functions as func

from core import bootstrap
from core.ledger import AuditRecord
from core.ports import utcnow
from core.publish.sweep import Sweep
from core.settings import Settings
from embedded.azurite import Azurite
from embedded.host import HostServer, LocalHost
from embedded.keys import HostKeys
from embedded.local_settings import SAMPLE, read_values
from embedded.receiver import LocalReceiver
from embedded.topic import TOPIC_PATH, LocalTopic

KEY = "bench-topic-key"
record_time = datetime.now(timezone.utc)


def ms_per_audit(ledger, records: list[AuditRecord]) -> float:
    start = time.perf_counter()
    for record in records:
        ledger.audit(record)
    return (time.perf_counter() - start) * 1000 / len(records)


def one_round(off, on, other: list[AuditRecord], decisions: list[AuditRecord],
              on_first: bool) -> tuple[float, float, float, float]:
    """(other off, other on, decisions off, decisions on) in ms per audit; the order alternates between rounds."""
    first, second = (on, off) if on_first else (off, on)
    a, b = ms_per_audit(first, other), ms_per_audit(second, other)
    c, d = ms_per_audit(first, decisions), ms_per_audit(second, decisions)
    return (b, a, d, c) if on_first else (a, b, c, d)


def sweep_cost(services: bootstrap.Services) -> tuple[int, int, float, float]:
    """A sweep of everything the rounds wrote (no margin, an hour back): (rows, recovered, CPU ms, wall ms)."""
    publisher = services.publisher
    assert publisher is not None
    sweep = Sweep(services.store, services.ledger, publisher.outbox, prefix="benchonce", clock=utcnow,
                  margin=timedelta(0), first_lookback=timedelta(hours=1), limit=100_000)
    cpu, wall = time.process_time(), time.perf_counter()
    report = sweep.run(publisher.event_of)
    return (report.read, report.recovered, (time.process_time() - cpu) * 1000,
            (time.perf_counter() - wall) * 1000)


def promoted(i: int) -> AuditRecord:
    return AuditRecord("release.promoted", f"c{i}", function="releases", model="bench", version=str(i),
                       detail={"release": f"bench:{i}", "note": "serves 100%"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    n = parser.parse_args().events
    azurite = Azurite.on_free_ports().start()
    receiver = LocalReceiver(echo=lambda line: None).start()
    topic = LocalTopic(KEY, [f"{receiver.url}/cloudevents/bench"]).start()
    server = HostServer(LocalHost(func.FunctionApp(), HostKeys("bench-master", {}), topic=topic), port=0).start()
    try:
        env = {**read_values(SAMPLE), "REACTOR_STORAGE_CONNECTION": azurite.connection_string,
               "REACTOR_RETRAIN_POLICIES": "", "REACTOR_RELEASE_POLICIES": "", "REACTOR_LOG_LEVEL": "WARNING"}
        off = bootstrap.build(Settings.from_env({**env, "REACTOR_TABLE_PREFIX": "benchoff"}))
        on = bootstrap.build(Settings.from_env({**env, "REACTOR_TABLE_PREFIX": "benchon",
                                                "REACTOR_EVENTS_TOPIC_ENDPOINT": server.url + TOPIC_PATH,
                                                "REACTOR_LOCAL_EVENTS_TOPIC_KEY": KEY}))
        assert on.publisher is not None
        for s in (off, on):
            ms_per_audit(s.ledger, [AuditRecord("warm.up", "w")])
        other = [AuditRecord("event.processed", f"e{i}") for i in range(n // 4)]
        rounds = [one_round(off.ledger, on.ledger, other, [promoted(r * n + i) for i in range(n // 4)], r % 2 == 1)
                  for r in range(4)]
        plain_off, plain_on, decided_off, decided_on = (statistics.median(col) for col in zip(*rounds, strict=True))
        hook_start = time.perf_counter()
        for record in other * 20:
            on.publisher.observe(record, record_time)
        hook_us = (time.perf_counter() - hook_start) * 1e6 / (len(other) * 20)
        start = time.perf_counter()
        laps = []
        while on.publisher.outbox.backlog():
            lap = time.perf_counter()
            sent = on.publisher.drain().sent
            laps.append((time.perf_counter() - lap) * 1000 / max(sent, 1))
        drained = time.perf_counter() - start
        while len(receiver.of("cloudevents")) < n and time.perf_counter() - start < 60:
            time.sleep(0.05)
        delivered = time.perf_counter() - start
        swept = sweep_cost(on)
    finally:
        server.stop()
        topic.stop()
        receiver.stop()
        azurite.stop()
    print(f"our own events, {n} decisions, Azurite + local topic + subscriber on loopback (medians of 4 rounds)")
    print(f"  audit, not a published decision : {plain_off:6.2f} ms off, {plain_on:6.2f} ms with publishing on "
          f"({plain_on / plain_off:.2f}x)")
    print(f"  the hook itself, not a decision : {hook_us:6.1f} µs per audit record (a dict lookup)")
    print(f"  audit of a published decision   : {decided_off:6.2f} ms off, {decided_on:6.2f} ms on "
          f"(+{decided_on - decided_off:.2f} ms: the event stored in the outbox)")
    print(f"  drain to the topic (real SDK)   : {n / drained:6.0f} events/s, "
          f"{statistics.mean(laps):.1f} ms per event (store claim, publish, mark sent)")
    print(f"  at the subscriber               : {len(receiver.of('cloudevents'))} of {n} after {delivered:.1f} s")
    rows, recovered, sweep_cpu_ms, sweep_wall_ms = swept
    drain_ms = statistics.mean(laps)
    print(f"  the drain's sweep of the trail  : {rows} audit rows ({n} published decisions, all stored: "
          f"{recovered} recovered) in {sweep_wall_ms:.0f} ms, {sweep_wall_ms / n:.2f} ms per published decision "
          f"({sweep_wall_ms / n / drain_ms:.2f}x a drained event), {sweep_cpu_ms / n:.2f} ms CPU in this process")


if __name__ == "__main__":
    main()
