"""Local online endpoints for real: the serving control plane as a process, its deployments as
``ml.serve`` processes on registered model versions in Azurite, scoring through the endpoint's router,
and the ModelDeployed event reaching an Event Grid receiver in Azure ML's schema.

One control plane and one endpoint serve the whole module (starting scoring processes is the slow
part); each test sets the traffic it needs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from core.adapters.blob_store import AzureBlobStore
from core.adapters.local_metrics import LocalSource, online_endpoint_metrics
from core.adapters.local_ml import LocalMLPlatform
from core.adapters.local_serving import LocalServing
from core.adapters.table_store import TableStateStore
from core.alerting.sources import MetricQuery
from core.events import ModelDeployed, parse_event
from core.ml_platform import Deployment, DeploymentSpec
from embedded.azurite import Azurite, free_port
from embedded.serving import ServingProcess
from ml.sample_data import write_batches
from ml.train import train
from tests.conftest import base_env, unique_prefix
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MODEL = "diabetes"
ENDPOINT = "diabetes-prod"


class EventGridReceiver:
    """The Functions host's Event Grid endpoint, as far as the control plane can tell: records deliveries."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, list[dict[str, Any]]]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                parts = urlsplit(self.path)
                if parts.path == "/runtime/webhooks/eventgrid":
                    received.append((parse_qs(parts.query)["functionName"][0], body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def deployed(self) -> list[tuple[str, dict[str, Any]]]:
        return [(function, event) for function, batch in self.deliveries for event in batch
                if event["eventType"].endswith("ModelDeployed")]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class World:
    """Azurite tables of this module, three registered versions, a control plane and its client."""

    def __init__(self, azurite: Azurite, tmp: Path) -> None:
        self.env = base_env(azurite.connection_string, unique_prefix())
        self.receiver = EventGridReceiver()
        self.env["REACTOR_LOCAL_EVENTGRID_URL"] = self.receiver.url
        self.prefix = self.env["REACTOR_TABLE_PREFIX"]
        self.blobs = AzureBlobStore.from_connection(azurite.connection_string)
        store = TableStateStore.from_connection(azurite.connection_string)
        registry = LocalMLPlatform(store, self.blobs, lambda events: [], prefix=self.prefix, workdir=tmp)
        good, broken = _packages(tmp)
        self.versions = [registry.register_package(MODEL, package, {"team": "ml"}, {}).version
                         for package in (good, good, broken)]
        self.control = ServingProcess(self.env, log_path=tmp / "serving.log").start()
        self.serving = LocalServing(self.control.url, self.blobs, self.prefix)

    def restart(self) -> None:
        self.control.stop()
        self.control = ServingProcess(self.env, log_path=self.control.log_path.with_suffix(".2.log")).start()
        self.serving = LocalServing(self.control.url, self.blobs, self.prefix)

    def wait_settled(self, names: list[str], timeout: float = 60) -> dict[str, Deployment]:
        def settled() -> dict[str, Deployment] | None:
            found = {d.name: d for d in self.serving.list_deployments(ENDPOINT) if d.name in names}
            done = len(found) == len(names) and all(d.state != "creating" for d in found.values())
            return found if done else None

        return wait_for(f"deployments {names} to leave 'creating'", settled, timeout=timeout, interval=0.1)

    def sample(self) -> bytes:
        body = self.serving.sample_request(MODEL, self.versions[0])
        assert body is not None
        return body

    def stop(self) -> None:
        self.control.stop()
        self.receiver.stop()


def _packages(tmp: Path) -> tuple[Path, Path]:
    """A trained model package, and one whose model file is not a model (a deployment that fails)."""
    data = write_batches(tmp / "data", files=1, rows=80, seed=3, kind="good")
    train(data, tmp / "good")
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "model.pkl").write_bytes(b"not a pickle")
    (broken / "sample_input.json").write_bytes((tmp / "good" / "sample_input.json").read_bytes())
    return tmp / "good", broken


@pytest.fixture(scope="module")
def world(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = World(azurite, tmp_path_factory.mktemp("serving"))
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture(scope="module")
def deployed(world: World) -> dict[str, Any]:
    """blue (v1), green (v2), faulty (v1, every call fails) and broken (v3, cannot load), deployed at once."""
    serving, (v1, v2, v3) = world.serving, world.versions
    endpoint = serving.ensure_endpoint(ENDPOINT, {"model": MODEL})
    specs = [DeploymentSpec(ENDPOINT, "blue", MODEL, v1, tags={"reactor_release": "r1"}),
             DeploymentSpec(ENDPOINT, "green", MODEL, v2),
             DeploymentSpec(ENDPOINT, "faulty", MODEL, v1, environment={"REACTOR_SCORE_FAULT": "error"}),
             DeploymentSpec(ENDPOINT, "broken", MODEL, v3)]
    started = time.monotonic()
    first = [serving.deploy(spec) for spec in specs]
    settled = world.wait_settled([s.name for s in specs])
    return {"endpoint": endpoint, "first": first, "settled": settled, "seconds": time.monotonic() - started}


def _score_many(world: World, count: int, deployment: str | None = None) -> list[int]:
    body = world.sample()
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: world.serving.score(ENDPOINT, body, deployment).status, range(count)))


