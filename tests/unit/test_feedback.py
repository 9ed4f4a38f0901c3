"""The feedback loop's core: reading collected inference data (joins, hour folders, malformed lines)
and late labels joined to it (live RMSE/MAE, unknown ids, redelivery, bad files as dead letters).
The quality tests run on the in-memory fake and on real Table and Blob Storage (Azurite)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.adapters.blob_store import AzureBlobStore
from core.events import BlobCreated, parse_event
from core.feedback import layout
from core.feedback.collected import ReadStats, read_inferences
from core.feedback.labels import LabelsError, parse_labels
from core.feedback.quality import FILES, LiveQuality
from core.intake import Intake
from core.ledger import Ledger
from core.sources import SourcePolicy
from tests.conftest import memory_or_azurite
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore
from tests.payloads import sample

T0 = datetime(2026, 11, 22, 11, 58, tzinfo=UTC)  # two hour folders: 11 and 12
COLLECT = "inference-data"


def _line(collection: str, rid: str, when: datetime, rows: list[Any], *, deployment: str = "blue",
          version: str = "1", status: int = 200) -> str:
    return json.dumps(layout.record(collection, record_id=f"{rid}-{collection}", request_id=rid, when=when,
                                    workspace="/ws", endpoint="prod", deployment=deployment, model="diabetes",
                                    version=version, rows=rows, latency_ms=3.5, status=status))


def collect(blobs: Any, requests: list[tuple[str, datetime, list[float], float]], container: str = COLLECT,
            **kw: Any) -> None:
    """Write requests (id, time, features, prediction) as the collector would: one file per hour and collection."""
    files: dict[str, list[str]] = {}
    for rid, when, features, prediction in requests:
        for collection, rows in ((layout.INPUTS, [dict(zip("abc", features, strict=True))]),
                                 (layout.OUTPUTS, [{layout.PREDICTION: prediction}])):
            name = layout.hour_prefix("prod", kw.get("deployment", "blue"), collection, when) + "f.jsonl"
            files.setdefault(name, []).append(_line(collection, rid, when, rows, **kw))
    for name, lines in files.items():
        blobs.put(container, name, ("\n".join(lines) + "\n").encode())


def _read(blobs: Any, since: datetime = T0 - timedelta(hours=1), until: datetime = T0 + timedelta(hours=1),
          stats: ReadStats | None = None, container: str = COLLECT) -> list[Any]:
    return list(read_inferences(blobs, container, endpoint="prod", since=since, until=until, stats=stats))


# -- the reader ---------------------------------------------------------------------------------------
def test_inputs_and_outputs_join_by_request_id_across_hours_and_deployments_in_time_order():
    blobs = MemoryBlobStore()
    collect(blobs, [("r2", T0 + timedelta(minutes=3), [4.0, 5.0, 6.0], 20.0),
                    ("r1", T0, [1.0, 2.0, 3.0], 10.0)])
    collect(blobs, [("g1", T0 + timedelta(minutes=1), [7.0, 8.0, 9.0], 30.0)], deployment="green", version="2")
    found = _read(blobs)
    assert [(i.request_id, i.deployment, i.version, i.inputs, i.outputs) for i in found] == [
        ("r1", "blue", "1", [[1.0, 2.0, 3.0]], [10.0]), ("g1", "green", "2", [[7.0, 8.0, 9.0]], [30.0]),
        ("r2", "blue", "1", [[4.0, 5.0, 6.0]], [20.0])]
    assert found[0].time == T0 and found[0].latency_ms == 3.5 and found[0].model == "diabetes"
    assert [i.request_id for i in _read(blobs, since=T0 + timedelta(minutes=2))] == ["r2"]
    assert [i.request_id for i in _read(blobs, until=T0 + timedelta(minutes=1))] == ["r1"]  # until is exclusive


def test_malformed_lines_are_counted_and_skipped_never_raised():
    blobs = MemoryBlobStore()
    collect(blobs, [("ok", T0, [1.0, 2.0, 3.0], 10.0)])
    name = layout.hour_prefix("prod", "blue", layout.INPUTS, T0) + "bad.jsonl"
    good_input = _line(layout.INPUTS, "half", T0, [[1, 2, 3]])
    bad = ["{not json", "[1, 2]", json.dumps({"type": "azureml.inference.model_outputs", "data": []}),
           json.dumps({**json.loads(good_input), "data": "rows?"}),
           json.dumps({**json.loads(good_input), "time": "yesterday", "correlationid": "t"}), good_input]
    blobs.put(COLLECT, name, "\n".join(bad).encode())
    stats = ReadStats()
    assert [i.request_id for i in _read(blobs, stats=stats)] == ["ok"]
    assert (stats.malformed, stats.unmatched) == (5, 1)  # "half" has inputs but no outputs


def test_failed_requests_are_counted_apart_and_azure_shaped_records_read():
    blobs = MemoryBlobStore()
    collect(blobs, [("boom", T0, [1.0, 2.0, 3.0], 0.0)], status=500)
    azure = [{"specversion": "1.0", "id": "a", "type": f"azureml.inference.{c}", "time": "2026-11-22T11:59:00Z",
              "data": rows, "correlationid": "az-1", "modelversion": "default"}
             for c, rows in ((layout.INPUTS, [{"0": 1, "1": 2.5}]), (layout.OUTPUTS, [{"0": 7}]))]
    for doc in azure:
        collection = doc["type"].rsplit(".", 1)[1]
        blobs.put(COLLECT, layout.hour_prefix("prod", "blue", collection, T0) + "azure.jsonl",
                  json.dumps(doc).encode())
    stats = ReadStats()
    [found] = _read(blobs, stats=stats)
    assert (found.request_id, found.inputs, found.outputs, found.version, found.model) == (
        "az-1", [[1.0, 2.5]], [7.0], "default", "")
    assert stats.failed == 1


class ListingRecorder:
    def __init__(self, blobs: AzureBlobStore) -> None:
        self.blobs = blobs
        self.listed: list[str] = []
        self.folders: list[str] = []

    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        return self.blobs.put(container, name, data, content_type)

    def get(self, container: str, name: str) -> bytes:
        return self.blobs.get(container, name)

    def list(self, container: str, prefix: str = "") -> Any:
        self.listed.append(prefix)
        return self.blobs.list(container, prefix)

    def list_folders(self, container: str, prefix: str) -> Any:
        self.folders.append(prefix)
        return self.blobs.list_folders(container, prefix)


def test_only_the_hour_folders_in_range_are_listed(env):
    blobs = ListingRecorder(AzureBlobStore.from_connection(env["REACTOR_STORAGE_CONNECTION"]))
    container = f"{env['REACTOR_TABLE_PREFIX']}-collect"
    collect(blobs, [(f"d{d}", T0 - timedelta(days=d), [1.0, 2.0, 3.0], 1.0) for d in range(3)], container)
    found = _read(blobs, since=T0 - timedelta(minutes=30), until=T0 + timedelta(minutes=30), container=container)
    assert [i.request_id for i in found] == ["d0"]
    assert blobs.folders == ["modelDataCollector/prod/"]
    assert sorted(blobs.listed) == sorted(layout.hour_prefix("prod", "blue", c, h) for c in layout.COLLECTIONS
                                          for h in (T0, T0 + timedelta(hours=1)))


# -- labels files -------------------------------------------------------------------------------------
def test_labels_parse_as_csv_or_json_lines():
    assert [(lab.request_id, lab.observed, lab.row) for lab in parse_labels(
        "l.csv", b"\xef\xbb\xbfRequest_ID,observed,row\nr1,151.5,\nr2, 75 ,1\nr1,152,\n")] == [
        ("r1", 152.0, 0), ("r2", 75.0, 1)]
    assert [(lab.request_id, lab.observed) for lab in parse_labels(
        "l.jsonl", b'{"request_id": "r1", "observed": 3}\n\n{"request_id": "r2", "observed": 4.5}\n')] == [
        ("r1", 3.0), ("r2", 4.5)]


@pytest.mark.parametrize(("data", "problem"), [
    (b"id,value\nr1,3\n", "line 1: the header lacks request_id, observed"),
    (b"request_id,observed\nr1,3\nr2,abc\n", "line 3: observed must be a finite number, got 'abc'"),
    (b"request_id,observed\n,3\n", "line 2: request_id must be 1-128 characters"),
    (b"request_id,observed\nr1,nan\n", "line 2: observed must be a finite number"),
    (b"request_id,observed,row\nr1,3,-1\n", "line 2: row must be a whole number"),
    (b"request_id,observed\n", "no labels"),
    (b'{"request_id": "r1", "observed": 1}\n{"request_id": "r2"', "line 2: not JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_bad_labels_file_is_refused_naming_the_line(data, problem):
    with pytest.raises(LabelsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_labels("labels/batch.csv", data)


# -- joining labels: live quality -------------------------------------------------------------------------
@pytest.fixture(params=["memory", "azurite"])
def world(request):
    clock = Clock(T0 + timedelta(minutes=30))
    store, blobs, prefix = memory_or_azurite(request)
    ledger = Ledger(store, blobs, prefix=prefix, container=f"{prefix}-internal", clock=clock, lease_seconds=60)
    quality = LiveQuality(store, blobs, ledger, prefix=prefix, labels_container="labels",
                          collect_container=COLLECT, lookback_hours=24, window_hours=24, clock=clock)
    # ten predictions of version 1 (prediction = 100 + i), two of version 2
    collect(blobs, [(f"r{i}", T0 + timedelta(seconds=i), [1.0, 2.0, 3.0], 100.0 + i) for i in range(10)])
    collect(blobs, [("g0", T0, [1.0, 2.0, 3.0], 50.0), ("g1", T0, [1.0, 2.0, 3.0], 60.0)],
            deployment="green", version="2")
    return quality, store, blobs, ledger, clock


def labels_event(blobs: Any, name: str, data: bytes) -> BlobCreated:
    etag = blobs.put("labels", name, data, "text/csv")
    raw = sample("BlobCreated")
    raw["subject"] = f"/blobServices/default/containers/labels/blobs/{name}"
    raw["data"]["eTag"] = etag
    raw["eventTime"] = (T0 + timedelta(minutes=30)).isoformat()
    event = parse_event(raw)
    assert isinstance(event, BlobCreated)
    return event


def _csv(rows: list[tuple[str, float]]) -> bytes:
    return ("request_id,observed\n" + "".join(f"{r},{o}\n" for r, o in rows)).encode()


def test_labels_join_to_predictions_giving_rmse_and_mae_per_version(world):
    quality, _, blobs, ledger, _ = world
    # version 1: observed = prediction - i%3 -> errors 0,1,2,0,1,2,0,1,2,0 ; version 2: error +5 and -5
    rows = [(f"r{i}", 100.0 + i - i % 3) for i in range(10)] + [("g0", 45.0), ("g1", 65.0)]
    out = quality.on_labels(labels_event(blobs, "day1.csv", _csv([*rows, ("nobody-1", 1), ("nobody-2", 2)])), None)
    assert (out["action"], out["matched"], out["inserted"], out["unknown"]) == ("labels_joined", 12, 12, 2)
    assert out["unknown_sample"] == "nobody-1,nobody-2" and out["versions"] == "diabetes:1=10,diabetes:2=2"
    errors = [i % 3 for i in range(10)]
    assert quality.live_quality("diabetes", "1") == {
        "rmse": round(math.sqrt(sum(e * e for e in errors) / 10), 4), "mae": 0.9, "n": 10}
    assert quality.live_quality("diabetes", "2") == {"rmse": 5.0, "mae": 5.0, "n": 2}
    assert quality.live_quality("diabetes", "3") == {"rmse": None, "mae": None, "n": 0}
    [audit] = [r for r in ledger.audit_records() if r["action"] == "labels.joined"]
    assert audit["detail"]["unknown"] == 2 and audit["detail"]["matched"] == 12


def test_redelivery_of_the_same_labels_blob_adds_nothing(world):
    quality, store, blobs, _, _ = world
    event = labels_event(blobs, "once.csv", _csv([(f"r{i}", 90.0) for i in range(5)]))
    first = quality.on_labels(event, None)
    before = quality.live_quality("diabetes", "1")
    again = quality.on_labels(event, None)
    assert again["action"] == "labels_already_joined" and again["matched"] == 5
    assert quality.live_quality("diabetes", "1") == before and first["inserted"] == 5
    if isinstance(store, MemoryStateStore):  # killed after the rows, before the summary: the retry adds nothing
        store.tables[quality.table].pop((FILES, next(k for p, k in store.tables[quality.table] if p == FILES)))
        retried = quality.on_labels(event, None)
        assert (retried["inserted"], retried["already_labelled"]) == (0, 5)
        assert quality.live_quality("diabetes", "1") == before


def test_a_request_labelled_again_keeps_its_first_label_and_old_predictions_leave_the_window(world):
    quality, _, blobs, _, clock = world
    quality.on_labels(labels_event(blobs, "a.csv", _csv([("r0", 99.0)])), None)
    second = quality.on_labels(labels_event(blobs, "b.csv", _csv([("r0", 0.0), ("r1", 101.0)])), None)
    assert (second["inserted"], second["already_labelled"]) == (1, 1)
    assert quality.live_quality("diabetes", "1") == {"rmse": 0.7071, "mae": 0.5, "n": 2}
    clock.now += timedelta(hours=25)
    assert quality.live_quality("diabetes", "1")["n"] == 0
    assert quality.live_quality("diabetes", "1", timedelta(hours=26))["n"] == 2
    assert quality.live_quality("diabetes", "1", timedelta(hours=1), end=T0 + timedelta(minutes=30))["n"] == 2
    assert quality.live_quality("diabetes", "1", timedelta(hours=1), end=T0 - timedelta(minutes=1))["n"] == 0


def test_a_bad_labels_file_becomes_a_dead_letter_naming_the_problem(world):
    quality, _, blobs, ledger, _ = world
    intake = Intake(ledger, SourcePolicy(["*"], ["*"]), {BlobCreated: quality.on_labels})
    event = labels_event(blobs, "bad.csv", b"request_id,observed\nr1,1\nr2,lots\n")
    raw = sample("BlobCreated")
    raw.update(subject=event.subject, id=event.id)
    raw["data"]["eTag"] = event.etag
    receipt = intake.receive("on_blob_created", raw)
    assert receipt.status == "failed"
    [letter] = list(ledger.dead_letters("on_blob_created"))
    assert "labels/bad.csv: line 3: observed must be a finite number, got 'lots'" in letter.reason
    assert quality.live_quality("diabetes", "1")["n"] == 0


def test_a_labels_file_handled_days_later_still_finds_the_predictions_it_arrived_for(world):
    quality, _, blobs, _, clock = world
    event = labels_event(blobs, "late.csv", _csv([("r3", 100.0), ("r4", 104.0)]))  # arrived at T0 + 30 min
    clock.now += timedelta(days=3)  # a dead letter replayed after the weekend
    out = quality.on_labels(event, None)
    assert (out["matched"], out["unknown"]) == (2, 0)
    assert quality.live_quality("diabetes", "1", timedelta(days=4)) == {"rmse": 2.1213, "mae": 1.5, "n": 2}


def test_live_quality_is_a_metrics_source_for_alert_rules(world):
    from core.alerting.sources import LogQuery, MetricQuery
    from core.feedback.metrics import NAMESPACE, LiveQualitySource

    quality, _, blobs, _, clock = world
    quality.on_labels(labels_event(blobs, "m.csv", _csv([("r0", 97.0), ("r1", 105.0), ("g0", 50.0)])), None)
    source = LiveQualitySource(quality, ["diabetes"], production=lambda model: "1")
    queries = [MetricQuery(("/models/diabetes", "/models/diabetes/versions/2", "/models/diabetes/versions/9",
                            "/models/churn", "/elsewhere/x"), NAMESPACE, "rmse", "average", 3600),
               MetricQuery(("/models/diabetes",), NAMESPACE, "n", "average", 3600),
               MetricQuery(("/models/diabetes",), "Microsoft.MachineLearningServices/workspaces", "rmse", "avg", 60)]
    rmse, n, other = source.query_metrics(queries, clock.now)
    assert rmse == {"/models/diabetes": 3.5355, "/models/diabetes/versions/2": 0.0,
                    "/models/diabetes/versions/9": None, "/models/churn": None, "/elsewhere/x": None}
    assert n == {"/models/diabetes": 2.0} and other == {"/models/diabetes": None}
    assert source.query_metrics(queries[:1], clock.now - timedelta(hours=2))[0]["/models/diabetes"] is None
    assert LiveQualitySource(quality, ["diabetes"], lambda m: None).query_metrics(queries[:1], clock.now)[0][
        "/models/diabetes"] is None, "nothing in production: no value"
    assert source.query_logs([LogQuery("ws", "q", 60)], clock.now) == [None]
