"""Coalescing: when many threads have work for the same key, one of them does it for all.

Each storage round trip costs about 2 ms of CPU in the Azure SDK, far more than the work
itself, so concurrent writes to one table partition (or changes to one state entity) go out
together. There is no background thread and no timer: the first caller to find the key idle
*leads*, takes what is queued, flushes it, and hands the lead to the next waiter, so nobody
waits for a timeout and an idle process holds nothing.

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
    _lead: bool = False

    def settle(self) -> None:
        self._ready.set()


@dataclass
class _Queue(Generic[T]):
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: list[Pending[T]] = field(default_factory=list)
    busy: bool = False


class Coalescer(Generic[T]):
    def __init__(self, flush: Callable[[Hashable, list[Pending[T]]], None],
                 take: Callable[[list[Pending[T]]], int] | None = None) -> None:
        """``take(queued)`` says how many of the queued items one flush may carry (default: all)."""
        self._flush = flush
        self._take = take or len
        self._queues: dict[Hashable, _Queue[T]] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, item: T) -> Any:
        queue = self._queue(key)
        pending: Pending[T] = Pending(item)
        with queue.lock:
            queue.items.append(pending)
            lead = not queue.busy
            queue.busy = True
        if lead:
            self._lead_once(key, queue)
        while True:
            pending._ready.wait()
            if not pending._lead:
                break
            pending._lead = False  # handed the lead: flush for everyone, then wait for our own result
            pending._ready.clear()
            self._lead_once(key, queue)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def retry(self, key: Hashable, pending: Pending[T]) -> None:
        queue = self._queue(key)
        with queue.lock:
            queue.items.insert(0, pending)

    def _lead_once(self, key: Hashable, queue: _Queue[T]) -> None:
        with queue.lock:
            count = max(1, self._take(queue.items))
            batch, queue.items = queue.items[:count], queue.items[count:]
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
            if queue.items:
                successor = queue.items[0]
                successor._lead = True
                successor._ready.set()
            else:
                queue.busy = False

    def _queue(self, key: Hashable) -> _Queue[T]:
        queue = self._queues.get(key)
        if queue is None:
            with self._lock:
                queue = self._queues.setdefault(key, _Queue())
        return queue
