"""The sender's verdicts over real HTTP: delivered, retry (with Retry-After), reject."""

from __future__ import annotations

from datetime import timedelta

from core.notify.backoff import Backoff
from core.notify.receivers import build
from core.notify.send import Sender, parse_retry_after
from embedded.azurite import free_port
from tests.notify.conftest import T0, note, routes_for


def send(receiver, kind="slack"):
    return Sender(timeout=5)(build(note(to=kind), routes_for(receiver.url).receivers[kind]), T0)


def test_verdicts(receiver):
    assert send(receiver).outcome == "delivered"
    receiver.fail("slack", 500, times=1)
    assert send(receiver).outcome == "retry"
    receiver.fail("slack", 429, times=1, retry_after="7")
    verdict = send(receiver)
    assert (verdict.outcome, verdict.status, verdict.retry_after) == ("retry", 429, 7.0)
    receiver.fail("slack", 404, times=1)
    assert send(receiver).outcome == "reject"


def test_connection_refused_is_retried_without_naming_the_url():
    routes = routes_for(f"http://127.0.0.1:{free_port()}")
    verdict = Sender(timeout=2)(build(note(), routes.receivers["slack"]), T0)
    assert verdict.outcome == "retry" and verdict.status == 0
    assert verdict.error == "slack (127.0.0.1): ConnectionError"


def test_retry_after_forms():
    assert parse_retry_after("30", T0) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 12:01:00 GMT", T0) == 60.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:00:00 GMT", T0) == 0.0
    assert parse_retry_after("soon", T0) is None and parse_retry_after("", T0) is None


def test_backoff_grows_caps_jitters_and_honours_retry_after():
    b = Backoff(base=10, cap=600)
    assert [b.delay(n, None, lambda: 1.0) for n in (1, 2, 3, 10)] == [10, 20, 40, 600]
    assert b.delay(1, None, lambda: 0.0) == 5
    assert b.delay(1, 120, lambda: 1.0) == 120
    assert b.delay(1, 10**9, lambda: 1.0) == 3600
    assert timedelta(seconds=b.delay(40, None, lambda: 0.5)) <= timedelta(minutes=10)
