"""The collector's records, on in-memory storage: rows named in the model's feature order, failed
requests kept with their error, one blob per hour folder and collection, and read back by the reader."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from core.feedback import layout
from core.feedback.collected import ReadStats, read_inferences
from embedded.serving_collect import Collector, Scored
from tests.fakes import MemoryBlobStore

T0 = datetime(2026, 12, 1, 9, 59, 59, tzinfo=UTC)
NAMES = ("a", "b", "c")


def scored(rid: str, body: Any, status: int = 200, answer: Any = None, when: datetime = T0,
           version: str = "1") -> Scored:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Scored(rid, "prod", "blue", "m", version, when, raw, status,
                  json.dumps(answer if answer is not None else {"predictions": [1.5]}).encode(), 2.0)


def lines(blobs: MemoryBlobStore, collection: str) -> dict[str, dict[str, Any]]:
    found = {}
    for (_, name), data in blobs.blobs.items():
        if f"/{collection}/" in name:
            for line in data.decode().splitlines():
                doc = json.loads(line)
                found[doc["correlationid"]] = doc
    return found


def collected(requests: list[Scored], features: Any = None) -> MemoryBlobStore:
    blobs = MemoryBlobStore()
    collector = Collector(blobs, "c", workspace="/ws", batch=10_000, flush_seconds=300,
                          features=features or (lambda model, version: NAMES))
    for r in requests:
        assert collector.record(r)
    collector.close()
    assert collector.snapshot()["stored"] == len(requests)
    return blobs


def test_rows_are_named_in_the_models_feature_order_whatever_the_caller_sent():
    blobs = collected([scored("list", {"data": [[1, 2, 3]]}), scored("dict", {"data": [{"c": 3, "a": 1, "b": 2}]}),
                       scored("short", {"data": [[1, 2]]})])
    inputs = lines(blobs, layout.INPUTS)
    assert inputs["list"]["data"] == [{"a": 1, "b": 2, "c": 3}]
    assert list(inputs["dict"]["data"][0]) == ["a", "b", "c"]
    assert inputs["short"]["data"] == [{"0": 1, "1": 2}]  # not the model's shape: numbered, as pandas would
    assert lines(blobs, layout.OUTPUTS)["list"]["data"] == [{"prediction": 1.5}]


def test_failed_and_unreadable_requests_are_kept_with_the_reason():
    blobs = collected([scored("notjson", b"{nope", 400, {"error": "request body is not valid JSON"}),
                       scored("boom", {"data": [[1, 2, 3]]}, 500, {"error": "internal scoring error: KeyError"})])
    inputs, outputs = lines(blobs, layout.INPUTS), lines(blobs, layout.OUTPUTS)
    assert inputs["notjson"]["data"] == [] and inputs["notjson"]["error"] == "request body is not JSON"
    assert outputs["notjson"]["statuscode"] == 400 and outputs["notjson"]["error"].startswith("request body")
    assert outputs["boom"]["data"] == [] and outputs["boom"]["error"] == "internal scoring error: KeyError"
    stats = ReadStats()
    assert list(read_inferences(blobs, "c", endpoint="prod", since=T0 - timedelta(hours=1),
                                until=T0 + timedelta(hours=1), stats=stats)) == []
    assert stats.failed == 2


def test_one_blob_per_hour_folder_and_collection_and_unique_record_ids():
    later = T0 + timedelta(seconds=2)  # the next hour
    blobs = collected([scored("r1", {"data": [[1, 2, 3]]}), scored("r2", {"data": [[1, 2, 3]]}, when=later),
                       scored("r3", {"data": [[1, 2, 3]]}, when=later)])
    names = sorted(name for _, name in blobs.blobs)
    base = "modelDataCollector/prod/blue"
    assert [n.rsplit("/", 1)[0] for n in names] == [
        f"{base}/model_inputs/2026/12/01/09", f"{base}/model_inputs/2026/12/01/10",
        f"{base}/model_outputs/2026/12/01/09", f"{base}/model_outputs/2026/12/01/10"]
    ids = [doc["id"] for c in layout.COLLECTIONS for doc in lines(blobs, c).values()]
    assert len(ids) == len(set(ids)) == 6


def test_a_version_without_a_model_card_gets_numbered_columns_looked_up_once():
    asked: list[tuple[str, str]] = []

    def features(model: str, version: str) -> tuple[str, ...]:
        asked.append((model, version))
        raise FileNotFoundError("no model.json")

    blobs = collected([scored(f"r{i}", {"data": [[1, 2, 3]]}, version="7") for i in range(5)], features)
    assert asked == [("m", "7")], "the card is looked up once per version"
    assert lines(blobs, layout.INPUTS)["r0"]["data"] == [{"0": 1, "1": 2, "2": 3}]


class DownBlobs(MemoryBlobStore):
    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        raise ConnectionError("storage unreachable")


def test_storage_down_at_shutdown_counts_what_is_lost_instead_of_hanging():
    collector = Collector(DownBlobs(), "c", workspace="/ws", batch=10_000, flush_seconds=300)
    for i in range(3):
        collector.record(scored(f"r{i}", {"data": [[1, 2, 3]]}))
    started = datetime.now(UTC)
    collector.close(timeout=2)
    assert (datetime.now(UTC) - started).total_seconds() < 6
    counts = collector.snapshot()
    assert (counts["stored"], counts["lost"], counts["buffered"]) == (0, 3, 3) and counts["write_failures"] >= 1
    assert not collector.record(scored("late", {"data": [[1, 2, 3]]})), "a closed collector takes nothing"


def test_the_writer_lets_other_threads_run_while_it_builds_a_big_batch():
    """A request thread must not wait for the writer's whole JSON build (tens of ms for a batch): at
    CPython's 5 ms switch interval a waiting thread would get the GIL only every 5 ms."""
    collector = Collector(MemoryBlobStore(), "c", workspace="/ws", batch=100_000, flush_seconds=300,
                          features=lambda model, version: NAMES)
    for i in range(2000):
        assert collector.record(scored(f"r{i}", {"data": [[i, 2, 3]]}))
    ran, stop = [0], threading.Event()

    def request_thread() -> None:  # comes back from "I/O" every 0.5 ms and needs the GIL
        while not stop.is_set():
            time.sleep(0.0005)
            ran[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    probe = threading.Thread(target=request_thread)
    probe.start()
    try:
        time.sleep(0.01)
        before, started = ran[0], time.perf_counter()
        assert collector.flush()
        took, turns = time.perf_counter() - started, ran[0] - before
    finally:
        stop.set()
        probe.join()
        sys.setswitchinterval(interval)
        collector.close()
    assert collector.snapshot()["stored"] == 2000
    # 200 slices, a pause after each: the other thread gets a turn every slice or two, not every 5 ms
    assert turns >= 60, f"the other thread ran {turns} times in {took * 1000:.0f} ms"
