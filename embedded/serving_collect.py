"""Inference data collection for the local online endpoints, as Azure ML's data collector does it.

The router hands each scoring request it forwarded (``Scored``: the body, the answer, the deployment,
the model, latency, status, request id) to ``Collector.record``, which only appends to a bounded
buffer under a lock: nothing is parsed or written on the request path, and when the buffer is full the
request is still answered and the record counted as dropped (logged as an error, never silently).
A writer thread turns the buffer into ``model_inputs`` and ``model_outputs`` JSON-lines blobs in the
layout of ``core.feedback.layout`` when ``batch`` records are waiting or ``flush_seconds`` have passed,
a few records at a time with a pause between, so it never keeps the GIL from a request thread for long.
A batch that cannot be written keeps its blob names and is written again (same names: never twice);
``close`` writes what is left, so stopping the control plane (SIGTERM) loses nothing it accepted.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.feedback import layout
from core.logs import get_logger, log
from core.ports import BlobStore

_log = get_logger("serving.collect")
MAX_ERROR = 500  # characters of a failed answer kept with its record
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
# The writer shares the serving process's GIL with the routers' request threads, and a thread that
# wants the GIL back after I/O waits for the holder to release it, up to the switch interval (5 ms).
# Turning 500 records into lines is ~20 ms of pure Python, so it is done a slice at a time (about
# 0.5 ms), each followed by a real sleep, which hands the GIL to any request thread waiting for it.
SLICE_RECORDS = 10
SLICE_PAUSE = 0.0002  # seconds; 0 would release the GIL too, but the writer often takes it straight back
Features = Callable[[str, str], Sequence[str]]  # (model, version) -> feature names, () when unknown


@dataclass(frozen=True)
class Scored:
    """One scoring request a deployment answered, as the router saw it."""

    request_id: str
    endpoint: str
    deployment: str
    model: str
    version: str
    time: datetime
    body: bytes
    status: int
    answer: bytes
    latency_ms: float


@dataclass
class _Batch:
    blobs: dict[str, bytes]  # blob name -> JSON lines, fixed when the batch is built
    records: int
    written: set[str] = field(default_factory=set)
    attempts: int = 0


@dataclass
class CollectorStats:
    accepted: int = 0
    stored: int = 0
    dropped: int = 0
    write_failures: int = 0
    lost: int = 0  # accepted but not written when close gave up

    def as_json(self, buffered: int) -> dict[str, int]:
        return {"accepted": self.accepted, "stored": self.stored, "dropped": self.dropped,
                "write_failures": self.write_failures, "lost": self.lost, "buffered": buffered}


class Collector:
    def __init__(self, blobs: BlobStore, container: str, *, workspace: str, features: Features | None = None,
                 batch: int = 500, flush_seconds: float = 2.0, buffer: int = 100_000) -> None:
        self.container = container
        self._blobs = blobs
        self._workspace = workspace
        self._features = features or (lambda model, version: ())
        self._batch, self._flush_seconds, self._capacity = batch, flush_seconds, buffer
        self._buffer: list[Scored] = []
        self._pending: list[_Batch] = []  # built, not yet fully written (the writer's own)
        self._in_writer = 0  # records taken by the writer and not yet stored
        self._known: dict[tuple[str, str], tuple[str, ...]] = {}
        self._base, self._ids = uuid.uuid4().hex, itertools.count(1)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # the writer thread and flush() never write one batch twice at once
        self._wake = threading.Event()
        self._closing = threading.Event()
        self.stats = CollectorStats()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    # -- the request path ------------------------------------------------------------------------
    def record(self, scored: Scored) -> bool:
        """Buffer one request; False (counted, logged) when the buffer is full. Never blocks on I/O."""
        with self._lock:
            if self._closing.is_set() or len(self._buffer) + self._in_writer >= self._capacity:
                self.stats.dropped += 1
                dropped = self.stats.dropped
            else:
                self._buffer.append(scored)
                self.stats.accepted += 1
                if len(self._buffer) >= self._batch:
                    self._wake.set()
                return True
        if dropped == 1 or dropped % 1000 == 0:  # loudly, but not one line per request under overload
            log(_log, logging.ERROR, "inference collection buffer full: records dropped", dropped=dropped,
                capacity=self._capacity, container=self.container)
        return False

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return self.stats.as_json(len(self._buffer) + self._in_writer)

    # -- life --------------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything buffered now (tests, shutdown); True when nothing is left."""
        deadline = time.monotonic() + timeout
        while True:
            self._write_once()
            with self._lock:
                left = len(self._buffer) + self._in_writer
            if not left or time.monotonic() >= deadline:
                return not left
            time.sleep(0.2)

    def close(self, timeout: float = 12.0) -> None:
        """Stop accepting, write what is buffered; what still cannot be written is counted as lost.
        The timeout fits inside the 20 s a stopping control plane is given before it is killed."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=timeout / 2)
        if not self.flush(timeout=timeout / 2):
            with self._lock:
                self.stats.lost = len(self._buffer) + self._in_writer
            log(_log, logging.ERROR, "inference records lost on shutdown: storage did not take them",
                lost=self.stats.lost, container=self.container)
        log(_log, logging.INFO, "inference collection stopped", **self.snapshot())

    def _run(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            if self._closing.is_set():
                return  # close() writes the rest on its own thread
            try:
                self._write_once()
            except Exception:  # a bug must not stop collection: log it, try again next round
                _log.exception("inference collection round failed")

    # -- writing -----------------------------------------------------------------------------------
    def _write_once(self) -> None:
        with self._write_lock:
            with self._lock:
                taken, self._buffer = self._buffer, []
                self._in_writer += len(taken)
            if taken:
                self._pending.append(self._build(taken))
            for batch in list(self._pending):
                if self._write(batch):
                    self._pending.remove(batch)
                    with self._lock:
                        self._in_writer -= batch.records
                        self.stats.stored += batch.records

    def _write(self, batch: _Batch) -> bool:
        for name, data in batch.blobs.items():
            if name in batch.written:
                continue
            try:
                self._blobs.put(self.container, name, data, "application/jsonl")
            except Exception as exc:  # storage down: keep the batch, its names, and try again later
                batch.attempts += 1
                with self._lock:
                    self.stats.write_failures += 1
                log(_log, logging.WARNING, "collected batch not written yet; will retry", blob=name,
                    records=batch.records, attempt=batch.attempts, error=f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(RETRY_SECONDS[min(batch.attempts, len(RETRY_SECONDS)) - 1])
                return False
            batch.written.add(name)
        return True

    def _build(self, taken: list[Scored]) -> _Batch:
        lines: dict[str, list[str]] = defaultdict(list)
        names: dict[tuple[Any, ...], str] = {}  # one blob per hour folder of a deployment's collection
        for i, s in enumerate(taken):
            if i and not i % SLICE_RECORDS and not self._closing.is_set():  # closing: no request waits
                time.sleep(SLICE_PAUSE)
            hour = (s.endpoint, s.deployment, s.time.year, s.time.month, s.time.day, s.time.hour)
            for collection, doc in self._records(s):
                name = names.get((*hour, collection))
                if name is None:
                    folder = layout.hour_prefix(s.endpoint, s.deployment, collection, s.time)
                    name = names[(*hour, collection)] = f"{folder}{self._base}-{next(self._ids)}.jsonl"
                lines[name].append(json.dumps(doc, separators=(",", ":")))
        return _Batch({name: ("\n".join(body) + "\n").encode() for name, body in lines.items()}, len(taken))

    def _records(self, s: Scored) -> list[tuple[str, dict[str, Any]]]:
        rows, problem = _input_rows(s.body, self._names(s.model, s.version))
        predictions, error = _output_rows(s.status, s.answer)

        serial = next(self._ids)

        def one(collection: str, data: list[Any], error: str) -> tuple[str, dict[str, Any]]:
            # unique without a uuid4 per line: this collector's random base, a serial, the collection
            return collection, layout.record(
                collection, record_id=f"{self._base}-{serial}-{collection[6]}", request_id=s.request_id, when=s.time,
                workspace=self._workspace, endpoint=s.endpoint, deployment=s.deployment, model=s.model,
                version=s.version, rows=data, latency_ms=s.latency_ms, status=s.status, error=error)

        return [one(layout.INPUTS, rows, problem), one(layout.OUTPUTS, predictions, error)]

    def _names(self, model: str, version: str) -> Sequence[str]:
        """A version's feature names never change: its model card is read once (the writer's thread only)."""
        key = (model, version)
        if key not in self._known:
            try:
                self._known[key] = tuple(self._features(model, version))
            except Exception as exc:  # no model card: positional column names, as pandas would give
                log(_log, logging.WARNING, "feature names unknown; columns are numbered", model=model,
                    version=version, error=str(exc)[:200])
                self._known[key] = ()
        return self._known[key]


def _input_rows(body: bytes, names: Sequence[str]) -> tuple[list[Any], str]:
    """The request's rows as DataFrame records (feature names, in the model's order); or why there are none."""
    try:
        payload = json.loads(body)
    except ValueError:
        return [], "request body is not JSON"
    rows = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(rows, list):
        return [], 'request has no "data" list'
    return [_row(r, names) for r in rows], ""


def _row(row: Any, names: Sequence[str]) -> Any:
    if isinstance(row, list):
        columns = names if len(names) == len(row) else [str(i) for i in range(len(row))]
        return dict(zip(columns, row, strict=True))
    if isinstance(row, Mapping) and names:
        ordered = {n: row[n] for n in names if n in row}
        return {**ordered, **{k: v for k, v in row.items() if k not in ordered}}
    return row


def _output_rows(status: int, answer: bytes) -> tuple[list[Any], str]:
    try:
        payload = json.loads(answer)
    except ValueError:
        payload = None
    if 200 <= status < 300 and isinstance(payload, Mapping) and isinstance(payload.get("predictions"), list):
        return [{layout.PREDICTION: p} for p in payload["predictions"]], ""
    message = payload.get("error") if isinstance(payload, Mapping) else None
    return [], str(message or answer[:MAX_ERROR].decode("utf-8", errors="replace"))[:MAX_ERROR] or f"HTTP {status}"
