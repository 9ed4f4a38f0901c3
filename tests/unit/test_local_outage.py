"""The local ML platform's outage switch: what the guard and the control plane answer while it is on,
and that nothing but the local wiring ever consults it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from core import wiring
from core.adapters.local_outage import Outage, OutageGuard, OutageSwitch, parse_outage
from core.adapters.local_serving import LocalServing
from core.ml_platform import BlobFolder, Job, ModelVersion, RetrainRequest
from core.settings import Settings
from embedded.local_settings import SAMPLE, read_values
from embedded.serving import ControlServer
from embedded.serving_api import ControlPlane, ModelFiles
from embedded.serving_store import ServingStore
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Platform:
    """The outside world's ML platform, recording what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def submit_retraining(self, request: RetrainRequest) -> Job:
        self.calls.append(f"submit {request.job_name}")
        return Job(request.job_name, "queued", request.model_name)

    def get_job(self, name: str) -> Job | None:
        self.calls.append(f"get {name}")
        return None

    def get_model(self, name: str, version: str) -> ModelVersion | None:
        self.calls.append(f"model {name}:{version}")
        return None

    def list_models(self, name: str) -> list[ModelVersion]:
        self.calls.append(f"list {name}")
        return []


def request(name: str = "retrain-m-1") -> RetrainRequest:
    return RetrainRequest(name, "m", BlobFolder("data", "m/"), "data", "holdout.csv", "rmse", 0.0, "data", "c", "d")


@pytest.fixture
def switch() -> tuple[OutageSwitch, Clock]:
    clock = Clock(NOW)
    return OutageSwitch(MemoryStateStore(), "t", clock=clock, cache_seconds=0), clock


def test_off_by_default_and_calls_pass_through(switch: tuple[OutageSwitch, Clock]) -> None:
    platform = Platform()
    guard = OutageGuard(platform, switch[0])
    assert switch[0].current() is None
    assert guard.submit_retraining(request()).status == "queued" and guard.get_job("j") is None
    assert platform.calls == ["submit retrain-m-1", "get j"]


def test_an_error_outage_refuses_with_a_500_and_ends_by_itself(switch: tuple[OutageSwitch, Clock]) -> None:
    outages, clock = switch
    platform = Platform()
    guard = OutageGuard(platform, outages)
    outages.start(Outage("error", NOW + timedelta(seconds=30)))
    for call in (lambda: guard.submit_retraining(request()), lambda: guard.get_job("j"),
                 lambda: guard.get_model("m", "1"), lambda: guard.list_models("m")):
        with pytest.raises(HttpResponseError) as raised:
            call()
        assert raised.value.status_code == 500 and "down" in str(raised.value)
    assert platform.calls == [], "refused before reaching the platform"
    clock.now += timedelta(seconds=30)
    assert guard.list_models("m") == [] and platform.calls == ["list m"]


def test_a_timeout_outage_carries_the_call_out_and_loses_the_answer(switch: tuple[OutageSwitch, Clock]) -> None:
    outages, _clock = switch
    platform = Platform()
    outages.start(Outage("timeout", NOW + timedelta(seconds=30), hang_seconds=0.2))
    with pytest.raises(ServiceResponseError, match=r"within 0\.1 s"):
        OutageGuard(platform, outages, timeout=0.1).submit_retraining(request())
    assert platform.calls == ["submit retrain-m-1"], "the job exists: only its answer was lost"
    assert OutageGuard(platform, outages, timeout=1).get_job("j") is None, "slow, but within the timeout"
    outages.start(None)
    assert outages.current() is None


def test_readers_see_the_row_another_process_wrote_within_their_cache() -> None:
    store, clock = MemoryStateStore(), Clock(NOW)
    writer = OutageSwitch(store, "t", clock=clock)
    reader = OutageSwitch(store, "t", clock=clock, cache_seconds=0)
    writer.start(Outage("error", NOW + timedelta(seconds=5), 1.5))
    assert reader.current() == Outage("error", NOW + timedelta(seconds=5), 1.5)
    writer.start(Outage("timeout", NOW + timedelta(seconds=9), 2.0))  # a second outage replaces the first
    assert reader.current() == Outage("timeout", NOW + timedelta(seconds=9), 2.0)


@pytest.mark.parametrize("body, problem", [
    ({"mode": "down"}, "body must be"), ({"mode": "error", "extra": 1}, "body must be"),
    ({"mode": "error", "seconds": 0}, "above 0"), ({"mode": "error", "seconds": 7200}, "seconds must be"),
    ({"mode": "timeout", "hang_seconds": "long"}, "hang_seconds must be"), ({"mode": "error", "seconds": True},
                                                                             "seconds must be")])
def test_bad_requests_say_what_is_accepted(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_outage(body, NOW)


def test_only_the_local_wiring_puts_the_guard_in_front_of_the_platform() -> None:
    local = Settings.from_env({**read_values(SAMPLE), "REACTOR_STORAGE_CONNECTION": "UseDevelopmentStorage=true"})
    platform = Platform()
    assert isinstance(wiring._outage_guard(local, MemoryStateStore(), platform), OutageGuard)
    in_azure = dataclasses.replace(local, ml_platform="azure")
    assert wiring._outage_guard(in_azure, MemoryStateStore(), platform) is platform


# -- the control plane -----------------------------------------------------------------------------
@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[str, ControlPlane]]:
    store = MemoryStateStore()
    plane = ControlPlane(ServingStore(store, "t"), ModelFiles(MemoryBlobStore(), "t-models"), lambda events: [],
                         tmp_path, outage=OutageSwitch(store, "t", cache_seconds=0))
    server = ControlServer(plane)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url, plane
    server.shutdown()
    server.server_close()
    plane.close()


def test_the_control_plane_answers_500_on_its_endpoint_routes_only(control: tuple[str, ControlPlane]) -> None:
    url, _plane = control
    serving = LocalServing(url, MemoryBlobStore(), "t", timeout=5)
    assert requests.put(f"{url}/outage", json={"mode": "error", "seconds": 60}, timeout=5).status_code == 200
    with pytest.raises(RuntimeError, match="500"):
        serving.ensure_endpoint("ep-one", {})
    with pytest.raises(RuntimeError, match="500"):
        serving.get_endpoint("ep-one")
    fault = requests.put(f"{url}/endpoints/ep-one/deployments/d-one/fault", json={"fault": ""}, timeout=5)
    assert fault.status_code == 404, "the test hook stays up"
    assert requests.get(f"{url}/", timeout=5).status_code == 200
    status = requests.get(f"{url}/outage", timeout=5).json()
    assert status["outage"]["mode"] == "error" and status["failed_requests"] == 2
    assert requests.put(f"{url}/outage", json={"mode": "later"}, timeout=5).status_code == 400
    assert requests.put(f"{url}/outage", json={"mode": ""}, timeout=5).json()["outage"] is None
    assert serving.ensure_endpoint("ep-one", {}).name == "ep-one" and serving.get_endpoint("ep-one") is not None


def test_in_a_timeout_outage_the_change_is_made_and_the_client_times_out(control: tuple[str, ControlPlane]) -> None:
    url, plane = control
    serving = LocalServing(url, MemoryBlobStore(), "t", timeout=0.5)
    body = {"mode": "timeout", "seconds": 60, "hang_seconds": 1.5}
    assert requests.put(f"{url}/outage", json=body, timeout=5).status_code == 200
    with pytest.raises(ConnectionError, match="unreachable"):
        serving.ensure_endpoint("ep-two", {})
    assert [e["name"] for e in plane.list_endpoints()] == ["ep-two"], "carried out, the answer lost"
