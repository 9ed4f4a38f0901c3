"""Live quality: late labels joined to the collected predictions, RMSE and MAE per model version.

    labels blob (BlobCreated in REACTOR_LABELS_CONTAINER)
      -> parse (a bad file raises LabelsError: the intake keeps it as a dead letter naming the line)
      -> look its request ids up in the collected inference data (every endpoint, lookback window)
      -> one row per labelled prediction, inserted if absent    {prefix}livequality
             PK "{model}:{version}:{yyyymmdd}" (the prediction's day)   RK "{endpoint}|{request id}|{row}"
      -> one summary row per labels file (matched, unknown, already labelled), then an audit record
             PK "files"  RK sha256(container/name/etag)

Every write is an insert-if-absent keyed by what it describes, so a redelivered event, a replayed dead
letter or a host killed half-way and retried adds nothing twice (no read-modify-write, nothing for an
ETag to guard); the summary row is written last, so its presence means the file was joined whole. A
request labelled again in a later file keeps its first label. Request ids that match nothing are
counted and sampled in the summary and the audit trail; they are not an error (the labels may belong
to requests older than the lookback, or to another system).

``live_quality(model, version, window)`` sums the rows of the predictions made in the window.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import ConflictError
from core.events import BlobCreated, Event
from core.feedback.collected import Inference, ReadStats, endpoints, read_inferences
from core.feedback.labels import Label, parse_labels
from core.ledger import AuditRecord, Ledger
from core.logs import get_logger
from core.ports import BlobStore, Clock, StateStore

FILES = "files"
SAMPLE_UNKNOWN = 20  # unknown request ids kept with a file's summary and audit record
WRITERS = 8  # concurrent inserts: the table store group-commits them per partition
CLOCK_SKEW = timedelta(minutes=5)  # a prediction timed slightly after the labels' arrival still counts
_UNSAFE_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f]")  # not allowed in Table keys
_log = get_logger("feedback.quality")


@dataclass(frozen=True)
class Joined:
    inference: Inference
    label: Label

    @property
    def prediction(self) -> float:
        return self.inference.outputs[self.label.row]

    def partition(self) -> str:
        i = self.inference
        return f"{i.model}:{i.version}:{i.time:%Y%m%d}"

    def row_key(self) -> str:
        i = self.inference
        return _UNSAFE_KEY.sub("_", f"{i.endpoint}|{i.request_id}|{self.label.row}")


class LiveQuality:
    def __init__(self, store: StateStore, blobs: BlobStore, ledger: Ledger, *, prefix: str, labels_container: str,
                 collect_container: str, lookback_hours: int, window_hours: int, clock: Clock) -> None:
        self._store, self._blobs, self._ledger, self._clock = store, blobs, ledger, clock
        self.table = f"{prefix}livequality"
        self.labels_container, self.collect_container = labels_container, collect_container
        self._lookback = timedelta(hours=lookback_hours)
        self.window = timedelta(hours=window_hours)

    def handles(self, event: Event) -> bool:
        return isinstance(event, BlobCreated) and event.container == self.labels_container

    # -- a labels file arrives -----------------------------------------------------------------------
    def on_labels(self, event: Event, ctx: Any) -> Mapping[str, Any]:
        assert isinstance(event, BlobCreated)
        where = f"{event.container}/{event.blob_name}"
        key = hashlib.sha256(f"{where}\n{event.etag}".encode()).hexdigest()[:40]
        done = self._store.get(self.table, FILES, key)
        if done is not None:
            return {"action": "labels_already_joined", "labels_blob": where, **_counts(done.props)}
        labels = parse_labels(where, self._blobs.get(event.container, event.blob_name))
        found, stats = self._lookup({lab.request_id for lab in labels}, event.time - self._lookback,
                                    max(event.time, self._clock()) + CLOCK_SKEW)
        joined, unknown, out_of_range = _join(labels, found)
        inserted, already = self._insert(joined, where)
        summary = {"labels_blob": where, "etag": event.etag, "labels": len(labels), "matched": len(joined),
                   "inserted": inserted, "already_labelled": already, "unknown": len(unknown),
                   "row_out_of_range": out_of_range, "unknown_sample": ",".join(sorted(unknown)[:SAMPLE_UNKNOWN]),
                   "versions": ",".join(f"{k}={n}" for k, n in sorted(_versions(joined).items())),
                   "malformed_collected_lines": stats.malformed, "joined_at": self._clock().isoformat()}
        # a concurrent delivery of the same file may have finished first: its rows are ours too
        with contextlib.suppress(ConflictError):
            self._store.insert(self.table, FILES, key, summary)
        self._audit(ctx, summary, joined)
        return {"action": "labels_joined", **summary}

    def _lookup(self, wanted: set[str], since: datetime, until: datetime) -> tuple[dict[str, Inference], ReadStats]:
        """The collected predictions of the wanted request ids; the lookback counts from the file's arrival,
        so a dead letter replayed days later still finds what the file would have found then."""
        stats, found = ReadStats(), {}
        for endpoint in endpoints(self._blobs, self.collect_container):
            for inference in read_inferences(self._blobs, self.collect_container, endpoint=endpoint, since=since,
                                             until=until, stats=stats):
                if inference.request_id in wanted:
                    found[inference.request_id] = inference  # the same id on two endpoints: the later one
        return found, stats

    def _insert(self, joined: list[Joined], where: str) -> tuple[int, int]:
        def one(j: Joined) -> bool:
            i = j.inference
            props = {"time": i.time.isoformat(), "endpoint": i.endpoint, "deployment": i.deployment,
                     "request_id": i.request_id, "row": j.label.row, "prediction": j.prediction,
                     "observed": j.label.observed, "error": j.prediction - j.label.observed, "labels_blob": where}
            try:
                self._store.insert(self.table, j.partition(), j.row_key(), props)
            except ConflictError:
                return False  # labelled before (this file redelivered, or an earlier file): the first label stays
            return True

        with ThreadPoolExecutor(WRITERS) as pool:
            results = list(pool.map(one, joined))
        return sum(results), len(results) - sum(results)

    def _audit(self, ctx: Any, summary: Mapping[str, Any], joined: list[Joined]) -> None:
        models = {(j.inference.model, j.inference.version) for j in joined}
        model, version = next(iter(models)) if len(models) == 1 else ("", "")
        self._ledger.audit(AuditRecord("labels.joined", getattr(ctx, "correlation_id", "") or summary["labels_blob"],
                                       function=getattr(ctx, "function", ""), model=model, version=version,
                                       detail=dict(summary)))

    # -- reading ------------------------------------------------------------------------------------
    def live_quality(self, model: str, version: str, window: timedelta | None = None,
                     end: datetime | None = None) -> dict[str, Any]:
        """RMSE, MAE and the number of labelled predictions of the version made within the window
        ending at ``end`` (now by default; an alert rule's evaluation time)."""
        until = end or self._clock()
        since = until - (window or self.window)
        errors = [float(e.props["error"]) for e in self._rows(model, version, since, until)
                  if since <= datetime.fromisoformat(str(e.props["time"])) <= until]
        return quality(errors)

    def _rows(self, model: str, version: str, since: datetime, until: datetime) -> Iterable[Any]:
        day = since.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= until:
            yield from self._store.query(self.table, f"{model}:{version}:{day:%Y%m%d}")
            day += timedelta(days=1)

    def status(self, model: str, version: str) -> dict[str, Any]:
        return {"version": version, "window_hours": round(self.window.total_seconds() / 3600, 2),
                **self.live_quality(model, version)}


def quality(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"rmse": None, "mae": None, "n": 0}
    return {"rmse": round(math.sqrt(sum(e * e for e in errors) / len(errors)), 4),
            "mae": round(sum(abs(e) for e in errors) / len(errors), 4), "n": len(errors)}


def _join(labels: list[Label], found: Mapping[str, Inference]) -> tuple[list[Joined], set[str], int]:
    joined, unknown, out_of_range = [], set(), 0
    for label in labels:
        inference = found.get(label.request_id)
        if inference is None:
            unknown.add(label.request_id)
        elif label.row >= len(inference.outputs):
            out_of_range += 1
        else:
            joined.append(Joined(inference, label))
    return joined, unknown, out_of_range


def _versions(joined: list[Joined]) -> Counter[str]:
    return Counter(f"{j.inference.model}:{j.inference.version}" for j in joined)


def _counts(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: props.get(k) for k in ("labels", "matched", "inserted", "already_labelled", "unknown")}
