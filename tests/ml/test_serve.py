"""The inference server's HTTP contract (Azure ML's): liveness, scoring statuses, injected faults.

Each server is a real ``python -m ml.serve`` process on loopback; the fault setting is read from the
process environment, so each fault gets a process of its own (started together, to save time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from embedded.serving_replica import tail, terminate, wait_for_line
from ml import score

ROOT = Path(__file__).resolve().parents[2]
ROW = [0.01] * 10


class Server:
    def __init__(self, model_dir: Path, logs: Path, fault: str = "") -> None:
        self.out, self.err = logs / "serve.out", logs / "serve.err"
        logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != score.FAULT_ENV}
        if fault:
            env[score.FAULT_ENV] = fault
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "ml.serve", "--model-dir", str(model_dir),
                                             "--host", "127.0.0.1", "--port", "0"], cwd=ROOT, env=env,
                                            stdout=out, stderr=err)
        self.url = ""

    def ready(self, timeout: float = 60) -> Server:
        port = wait_for_line(self.out, "port", self.process, time.monotonic() + timeout, self.err)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def score(self, body: str | bytes) -> requests.Response:
        return requests.post(f"{self.url}/score", data=body, headers={"Content-Type": "application/json"}, timeout=10)

    def stop(self) -> None:
        terminate(self.process, 10)


@pytest.fixture(scope="module")
def servers(good_model, tmp_path_factory):
    """One healthy server and one per fault, started at once."""
    logs = tmp_path_factory.mktemp("serve")
    started = {name: Server(good_model, logs / name, fault) for name, fault in
               [("ok", ""), ("error", "error"), ("error_after", "error-after:2"), ("slow", "slow:150")]}
    try:
        yield {name: server.ready() for name, server in started.items()}
    finally:
        for server in started.values():
            server.process.terminate()  # all at once: each takes a moment to stop
        for server in started.values():
            server.stop()


def _sample(good_model) -> bytes:
    return (good_model / "sample_input.json").read_bytes()


def test_prints_its_port_as_one_json_line_and_answers_liveness(servers):
    ok = servers["ok"]
    assert json.loads(ok.out.read_text().splitlines()[0]) == {"port": int(ok.url.rsplit(":", 1)[1])}
    live = requests.get(f"{ok.url}/", timeout=5)
    assert (live.status_code, live.text) == (200, "Healthy")


def test_score_answers_200_with_the_predictions_of_the_model(servers, good_model):
    answer = servers["ok"].score(_sample(good_model))
    expected = json.loads((good_model / "model.json").read_text())["sample_predictions"]
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["predictions"] == pytest.approx(expected)


@pytest.mark.parametrize("body", ["{data: nope", json.dumps({"data": []}), json.dumps({"data": [ROW[:9]]}), ""])
def test_a_request_the_model_cannot_score_is_400_with_the_reason(servers, body):
    answer = servers["ok"].score(body)
    assert answer.status_code == 400
    assert list(answer.json()) == ["error"]


def test_unknown_routes_are_404_and_keep_the_connection_usable(servers, good_model):
    with requests.Session() as session:
        assert session.post(f"{servers['ok'].url}/predict", data=b"{}", timeout=5).status_code == 404
        assert session.get(f"{servers['ok'].url}/nothing", timeout=5).status_code == 404
        assert session.post(f"{servers['ok'].url}/score", data=_sample(good_model), timeout=5).status_code == 200


def test_injected_error_is_500(servers, good_model):
    answer = servers["error"].score(_sample(good_model))
    assert (answer.status_code, answer.json()) == (500, {"error": "injected fault: REACTOR_SCORE_FAULT=error"})
    assert requests.get(f"{servers['error'].url}/", timeout=5).status_code == 200  # alive, just failing


def test_error_after_passes_a_smoke_test_then_fails_under_load(servers, good_model):
    statuses = [servers["error_after"].score(_sample(good_model)).status_code for _ in range(5)]
    assert statuses == [200, 200, 500, 500, 500]


def test_slow_adds_latency(servers, good_model):
    started = time.perf_counter()
    answer = servers["slow"].score(_sample(good_model))
    assert answer.status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_requests_are_served_concurrently(servers, good_model):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        started = time.perf_counter()
        statuses = list(pool.map(lambda _: servers["slow"].score(_sample(good_model)).status_code, range(8)))
    assert statuses == [200] * 8
    assert time.perf_counter() - started < 8 * 0.15  # not one after the other


def test_a_model_that_cannot_load_ends_the_process_with_the_reason(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pkl").write_bytes(b"not a pickle")
    server = Server(tmp_path / "model", tmp_path / "logs")
    try:
        assert server.process.wait(timeout=60) == 1
    finally:
        server.stop()
    assert server.out.read_text() == ""  # never announced a port
    assert "cannot start the scoring server" in tail(server.err)