def test_deploy_is_asynchronous_and_ends_succeeded_or_failed_with_the_reason(world, deployed):
    assert [d.state for d in deployed["first"]] == ["creating"] * 4
    settled = deployed["settled"]
    assert {name: d.state for name, d in settled.items()} == {
        "blue": "succeeded", "green": "succeeded", "faulty": "succeeded", "broken": "failed"}
    assert "cannot start the scoring server" in settled["broken"].error
    assert deployed["seconds"] < 45, deployed["seconds"]
    assert world.serving.deploy(DeploymentSpec(ENDPOINT, "blue", MODEL, world.versions[0])).state == "succeeded"
    assert deployed["endpoint"].scoring_uri.startswith("http://127.0.0.1:")


def test_deploy_refuses_an_unknown_version_a_changed_model_and_an_unknown_endpoint(world, deployed):
    with pytest.raises(ValueError, match="diabetes:99 is not registered"):
        world.serving.deploy(DeploymentSpec(ENDPOINT, "ghost", MODEL, "99"))
    with pytest.raises(ValueError, match="a deployment's model cannot change"):
        world.serving.deploy(DeploymentSpec(ENDPOINT, "blue", MODEL, world.versions[1]))
    with pytest.raises(ValueError, match="no endpoint named 'nowhere'"):
        world.serving.deploy(DeploymentSpec("nowhere", "blue", MODEL, world.versions[0]))
    assert world.serving.get_deployment(ENDPOINT, "ghost") is None
    assert world.serving.get_endpoint("nowhere") is None


def test_scoring_goes_through_the_router_by_traffic_or_by_header(world, deployed):
    body = world.sample()
    world.serving.set_traffic(ENDPOINT, {}, mirror={})
    assert world.serving.score(ENDPOINT, body).status == 503  # no traffic: nobody to answer
    endpoint = world.serving.set_traffic(ENDPOINT, {"Blue": 100, "green": 0})
    assert (endpoint.traffic, endpoint.share("BLUE"), endpoint.share("green")) == ({"blue": 100}, 100, 0)
    answer = world.serving.score(ENDPOINT, body)
    assert answer.status == 200 and len(json.loads(answer.body)["predictions"]) == 3
    raw = requests.post(endpoint.scoring_uri, data=body, headers={"azureml-model-deployment": "green"}, timeout=10)
    assert (raw.status_code, raw.headers["azureml-model-deployment"]) == (200, "green")
    assert world.serving.score(ENDPOINT, b"{nope", "green").status == 400
    assert world.serving.score(ENDPOINT, body, "faulty").status == 500
    assert world.serving.score(ENDPOINT, body, "nobody").status == 404


def test_a_90_10_split_sends_about_a_tenth_to_the_canary(world, deployed):
    world.serving.set_traffic(ENDPOINT, {"blue": 90, "green": 10}, mirror={})
    since = datetime.now(UTC)
    assert _score_many(world, 200) == [200] * 200
    blue = world.serving.deployment_health(ENDPOINT, "blue", since)
    green = world.serving.deployment_health(ENDPOINT, "green", since)
    assert blue.requests + green.requests == 200
    assert 12 <= green.requests <= 28, (blue, green)
    assert blue.errors == green.errors == 0
    assert green.p95_ms is not None and 0 < green.p95_ms < 1000


def test_mirror_copies_a_share_and_discards_the_answers(world, deployed):
    world.serving.set_traffic(ENDPOINT, {"blue": 100}, mirror={"faulty": 20})
    since = datetime.now(UTC)
    assert _score_many(world, 50) == [200] * 50  # the mirror's 500s never reach the caller
    mirrored = wait_for("mirrored requests", lambda: (h := world.serving.deployment_health(
        ENDPOINT, "faulty", since)).requests >= 8 and h, timeout=10)
    assert 8 <= mirrored.requests <= 12 and mirrored.errors == mirrored.requests
    assert world.serving.get_endpoint(ENDPOINT).mirror == {"faulty": 20}
    world.serving.set_traffic(ENDPOINT, {"blue": 100}, mirror={})


