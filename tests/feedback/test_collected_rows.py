"""Collected input rows are read in the model's feature order, whatever order a record's keys came in:
the drift check over collected data (blobs in memory, as the collector writes them) gives the same
figures for records with shuffled keys, for numbered records and for positional lists; a record that
lacks a feature or names another is counted malformed, never compared misaligned."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from core.feedback import layout
from core.feedback.collected import CollectedInputs, ReadStats, read_inferences
from ml.dataset import FEATURES
from ml.sample_data import make_batch
from tests.feedback.test_drift_check import ENDPOINT, World

COLLECT = "collected"


def write_requests(world: World, at: datetime, rows: list[Any], *, name: str = "f") -> None:
    """One request per row, as the collector writes them: an inputs and an outputs line each."""
    lines: dict[str, list[str]] = {}
    for i, row in enumerate(rows):
        for collection, data in ((layout.INPUTS, [row]), (layout.OUTPUTS, [{layout.PREDICTION: 150.0}])):
            record = layout.record(collection, record_id=f"{name}-{i}-{collection}", request_id=f"{name}-{i}",
                                   when=at, workspace="/ws", endpoint=ENDPOINT, deployment="blue",
                                   model="diabetes", version="1", rows=data, latency_ms=2.0, status=200)
            blob = layout.hour_prefix(ENDPOINT, "blue", collection, at) + f"{name}.jsonl"
            lines.setdefault(blob, []).append(json.dumps(record))
    for blob, text in lines.items():
        world.blobs.put(COLLECT, blob, ("\n".join(text) + "\n").encode())


def shuffled(row: list[float], rng: random.Random) -> dict[str, float]:
    names = list(FEATURES)
    rng.shuffle(names)
    return {name: row[FEATURES.index(name)] for name in names}


def checked_figures(as_sent: list[Any]) -> dict[str, Any]:
    """The drift check's audited figures for one window whose requests carried ``as_sent``."""
    world = World()
    world.register("1", world.clock.now - timedelta(hours=1))
    world.check = world.check.with_inputs(CollectedInputs(world.blobs, COLLECT))
    write_requests(world, world.clock.now + timedelta(seconds=1), as_sent)
    world.clock.now += timedelta(seconds=66)  # past the window's end and the check's delay
    [outcome] = world.check.tick()
    assert outcome["outcome"].startswith(("drifted", "no drift")), outcome
    [checked] = world.audit("drift.checked")
    return {k: checked["detail"][k] for k in ("action", "samples", "rejected", "features")}


@pytest.fixture(scope="module")
def shifted() -> list[list[float]]:
    return make_batch(150, 1, "shifted")[0].tolist()


def test_records_in_shuffled_key_order_give_the_figures_of_ordered_rows(shifted) -> None:
    rng = random.Random(7)
    ordered = checked_figures(shifted)
    assert ordered["action"] == "drifted" and ordered["samples"] == 150 and ordered["rejected"] == 0
    assert checked_figures([shuffled(r, rng) for r in shifted]) == ordered
    assert checked_figures([dict(zip(FEATURES, r, strict=True)) for r in shifted]) == ordered
    numbered = [{str(i): v for i, v in reversed(list(enumerate(r)))} for r in shifted]  # names unknown to a collector
    assert checked_figures(numbered) == ordered


def test_misaligned_records_would_have_given_other_figures(shifted) -> None:
    """The test above can fail: the same records read in their sent order compare other columns."""
    rng = random.Random(7)
    world = World()
    write_requests(world, world.clock.now, [shuffled(r, rng) for r in shifted])
    since, until = world.clock.now - timedelta(minutes=1), world.clock.now + timedelta(minutes=1)
    as_sent = [i.inputs[0] for i in read_inferences(world.blobs, COLLECT, endpoint=ENDPOINT, since=since,
                                                    until=until)]
    by_name = CollectedInputs(world.blobs, COLLECT).inputs(ENDPOINT, since, until, FEATURES)
    assert sorted(by_name) == sorted(shifted) and sorted(as_sent) != sorted(shifted)


def read_by_name(rows: list[Any]) -> tuple[list[list[float]], ReadStats]:
    world = World()
    write_requests(world, world.clock.now, rows)
    stats = ReadStats()
    since, until = world.clock.now - timedelta(minutes=1), world.clock.now + timedelta(minutes=1)
    return CollectedInputs(world.blobs, COLLECT).inputs(ENDPOINT, since, until, FEATURES, stats), stats


def test_a_record_missing_a_feature_or_naming_another_is_malformed(caplog) -> None:
    good = make_batch(3, 2, "good")[0].tolist()
    wrong = {name: v for name, v in zip(FEATURES, good[2], strict=True) if name != "bmi"} | {"colour": 1.0}
    rows, stats = read_by_name([dict(zip(reversed(FEATURES), reversed(good[0]), strict=True)), wrong, good[1]])
    assert sorted(rows) == sorted([good[0], good[1]]), "the record and the list row, in the model's order"
    assert stats.malformed == 1 and stats.lines == 6
    assert "missing bmi; unknown colour" in caplog.text
    unknown = dict(zip(FEATURES, good[2], strict=True)) | {"colour": 1.0}
    missing = {name: v for name, v in zip(FEATURES, good[2], strict=True) if name != "s6"}
    rows, stats = read_by_name([unknown, missing])
    assert rows == [] and stats.malformed == 2


def test_list_rows_keep_their_positional_order_and_other_widths_are_left_to_the_check() -> None:
    rows = np.round(make_batch(2, 3, "good")[0], 6).tolist()
    found, stats = read_by_name([rows[0], rows[1][:4]])
    assert sorted(found) == sorted([rows[0], rows[1][:4]]) and stats.malformed == 0
