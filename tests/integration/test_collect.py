"""Inference data collection for real: scoring through a router (in the control-plane process and in
this one) to real ``ml.serve`` deployments, collected into Azurite in Azure ML's data collector layout,
and read back with ``core.feedback.collected``. Count in = count stored, under concurrent load and
across a SIGTERM; a full buffer drops records (counted) and never the request; storage that refuses
writes for a while costs nothing once it is back (same blob names: no duplicates)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from core.adapters.blob_store import AzureBlobStore
from core.adapters.local_ml import LocalMLPlatform
from core.adapters.local_serving import LocalServing
from core.adapters.table_store import TableStateStore
from core.feedback import layout
from core.feedback.collected import ReadStats, read_inferences
from core.ml_platform import DeploymentSpec
from embedded.azurite import Azurite
from embedded.serving import ServingProcess
from embedded.serving_collect import Collector
from embedded.serving_replica import Replica
from embedded.serving_router import Router, Routes
from ml.sample_data import write_batches
from ml.train import train
from tests.conftest import base_env, unique_prefix
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MODEL, ENDPOINT = "diabetes", "collect-prod"
FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def _rows(i: int) -> list[dict[str, float]]:
    """One request's row, keyed by feature and deliberately out of the model's order."""
    return [{name: round(0.001 * (i + k), 6) for k, name in reversed(list(enumerate(FEATURES)))}]


def _everything(blobs: AzureBlobStore, container: str, endpoint: str, stats: ReadStats | None = None) -> list[Any]:
    now = datetime.now(UTC)
    return list(read_inferences(blobs, container, endpoint=endpoint, since=now - timedelta(hours=1),
                                until=now + timedelta(minutes=5), stats=stats))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("collect-model")
    train(write_batches(tmp / "data", files=1, rows=80, seed=5, kind="good"), tmp / "model")
    return tmp / "model"


class Plane:
    """The control plane as a process: one endpoint, deployment blue serving a registered version."""

    def __init__(self, azurite: Azurite, model_dir: Path, tmp: Path) -> None:
        self.env = base_env(azurite.connection_string, unique_prefix())
        self.container = f"{self.env['REACTOR_TABLE_PREFIX']}-collected"
        # nothing flushes by time or by size: only a stop can write what the test sends
        self.env.update(REACTOR_COLLECT_CONTAINER=self.container, REACTOR_LOCAL_COLLECT_FLUSH_SECONDS="300",
                        REACTOR_LOCAL_COLLECT_BATCH="100000", REACTOR_LOCAL_EVENTGRID_URL="http://127.0.0.1:9")
        self.blobs = AzureBlobStore.from_connection(azurite.connection_string)
        store = TableStateStore.from_connection(azurite.connection_string)
        registry = LocalMLPlatform(store, self.blobs, lambda events: [], prefix=self.env["REACTOR_TABLE_PREFIX"],
                                   workdir=tmp)
        self.version = registry.register_package(MODEL, model_dir, {}, {}).version
        self.tmp = tmp
        self.start()
        self.serving.ensure_endpoint(ENDPOINT, {})
        self.serving.deploy(DeploymentSpec(ENDPOINT, "blue", MODEL, self.version))
        self.serving.deploy(DeploymentSpec(ENDPOINT, "faulty", MODEL, self.version,
                                           environment={"REACTOR_SCORE_FAULT": "error"}))
        self.wait_up()
        self.uri = self.serving.set_traffic(ENDPOINT, {"blue": 100}).scoring_uri

    def start(self, **env: str) -> None:
        self.env.update(env)
        log = self.tmp / f"serving-{uuid.uuid4().hex[:6]}.log"
        self.control = ServingProcess(self.env, log_path=log).start()
        self.serving = LocalServing(self.control.url, self.blobs, self.env["REACTOR_TABLE_PREFIX"])

    def wait_up(self) -> None:
        wait_for("blue and faulty up", lambda: {d.name: d.state for d in self.serving.list_deployments(ENDPOINT)}
                 == {"blue": "succeeded", "faulty": "succeeded"}, timeout=90, interval=0.1)

    def counts(self) -> dict[str, int]:
        return dict(requests.get(self.control.url, timeout=5).json()["collector"])


@pytest.fixture(scope="module")
def plane(azurite: Azurite, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    built = Plane(azurite, model_dir, tmp_path_factory.mktemp("collect-plane"))
    yield built
    built.control.stop()


def _post(uri: str, i: int, **headers: str) -> requests.Response:
    return requests.post(uri, data=json.dumps({"data": _rows(i)}), timeout=10,
                         headers={"Content-Type": "application/json", **headers})


def test_count_in_equals_count_stored_under_concurrent_load_and_sigterm_flushes_it(plane):
    ids = [f"load-{i:04d}" for i in range(400)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _post(plane.uri, i, **{"x-request-id": ids[i]}), range(len(ids))))
    assert [a.status_code for a in answers] == [200] * len(ids)
    assert [a.headers["x-request-id"] for a in answers] == ids
    assert plane.counts() | {} == {"accepted": 400, "stored": 0, "dropped": 0, "write_failures": 0, "lost": 0,
                                   "buffered": 400}
    assert list(plane.blobs.list_folders(plane.container, "")) == []  # nothing written yet: all in the buffer
    plane.control.stop()  # SIGTERM: the control plane flushes what it buffered
    stats = ReadStats()
    found = {i.request_id: i for i in _everything(plane.blobs, plane.container, ENDPOINT, stats)}
    assert sorted(found) == ids and stats.malformed == stats.unmatched == 0
    for i, answer in enumerate(answers):
        got = found[ids[i]]
        assert (got.endpoint, got.deployment, got.model, got.version) == (ENDPOINT, "blue", MODEL, plane.version)
        assert got.outputs == answer.json()["predictions"]
        assert got.inputs == [[_rows(i)[0][name] for name in FEATURES]]  # in the model's feature order
        assert got.latency_ms > 0
    plane.start()
    plane.wait_up()


def test_the_layout_and_records_are_azure_mls(plane):
    _post(plane.uri, 1, **{"x-request-id": "layout-1"})
    plane.control.stop()
    names = [b.name for b in plane.blobs.list(plane.container, f"{layout.ROOT}/{ENDPOINT}/blue/")]
    hour = datetime.now(UTC)
    assert any(n.startswith(f"modelDataCollector/{ENDPOINT}/blue/model_inputs/{hour:%Y/%m/%d}/") for n in names)
    assert all(n.endswith(".jsonl") and n.split("/")[3] in ("model_inputs", "model_outputs") for n in names)
    lines = [json.loads(line) for n in names for line in plane.blobs.get(plane.container, n).splitlines()]
    mine = [doc for doc in lines if doc["correlationid"] == "layout-1"]
    assert sorted(doc["type"] for doc in mine) == ["azureml.inference.model_inputs", "azureml.inference.model_outputs"]
    for doc in mine:
        assert doc["specversion"] == "1.0" and doc["datacontenttype"] == "application/json"
        assert doc["xrequestid"] == "layout-1" and doc["modelversion"] == plane.version
        assert doc["source"].endswith(f"/onlineEndpoints/{ENDPOINT}/deployments/blue")
        assert doc["time"].endswith("Z") and doc["statuscode"] == 200
    assert next(d for d in mine if d["type"].endswith("inputs"))["data"][0] == {n: _rows(1)[0][n] for n in FEATURES}
    plane.start()
    plane.wait_up()


def test_flushes_by_time_and_by_size_while_running(plane):
    plane.control.stop()
    plane.start(REACTOR_LOCAL_COLLECT_FLUSH_SECONDS="1", REACTOR_LOCAL_COLLECT_BATCH="50")
    plane.wait_up()
    before = len(_everything(plane.blobs, plane.container, ENDPOINT))
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda i: _post(plane.uri, i).status_code, range(120))) == {200}
    wait_for("120 more stored while running", lambda: plane.counts()["stored"] == 120, timeout=15)
    assert len(_everything(plane.blobs, plane.container, ENDPOINT)) == before + 120
    assert plane.counts()["dropped"] == 0


def test_request_ids_are_honoured_generated_returned_and_checked(plane):
    given = _post(plane.uri, 2, **{"x-request-id": "caller-id-1"})
    assert given.headers["x-request-id"] == "caller-id-1"
    client = _post(plane.uri, 3, **{"x-ms-client-request-id": "client-7"})
    assert client.headers["x-request-id"] == "client-7" and client.headers["x-ms-client-request-id"] == "client-7"
    generated = _post(plane.uri, 4)
    assert uuid.UUID(generated.headers["x-request-id"]).version == 4
    bad = _post(plane.uri, 5, **{"x-request-id": "x" * 200})
    assert bad.status_code == 400 and "x-request-id" in bad.json()["error"]


def test_failed_requests_are_collected_with_their_status_not_as_inferences(plane):
    answer = _post(plane.uri, 6, **{"x-request-id": "fails-1", "azureml-model-deployment": "faulty"})
    assert answer.status_code == 500
    wait_for("the failure stored", lambda: plane.counts()["buffered"] == 0, timeout=10)
    stats = ReadStats()
    assert "fails-1" not in {i.request_id for i in _everything(plane.blobs, plane.container, ENDPOINT, stats)}
    assert stats.failed >= 1


# -- in this process: a router, a real ml.serve deployment, storage that misbehaves ----------------------
class FlakyBlobs:
    """Azurite behind a storage outage: the first ``failures`` writes are refused."""

    def __init__(self, blobs: AzureBlobStore, failures: int) -> None:
        self.blobs, self.failures = blobs, failures
        self.puts: list[str] = []

    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        self.puts.append(name)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("storage unavailable")
        return self.blobs.put(container, name, data, content_type)

    def get(self, container: str, name: str) -> bytes:
        return self.blobs.get(container, name)

    def list(self, container: str, prefix: str = "") -> Any:
        return self.blobs.list(container, prefix)


@pytest.fixture(scope="module")
def replica(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    def fetch(dest: Path) -> None:
        shutil.copytree(model_dir, dest, dirs_exist_ok=True)

    started = Replica("local/blue", fetch, {},
                      tmp_path_factory.mktemp("collect-replica"), lambda r: None).start()
    wait_for("ml.serve up", lambda: started.state != "creating", timeout=90, interval=0.1)
    assert started.state == "succeeded", started.error
    yield started
    started.stop()


def _router(replica: Replica, collector: Collector) -> Router:
    router = Router("inproc", collector=collector).start()
    router.update(Routes({"blue": 100}, {}, {"blue": replica.port}, {"blue": (MODEL, "1")}))
    return router


def test_storage_refusing_writes_for_a_while_loses_and_duplicates_nothing(azurite, replica):
    real = AzureBlobStore.from_connection(azurite.connection_string)
    container = f"{unique_prefix()}-flaky"
    flaky = FlakyBlobs(real, failures=3)
    collector = Collector(flaky, container, workspace="ws", batch=20, flush_seconds=1)
    router = _router(replica, collector)
    try:
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda i: _post(router.scoring_uri, i).status_code, range(60))) == {200}
        wait_for("all 60 stored", lambda: collector.snapshot()["stored"] == 60, timeout=30)
    finally:
        router.stop()
        collector.close()
    assert collector.snapshot()["write_failures"] == 3
    assert len(flaky.puts) == len(set(flaky.puts)) + 3  # each refused blob was written again under its name
    found = _everything(real, container, "inproc")
    assert len(found) == len({i.request_id for i in found}) == 60


def test_a_full_buffer_drops_records_loudly_and_never_the_request(azurite, replica):
    blobs = AzureBlobStore.from_connection(azurite.connection_string)
    container = f"{unique_prefix()}-full"
    collector = Collector(blobs, container, workspace="ws", batch=100_000, flush_seconds=300, buffer=10)
    router = _router(replica, collector)
    try:
        assert [_post(router.scoring_uri, i).status_code for i in range(25)] == [200] * 25
        assert collector.snapshot() | {} == {"accepted": 10, "stored": 0, "dropped": 15, "write_failures": 0,
                                             "lost": 0, "buffered": 10}
    finally:
        router.stop()
        collector.close()
    assert collector.snapshot()["stored"] == 10
    assert len(_everything(blobs, container, "inproc")) == 10


def test_the_blob_watcher_leaves_the_collected_data_alone_and_publishes_labels(azurite):
    from azure.storage.blob import BlobServiceClient

    from core.adapters.eventgrid_subscriptions import load
    from embedded.blob_events import BlobWatcher, routed_container

    subscriptions = load()
    assert not routed_container(subscriptions, "inference-data") and not routed_container(subscriptions, "reactor-x")
    assert routed_container(subscriptions, "labels") and routed_container(subscriptions, "data")
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for name in ("inference-data", "labels"):
        if not service.get_container_client(name).exists():
            service.create_container(name)
        service.get_blob_client(name, f"probe-{uuid.uuid4().hex}.csv").upload_blob(b"request_id,observed\n")
    published: list[dict[str, Any]] = []
    listed: list[str] = []

    def routable(container: str) -> bool:
        listed.append(container)
        return routed_container(subscriptions, container)

    BlobWatcher(service, published.extend, routable=routable).poll()
    containers = {e["subject"].split("/containers/")[1].split("/")[0] for e in published}
    assert "labels" in containers and "inference-data" not in containers
    assert "inference-data" in listed, "asked, and skipped"