def test_health_counts_errors_and_latency_per_deployment(world, deployed):
    world.serving.set_traffic(ENDPOINT, {"blue": 100}, mirror={})
    since = datetime.now(UTC)
    assert _score_many(world, 20, "faulty") == [500] * 20
    assert _score_many(world, 10) == [200] * 10
    faulty = world.serving.deployment_health(ENDPOINT, "faulty", since)
    blue = world.serving.deployment_health(ENDPOINT, "blue", since)
    assert (faulty.requests, faulty.errors, faulty.error_rate) == (20, 20, 1.0)
    assert (blue.requests, blue.errors) == (10, 0)
    assert faulty.p95_ms is not None and blue.p95_ms is not None
    future = world.serving.deployment_health(ENDPOINT, "blue", datetime.now(UTC) + timedelta(minutes=1))
    assert (future.requests, future.p95_ms) == (0, None)


def test_alert_rules_read_the_endpoints_metrics_with_a_fault_injected_into_a_running_deployment(world, deployed):
    """What a rule written for Azure Monitor asks (RequestsPerMinute by statusCodeClass and deployment,
    RequestLatency_P95), answered by the real control plane from the real routed requests."""
    world.serving.set_traffic(ENDPOINT, {"blue": 100}, mirror={})
    fault = f"{world.control.url}/endpoints/{ENDPOINT}/deployments/blue/fault"
    assert requests.put(fault, json={"fault": "error-percent:20"}, timeout=10).json()["fault"] == "error-percent:20"
    answers = _score_many(world, 50)
    assert requests.put(fault, json={"fault": ""}, timeout=10).status_code == 200
    after = _score_many(world, 10)
    assert answers.count(500) == 10 and after == [200] * 10  # a fifth while set, none once cleared
    resource = f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/" \
               f"onlineEndpoints/{ENDPOINT}".lower()
    ns = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    errors = MetricQuery((resource,), ns, "RequestsPerMinute", "total", 60, (("statusCodeClass", "5xx"),
                                                                              ("deployment", "blue")))
    codes = MetricQuery((resource,), ns, "RequestsPerMinute", "total", 60, (("statusCode", "500"),
                                                                             ("deployment", "blue")))
    p95 = MetricQuery((resource,), ns, "RequestLatency_P95", "maximum", 60, (("deployment", "blue"),))
    source = LocalSource(online_endpoint_metrics(world.control.url))
    found = source.query_metrics([errors, codes, p95], datetime.now(UTC) + timedelta(seconds=1))
    assert found[0][resource] == 10 and found[1][resource] == 10  # blue fails only when told to
    assert found[2][resource] is not None and found[2][resource] > 0
    for body, message in [({"fault": "crash"}, "is not one of"), ({"faults": "error"}, "body must be")]:
        answer = requests.put(fault, json=body, timeout=10)
        assert answer.status_code == 400 and message in answer.json()["error"]
    assert requests.put(f"{world.control.url}/endpoints/{ENDPOINT}/deployments/ghost/fault",
                        json={"fault": "error"}, timeout=10).status_code == 404


@pytest.mark.parametrize(("traffic", "mirror", "message"), [
    ({"blue": 90, "green": 20}, None, "must sum to 100"),
    ({"blue": 50}, None, "must sum to 100"),
    ({"blue": 100, "ghost": 0}, None, None),  # zero entries are dropped, names or not
    ({"blue": 90, "ghost": 10}, None, "which endpoint diabetes-prod does not have"),
    ({"blue": 90, "broken": 10}, None, "deployment broken is failed"),
    ({"blue": 100, "BLUE": 0}, None, "names deployment blue twice"),
    ({"blue": 100.0}, None, "whole percent"),
    ({"blue": 100}, {"blue": 10}, "cannot take live and mirror traffic"),
    ({"blue": 100}, {"green": 60}, "at most 50"),
])
def test_traffic_is_checked_as_azure_checks_it(world, deployed, traffic, mirror, message):
    if message is None:
        assert world.serving.set_traffic(ENDPOINT, traffic, mirror).traffic == {"blue": 100}
        return
    with pytest.raises(ValueError, match=message):
        world.serving.set_traffic(ENDPOINT, traffic, mirror)


def test_delete_is_refused_while_the_deployment_has_traffic(world, deployed):
    world.serving.set_traffic(ENDPOINT, {"blue": 100}, mirror={"green": 10})
    with pytest.raises(ValueError, match="has traffic"):
        world.serving.delete_deployment(ENDPOINT, "blue")
    with pytest.raises(ValueError, match="mirror"):
        world.serving.delete_deployment(ENDPOINT, "green")
    world.serving.delete_deployment(ENDPOINT, "broken")
    world.serving.delete_deployment(ENDPOINT, "broken")  # absent is fine
    assert world.serving.get_deployment(ENDPOINT, "broken") is None
    assert world.serving.get_deployment(ENDPOINT, "blue").state == "succeeded"
    world.serving.set_traffic(ENDPOINT, {"blue": 100}, mirror={})


