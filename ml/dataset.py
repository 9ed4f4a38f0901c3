"""The CSV data contract shared by every ML step.

Training batches arrive as files written by other teams and tools. A malformed batch must stop the
run with a message naming the file and the problem, instead of training on silently dropped rows or
columns, so parsing here is strict: every row and every cell is checked, nothing is skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.errors import DataError

FEATURES: tuple[str, ...] = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
TARGET = "y"
COLUMNS: tuple[str, ...] = (*FEATURES, TARGET)

__all__ = [
    "COLUMNS",
    "FEATURES",
    "TARGET",
    "Batch",
    "DataError",
    "expand_paths",
    "fingerprint",
    "load_batches",
    "load_csv",
    "load_many",
    "read_batch",
    "sha256_file",
    "write_csv",
]


@dataclass(frozen=True)
class Batch:
    """One validated CSV file: its rows plus the hash that identifies it in model lineage."""

    path: Path
    X: np.ndarray
    y: np.ndarray
    sha256: str

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


def load_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one contract CSV and return features (n x 10, FEATURES order) and target (n)."""
    batch = read_batch(path)
    return batch.X, batch.y


def load_many(paths: Iterable[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read files and directories of CSVs and stack all their rows."""
    batches = load_batches(paths)
    return np.vstack([b.X for b in batches]), np.concatenate([b.y for b in batches])


def load_batches(paths: Iterable[str | Path]) -> list[Batch]:
    """Read every CSV behind ``paths`` (files, or directories of ``*.csv``), each validated."""
    return [read_batch(p) for p in expand_paths(paths)]


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Turn files and directories into the list of CSV files to read, in a stable order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.csv") if p.is_file())
            if not found:
                raise DataError(f"{path}: directory contains no .csv files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    if not files:
        raise DataError("no data files given")
    return files


def read_batch(path: str | Path) -> Batch:
    """Read and validate one CSV file, hashing exactly the bytes that were parsed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror})") from exc
    X, y = _parse(path, raw)
    return Batch(path=path, X=X, y=y, sha256=hashlib.sha256(raw).hexdigest())


def _parse(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        # utf-8-sig so that a byte-order mark written by spreadsheet tools does not corrupt the header
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    # strict: a stray quote is an error, not a cell silently merged with its neighbour
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        order = _column_order(path, next(reader))
        rows = [_parse_row(path, reader.line_num, cells, order) for cells in reader]
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no data rows (header only)")
    table = np.asarray(rows, dtype=np.float64)
    return table[:, :-1], table[:, -1]


def _column_order(path: Path, header: list[str]) -> list[int]:
    """Map the file's header onto COLUMNS order; the file may list the columns in any order."""
    names = [h.strip() for h in header]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    missing = [c for c in COLUMNS if c not in names]
    unexpected = [n for n in names if n not in COLUMNS]
    problems = []
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected columns {', '.join(repr(n) for n in unexpected)}")
    if duplicated:
        problems.append(f"duplicated columns {', '.join(duplicated)}")
    if problems:
        raise DataError(f"{path}: bad header: {'; '.join(problems)} (expected {','.join(COLUMNS)})")
    return [names.index(c) for c in COLUMNS]


def _parse_row(path: Path, line: int, cells: list[str], order: list[int]) -> list[float]:
    if not cells:
        raise DataError(f"{path}: line {line}: blank line")
    if len(cells) != len(order):
        raise DataError(f"{path}: line {line}: {len(cells)} cells, expected {len(order)}")
    return [_parse_cell(path, line, COLUMNS[i], cells[j]) for i, j in enumerate(order)]


def _parse_cell(path: Path, line: int, column: str, cell: str) -> float:
    where = f"{path}: line {line}, column {column}"
    text = cell.strip()
    if not text:
        raise DataError(f"{where}: empty value")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: non-numeric value {cell!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: non-finite value {cell!r}")
    return value


def write_csv(path: str | Path, X: np.ndarray, y: np.ndarray) -> Path:
    """Write rows in the contract format; floats use repr so a read-back is bit-identical."""
    if X.ndim != 2 or X.shape[1] != len(FEATURES) or y.shape != (X.shape[0],):
        raise ValueError(f"expected X of shape (n, {len(FEATURES)}) and y of shape (n,), got {X.shape} and {y.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for features, target in zip(X.tolist(), y.tolist(), strict=True):
            writer.writerow([repr(v) for v in (*features, target)])
    return path


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(hashes: Sequence[str]) -> str:
    """One hash for a set of files; sorted because row order does not change what a model learns."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
