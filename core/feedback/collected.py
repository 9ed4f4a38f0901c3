"""Reading collected inference data back: inputs joined to outputs by request id.

    read_inferences(blobs, container, endpoint=..., since=..., until=..., features=...) -> Iterator[Inference]

An input row is a list (positional: the data contract's order) or a record keyed by feature. Given
the model's ``features``, a record is put in their order, whatever order its keys came in; a record
missing one of them or naming another makes its request malformed (counted, never misaligned). A
record whose keys are "0", "1", ... is positional: the local collector numbers the columns so (as
pandas does a list's) when it does not know the version's names. Without ``features`` a record keeps
the order it was sent in: enough for a reader of the outputs only (live quality).

Only the hour folders in [since, until) are listed (``layout.hours``), per deployment of the endpoint.
A line that is not a record of the expected shape is counted and skipped with one warning per file,
never raised: one bad writer must not blind the drift check or the live-quality join. Requests that
failed (a non-2xx ``statuscode``) and records whose other half is missing are counted apart and not
yielded: an ``Inference`` is a request the model answered.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from core.feedback import layout
from core.logs import get_logger, log
from core.ports import BlobStore

_log = get_logger("feedback.collected")


@dataclass(frozen=True)
class Inference:
    request_id: str
    endpoint: str
    deployment: str
    model: str
    version: str
    time: datetime
    inputs: list[list[float]]
    outputs: list[float]
    latency_ms: float


@dataclass
class ReadStats:
    """What a read saw besides the inferences it yielded (pass one in to get them)."""

    files: int = 0
    lines: int = 0
    malformed: int = 0
    failed: int = 0  # requests answered with an error: inputs recorded, no predictions
    unmatched: int = 0  # an input without its output or the reverse (a write still in flight)


@runtime_checkable
class FolderLister(Protocol):
    """A blob store that can list the folder names directly under a prefix (a delimiter listing)."""

    def list_folders(self, container: str, prefix: str) -> Iterator[str]: ...


@dataclass(frozen=True)
class _Record:
    request_id: str
    time: datetime
    rows: list[Any]
    model: str
    version: str
    latency_ms: float
    status: int


def read_inferences(blobs: BlobStore, container: str, *, endpoint: str, since: datetime, until: datetime,
                    stats: ReadStats | None = None, features: Sequence[str] | None = None) -> Iterator[Inference]:
    """The endpoint's answered requests timed in [since, until), oldest first; inputs in the order of
    ``features`` (the model's names) when given."""
    stats = stats if stats is not None else ReadStats()
    columns = _Columns(features) if features is not None else None
    found: list[Inference] = []
    for deployment in folders(blobs, container, f"{layout.ROOT}/{endpoint}/"):
        inputs = _collection(blobs, container, endpoint, deployment, layout.INPUTS, since, until, stats)
        outputs = _collection(blobs, container, endpoint, deployment, layout.OUTPUTS, since, until, stats)
        found += _join(endpoint, deployment, inputs, outputs, stats, columns)
    found.sort(key=lambda i: (i.time, i.request_id))
    yield from (i for i in found if since <= i.time < until)


def endpoints(blobs: BlobStore, container: str) -> list[str]:
    """Every endpoint that has collected data in the container."""
    return folders(blobs, container, f"{layout.ROOT}/")


def folders(blobs: BlobStore, container: str, prefix: str) -> list[str]:
    if isinstance(blobs, FolderLister):
        return sorted(blobs.list_folders(container, prefix))
    # A store without delimiter listings (a fake): the whole subtree, once.
    return sorted({b.name[len(prefix):].split("/", 1)[0] for b in blobs.list(container, prefix)
                   if "/" in b.name[len(prefix):]})


def _collection(blobs: BlobStore, container: str, endpoint: str, deployment: str, collection: str,
                since: datetime, until: datetime, stats: ReadStats) -> dict[str, _Record]:
    records: dict[str, _Record] = {}
    for hour in layout.hours(since, until):
        for blob in blobs.list(container, layout.hour_prefix(endpoint, deployment, collection, hour)):
            if not blob.name.endswith(".jsonl"):
                continue
            try:
                text = blobs.get(container, blob.name).decode("utf-8", errors="replace")
            except Exception as exc:  # deleted between the listing and the read: skip it, say so
                log(_log, logging.WARNING, "collected file unreadable; skipped", blob=blob.name, error=str(exc))
                continue
            stats.files += 1
            for rec in _records(text.splitlines(), collection, blob.name, stats):
                records[rec.request_id] = rec  # a request id seen twice: the later line wins
    return records


def _records(lines: Iterable[str], collection: str, name: str, stats: ReadStats) -> Iterator[_Record]:
    bad, first = 0, ""
    for line in lines:
        if not line.strip():
            continue
        stats.lines += 1
        try:
            yield _parse(json.loads(line), collection)
        except (ValueError, TypeError, KeyError) as exc:
            bad += 1
            first = first or f"{type(exc).__name__}: {exc}"
    if bad:
        stats.malformed += bad
        log(_log, logging.WARNING, "malformed collected lines skipped", blob=name, lines=bad, first=first[:300])


def _parse(doc: Any, collection: str) -> _Record:
    if not isinstance(doc, Mapping):
        raise TypeError("a line is not a JSON object")
    if doc.get("type") != layout.EVENT_TYPE.format(collection=collection):
        raise ValueError(f"type {doc.get('type')!r} does not belong in {collection}")
    request_id = doc.get("correlationid") or doc.get("xrequestid")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("no correlationid")
    rows = doc["data"]
    if not isinstance(rows, list):
        raise TypeError("data is not a list of rows")
    status = doc.get("statuscode", 200)
    latency = doc.get("latencyms", 0.0)
    if not _is_number(latency) or isinstance(status, bool) or not isinstance(status, int):
        raise TypeError("latencyms or statuscode is not a number")
    when = datetime.fromisoformat(str(doc["time"]).replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("time has no offset")
    return _Record(request_id, when, rows, str(doc.get("modelname", "")), str(doc.get("modelversion", "")),
                   float(latency), status)


def _join(endpoint: str, deployment: str, inputs: Mapping[str, _Record], outputs: Mapping[str, _Record],
          stats: ReadStats, columns: _Columns | None) -> list[Inference]:
    joined = []
    bad, first = 0, ""
    stats.unmatched += len(inputs.keys() ^ outputs.keys())
    for request_id in inputs.keys() & outputs.keys():
        given, answered = inputs[request_id], outputs[request_id]
        if not 200 <= answered.status < 300:
            stats.failed += 1
            continue
        try:
            rows = [_features(r, columns) for r in given.rows]
            predictions = [_prediction(r) for r in answered.rows]
        except (TypeError, ValueError) as exc:
            bad += 1
            first = first or f"{request_id}: {exc}"
            continue
        joined.append(Inference(request_id, endpoint, deployment, given.model or answered.model,
                                given.version or answered.version, given.time, rows, predictions,
                                answered.latency_ms or given.latency_ms))
    if bad:
        stats.malformed += bad
        log(_log, logging.WARNING, "collected requests with rows that do not fit skipped", endpoint=endpoint,
            deployment=deployment, requests=bad, first=first[:300])
    return joined


class _Columns:
    """Record rows to lists in the model's feature order."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._known = frozenset(self.names)
        self._numbered = tuple(str(i) for i in range(len(self.names)))
        self._numbered_set = frozenset(self._numbered)

    def values(self, row: Mapping[str, Any]) -> list[Any]:
        keys = row.keys()
        if keys == self._known:
            return [row[n] for n in self.names]
        if keys == self._numbered_set:  # numbered by a collector that did not know the names: positional
            return [row[n] for n in self._numbered]
        missing = [n for n in self.names if n not in row]
        unknown = [str(k) for k in row if k not in self._known]
        problems = [f"{label} {', '.join(found)}" for label, found in (("missing", missing), ("unknown", unknown))
                    if found]
        raise ValueError(f"a record row does not fit the model's features: {'; '.join(problems)}"[:300])


def _features(row: Any, columns: _Columns | None) -> list[float]:
    values = row
    if isinstance(row, Mapping):
        values = columns.values(row) if columns is not None else list(row.values())
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise TypeError("an input row is not a list or record of numbers")
    return [float(v) for v in values]


def _prediction(row: Any) -> float:
    value = row
    if isinstance(row, Mapping):
        value = row.get(layout.PREDICTION, next(iter(row.values())) if len(row) == 1 else None)
    if not _is_number(value):
        raise TypeError("an output row is not one number")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class CollectedInputs:
    """The drift check's ``RecentInputs`` over the collected data: every row an endpoint answered
    successfully in [since, until), in the order of ``features`` (the baseline's names); a request
    whose record rows do not fit them is left out and counted (``stats``, and a warning per read)."""

    def __init__(self, blobs: BlobStore, container: str) -> None:
        self._blobs, self._container = blobs, container

    def inputs(self, endpoint: str, since: datetime, until: datetime, features: Sequence[str],
               stats: ReadStats | None = None) -> list[list[float]]:
        return [row for found in read_inferences(self._blobs, self._container, endpoint=endpoint, since=since,
                                                 until=until, stats=stats, features=features)
                for row in found.inputs]
