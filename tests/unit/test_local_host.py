"""The local host's own machinery, on a small app of the test's: routes, keys, timers."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import azure.functions as func
import pytest
import requests

from embedded.host import HostServer, LocalHost
from embedded.keys import HostKeys
from embedded.timers import TimerScheduler, next_fire

KEYS = HostKeys("master-k", {"default": "fn-k", "ops": "ops-k"})


def build_app(ticks: list[str]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.function_name("item")
    @app.route(route="items/{id}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["id"], status_code=200)

    @app.function_name("tick")
    @app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        ticks.append("tick")

    return app


@pytest.fixture
def served():
    ticks: list[str] = []
    host = LocalHost(build_app(ticks), KEYS)
    server = HostServer(host, port=0).start()
    yield server, host, ticks
    server.stop()


def test_function_auth_level_needs_a_key(served) -> None:
    server, _, _ = served
    assert requests.get(f"{server.url}/api/items/7", timeout=5).status_code == 401
    assert requests.get(f"{server.url}/api/items/7", params={"code": "wrong"}, timeout=5).status_code == 401
    ok = requests.get(f"{server.url}/api/items/7", headers={"x-functions-key": "ops-k"}, timeout=5)
    assert (ok.status_code, ok.text) == (200, "7")


def test_timer_runs_on_schedule_and_by_hand(served) -> None:
    server, host, _ = served
    scheduler = TimerScheduler(host.timers()).start()
    try:
        time.sleep(2.5)
        assert scheduler.runs["tick"] >= 1
    finally:
        scheduler.stop()
    before = len(served[2])
    resp = requests.post(f"{server.url}/admin/functions/tick", headers={"x-functions-key": "master-k"}, timeout=5)
    assert resp.status_code == 202 and len(served[2]) == before + 1


def test_a_timer_stuck_on_a_platform_that_does_not_answer_delays_no_other() -> None:
    """As in the Functions host, each timer runs on its own; a stuck one is skipped, not stacked."""
    runs: list[str] = []
    unstuck = threading.Event()
    app = func.FunctionApp()

    @app.function_name("stuck")
    @app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=False)
    def stuck(timer: func.TimerRequest) -> None:
        runs.append("stuck")
        unstuck.wait(10)

    @app.function_name("tick")
    @app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        runs.append("tick")

    scheduler = TimerScheduler(LocalHost(app, KEYS).timers()).start()
    try:
        deadline = time.monotonic() + 8
        while runs.count("tick") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runs.count("tick") >= 3 and runs.count("stuck") == 1, runs
    finally:
        unstuck.set()
        scheduler.stop()


def test_ncrontab_has_seconds_first() -> None:
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
    assert next_fire("30 */5 * * * *", start) == datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="6 fields"):
        next_fire("*/5 * * * *", start)


def test_function_keys_parse_and_identify() -> None:
    keys = HostKeys.from_env({"LOCAL_MASTER_KEY": "m", "LOCAL_FUNCTION_KEYS": "a:1, b:2"})
    assert (keys.identify("m"), keys.identify("2"), keys.identify("3")) == ("master", "b", None)
    assert keys.allows("function", "1") and not keys.allows("admin", "1")
    with pytest.raises(ValueError):
        HostKeys.from_env({"LOCAL_MASTER_KEY": "m", "LOCAL_FUNCTION_KEYS": "broken"})


def _echo_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("one")
    @app.route(route="one/{id}", methods=["GET"])
    def one(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["id"], status_code=200)

    @app.function_name("one_action")
    @app.route(route="one/{id}/{action}", methods=["GET"])
    def one_action(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"{req.route_params['id']}|{req.route_params['action']}", status_code=200)

    @app.function_name("rest")
    @app.route(route="files/{*rest}", methods=["GET"])
    def rest(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["rest"], status_code=200)

    return app


@pytest.mark.parametrize(("path", "status", "text"), [
    ("one/diabetes%3A1", 200, "diabetes:1"),
    ("one/diabetes:1", 200, "diabetes:1"),
    ("one/caf%C3%A9%20latte", 200, "caf\u00e9 latte"),
    ("one/a+b", 200, "a+b"),  # in a path `+` is a plus, not a space
    ("one/100%25", 200, "100%"),
    # Azure decodes %2F before matching: it separates segments, as a literal slash would
    # (azure-functions-host#5619, #9290), so a one-segment parameter never holds a slash.
    ("one/a%2Fb", 200, "a|b"),
    ("one/a%2Fb%2Fc", 404, ""),
    ("files/a%2Fb/c%3Ad", 200, "a/b/c:d"),
])
def test_route_parameters_are_percent_decoded_as_in_azure(path: str, status: int, text: str) -> None:
    server = HostServer(LocalHost(_echo_app(), KEYS), port=0).start()
    try:
        resp = requests.get(f"{server.url}/api/{path}", timeout=5)
    finally:
        server.stop()
    assert resp.status_code == status, resp.text
    if status == 200:
        assert resp.content.decode("utf-8") == text
    else:
        assert resp.headers["Content-Type"].startswith("application/problem+json")
