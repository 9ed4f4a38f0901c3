"""Late labels: files of observed outcomes for earlier scoring requests.

    CSV with a header:   request_id,observed[,row]      (row: 0-based row of a multi-row request; default 0)
    JSON lines:          {"request_id": "...", "observed": 151.0, "row": 0}

``parse_labels`` returns the labels or raises ``LabelsError`` naming the file, the line and the problem;
the intake keeps such a file as a dead letter. A request id labelled twice in one file keeps the last.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ReactorError

MAX_LABELS = 1_000_000
MAX_ID = 128
COLUMNS = ("request_id", "observed")


class LabelsError(ReactorError):
    """A labels file that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Label:
    request_id: str
    observed: float
    row: int = 0


def parse_labels(name: str, data: bytes) -> list[Label]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = name.lower().endswith((".jsonl", ".json", ".ndjson")) or text.lstrip().startswith("{")
    found: dict[tuple[str, int], Label] = {}
    for number, item in (_json_lines(name, text) if lines else _csv(name, text)):
        label = _label(name, number, item)
        found[(label.request_id, label.row)] = label
        if len(found) > MAX_LABELS:
            raise LabelsError(f"{name}: more than {MAX_LABELS} labels in one file; split it")
    if not found:
        raise LabelsError(f"{name}: no labels (expected a header request_id,observed and at least one row)")
    return list(found.values())


def _csv(name: str, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        has = ", ".join(header) or "nothing"
        raise LabelsError(f"{name}: line 1: the header lacks {', '.join(missing)} (it has {has})")
    reader.fieldnames = header
    try:
        for item in reader:
            yield reader.line_num, item
    except csv.Error as exc:
        raise LabelsError(f"{name}: line {reader.line_num}: not valid CSV ({exc})") from None


def _json_lines(name: str, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise LabelsError(f"{name}: line {number}: not JSON ({exc})") from None
        if not isinstance(item, dict):
            raise LabelsError(f"{name}: line {number}: expected an object with request_id and observed")
        yield number, item


def _label(name: str, number: int, item: Mapping[str, Any]) -> Label:
    where = f"{name}: line {number}"
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id.strip()) > MAX_ID:
        raise LabelsError(f"{where}: request_id must be 1-{MAX_ID} characters, got {str(request_id)[:40]!r}")
    observed = _number(item.get("observed"))
    if observed is None:
        raise LabelsError(f"{where}: observed must be a finite number, got {str(item.get('observed'))[:40]!r}")
    row = item.get("row")
    row = 0 if row in (None, "") else row
    if isinstance(row, str) and row.strip().isdigit():
        row = int(row)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise LabelsError(f"{where}: row must be a whole number from 0, got {str(row)[:20]!r}")
    return Label(request_id.strip(), observed, row)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