def test_scale_to_zero_stops_the_process_and_back_restarts_it(world, deployed):
    body = world.sample()
    world.serving.scale(ENDPOINT, "green", 0)
    assert world.serving.get_deployment(ENDPOINT, "green").instance_count == 0
    assert world.serving.score(ENDPOINT, body, "green").status == 503
    world.serving.scale(ENDPOINT, "green", 1)
    assert world.wait_settled(["green"])["green"].state == "succeeded"
    assert world.serving.score(ENDPOINT, body, "green").status == 200
    with pytest.raises(ValueError, match="instance_count"):
        world.serving.scale(ENDPOINT, "green", -1)


def test_model_deployed_reaches_the_app_in_azure_ml_schema(world, deployed):
    events = wait_for("ModelDeployed events", lambda: len(world.receiver.deployed()) >= 3 and world.receiver.deployed(),
                      timeout=30)
    by_deployment = {}
    for function, raw in events:
        assert function == "on_model_deployed"  # routed by infra/event-subscriptions.json
        event = parse_event(raw)
        assert isinstance(event, ModelDeployed)
        by_deployment[event.tags["reactor_deployment"]] = (event, raw)
    assert sorted(by_deployment) == ["blue", "faulty", "green"]  # not the one that failed
    event, raw = by_deployment["blue"]
    assert (event.service_name, event.compute_type, event.model_ids) == (ENDPOINT, "Managed", ((MODEL, "1"),))
    assert dict(event.tags) == {"reactor_release": "r1", "reactor_deployment": "blue"}
    assert raw["subject"] == f"endpoints/{ENDPOINT}" and raw["data"]["ServiceProperties"] == {}
    assert len(events) == 3  # green's restart after scaling was not announced again


def test_control_api_answers_bad_input_with_4xx(world, deployed):
    url = world.control.url
    cases = [requests.put(f"{url}/endpoints/{ENDPOINT}/traffic", data="{nope", timeout=5),
             requests.put(f"{url}/endpoints/{ENDPOINT}/traffic", json=[1], timeout=5),
             requests.put(f"{url}/endpoints/x/deployments/blue", json={}, timeout=5),
             requests.put(f"{url}/endpoints/{ENDPOINT}/deployments/new-one", json={"model_name": MODEL}, timeout=5),
             requests.put(f"{url}/endpoints/{ENDPOINT}/deployments/new-one",
                          json={"model_name": MODEL, "model_version": "1", "environment": {"1x": "y"}}, timeout=5),
             requests.get(f"{url}/endpoints/{ENDPOINT}/deployments/blue/health?since=yesterday", timeout=5),
             requests.patch(f"{url}/endpoints/{ENDPOINT}/deployments/blue", json={"model_name": "x"}, timeout=5),
             requests.post(f"{url}/endpoints/{ENDPOINT}", json={}, timeout=5),
             requests.get(f"{url}/nothing/here", timeout=5)]
    assert [r.status_code for r in cases] == [400, 400, 400, 400, 400, 400, 400, 405, 404]
    assert all(set(r.json()) == {"error"} for r in cases)


def test_a_restarted_control_plane_restores_endpoints_and_deployments(world, deployed):
    before = world.serving.set_traffic(ENDPOINT, {"blue": 80, "green": 20}, mirror={})
    announced = len(world.receiver.deployed())
    world.restart()
    after = world.serving.get_endpoint(ENDPOINT)
    assert after is not None
    assert (after.scoring_uri, after.traffic) == (before.scoring_uri, {"blue": 80, "green": 20})
    settled = world.wait_settled(["blue", "green", "faulty"])
    assert {d.state for d in settled.values()} == {"succeeded"}
    assert world.serving.get_deployment(ENDPOINT, "broken") is None  # deleted stays deleted
    assert _score_many(world, 10) == [200] * 10
    time.sleep(0.5)
    assert len(world.receiver.deployed()) == announced  # nothing announced twice


def test_sample_request_is_the_versions_sample_input_or_none(world, deployed):
    assert json.loads(world.sample())["data"]  # what ml.train stored next to the model
    assert world.serving.sample_request(MODEL, "99") is None
    assert world.serving.sample_request(MODEL, "latest") is None
    assert world.serving.sample_request("no-such-model", "1") is None


def test_an_unreachable_control_plane_is_a_connection_error_and_scoring_reports_status_0(world):
    nowhere = LocalServing(f"http://127.0.0.1:{free_port()}", world.blobs, world.prefix, timeout=2)
    with pytest.raises(ConnectionError, match=r"serving control plane .* is unreachable"):
        nowhere.get_endpoint(ENDPOINT)
    answer = nowhere.score(ENDPOINT, b"{}")
    assert answer.status == 0 and "unreachable" in answer.error
