from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import pytest

from core.coalesce import Coalescer, Pending


def test_concurrent_callers_share_flushes_and_each_gets_its_own_result() -> None:
    flushes: list[int] = []

    def flush(key: Hashable, batch: list[Pending[int]]) -> None:
        time.sleep(0.01)  # a round trip, during which more work queues up
        flushes.append(len(batch))
        for p in batch:
            p.result = p.item * 2
            p.settle()

    coalescer: Coalescer[int] = Coalescer(flush)
    results: dict[int, int] = {}

    def call(i: int) -> None:
        results[i] = coalescer.run("k", i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == {i: i * 2 for i in range(40)}
    assert sum(flushes) == 40 and len(flushes) < 40, "work was shared"


def test_retried_items_go_again_and_errors_reach_their_caller() -> None:
    seen: list[list[int]] = []

    def flush(key: Hashable, batch: list[Pending[int]]) -> None:
        seen.append([p.item for p in batch])
        for p in batch:
            if p.item == 13:
                p.error = ValueError("unlucky")
                p.settle()
            elif len(batch) > 1:
                coalescer.retry(key, p)  # bystander of a failed batch: try alone
            else:
                p.result = p.item
                p.settle()

    coalescer: Coalescer[int] = Coalescer(flush, take=lambda q: min(len(q), 3))
    out: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            out[i] = coalescer.run("k", i)
        except ValueError as exc:
            out[i] = str(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in (1, 13, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert out == {1: 1, 2: 2, 13: "unlucky"}
    assert all(len(b) <= 3 for b in seen)


def test_a_flush_that_raises_fails_its_items_and_the_queue_recovers() -> None:
    calls = {"n": 0}

    def flush(key: Hashable, batch: list[Pending[str]]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("storage down")
        for p in batch:
            p.result = "ok"
            p.settle()

    coalescer: Coalescer[str] = Coalescer(flush)
    with pytest.raises(ConnectionError):
        coalescer.run("k", "a")
    assert coalescer.run("k", "b") == "ok"


def test_parallel_leaders_overlap_up_to_the_limit_and_a_queue_is_still_batched() -> None:
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    sizes: list[int] = []

    def flush(key: Hashable, batch: list[Pending[int]]) -> None:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.02)
        with lock:
            running["now"] -= 1
            sizes.append(len(batch))
        for p in batch:
            p.result = -p.item
            p.settle()

    coalescer: Coalescer[int] = Coalescer(flush, parallel=3)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, coalescer.run("k", i))) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == {i: -i for i in range(60)}
    assert running["most"] == 3, "flushes of one key overlapped, but never more than three"
    assert sum(sizes) == 60 and max(sizes) > 1, "what queued behind them went out together"
