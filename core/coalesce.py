"""Coalescing: when many threads have work for the same key, one of them does it for all.

Each storage round trip costs about 1-2 ms of CPU in the Azure SDK, far more than the work
itself, so concurrent writes to one table partition (or changes to one state entity) go out
together. There is no background thread and no timer: a caller that finds no flush running
for its key *leads*: it takes what is queued, flushes it, and hands the lead (with the next
batch, taken under the lock) to the next waiter, so nobody waits for a timeout and an idle
process holds nothing. With ``parallel=1`` (the default) a key's flushes never overlap, which
read-modify-write changes need. Independent writes may allow ``parallel`` at once: a caller
that finds fewer running flushes its own item alone, so a light load is not held back, while
what queues behind them still goes out as one batch.

    flush(key, batch) must settle every pending item of the batch: set ``result``/``error``
    and call ``settle()``, or ``retry`` it to queue it again (e.g. innocent bystanders of a
    failed transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Pending(Generic[T]):
    item: T
    result: Any = None
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _batch: list[Pending[T]] | None = None  # handed to this caller with the lead

    def settle(self) -> None:
        self._ready.set()


@dataclass
class _Queue(Generic[T]):
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: list[Pending[T]] = field(default_factory=list)
    leaders: int = 0


class Coalescer(Generic[T]):
    def __init__(self, flush: Callable[[Hashable, list[Pending[T]]], None],
                 take: Callable[[list[Pending[T]]], int] | None = None, parallel: int = 1) -> None:
        """``take(queued)`` says how many of the queued items one flush may carry (default: all);
        ``parallel`` how many flushes of one key may run at once."""
        self._flush = flush
        self._take = take or len
        self._parallel = max(1, parallel)
        self._queues: dict[Hashable, _Queue[T]] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, item: T) -> Any:
        queue = self._queue(key)
        pending: Pending[T] = Pending(item)
        with queue.lock:
            queue.items.append(pending)
            batch = None
            if queue.leaders < self._parallel:
                # An extra leader beside a running flush carries only its own item: a queue keeps
                # growing for the next full batch, and a light load is not held back.
                batch = self._next_batch(queue) if queue.leaders == 0 else [queue.items.pop()]
                queue.leaders += 1
        while True:
            if batch is not None:
                self._lead(key, queue, batch)
            pending._ready.wait()
            batch, pending._batch = pending._batch, None
            if batch is None:
                break
            pending._ready.clear()  # handed the lead: flush for everyone, then wait for our own result
        if pending.error is not None:
            raise pending.error
        return pending.result

    def retry(self, key: Hashable, pending: Pending[T]) -> None:
        queue = self._queue(key)
        with queue.lock:
            queue.items.insert(0, pending)

    def _next_batch(self, queue: _Queue[T]) -> list[Pending[T]]:
        """Called under the queue's lock: the batch leaves the queue before anyone else can take it."""
        count = max(1, self._take(queue.items))
        batch, queue.items = queue.items[:count], queue.items[count:]
        return batch

    def _lead(self, key: Hashable, queue: _Queue[T], batch: list[Pending[T]]) -> None:
        try:
            self._flush(key, batch)
        except BaseException as exc:  # a flush that failed as a whole fails every item it still held
            with queue.lock:
                requeued = {id(p) for p in queue.items}
            for p in batch:
                if not p._ready.is_set() and id(p) not in requeued:
                    p.error = exc
                    p.settle()
        finally:
            self._hand_over(queue)

    def _hand_over(self, queue: _Queue[T]) -> None:
        with queue.lock:
            if not queue.items:
                queue.leaders -= 1
                return
            batch = self._next_batch(queue)
            successor = batch[0]
            successor._batch = batch
            successor._ready.set()

    def _queue(self, key: Hashable) -> _Queue[T]:
        queue = self._queues.get(key)
        if queue is None:
            with self._lock:
                queue = self._queues.setdefault(key, _Queue())
        return queue
