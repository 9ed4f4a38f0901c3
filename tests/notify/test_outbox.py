"""The outbox on real Azurite, delivering to the real local receiver; time moves by hand."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from tests.notify.conftest import T0, note

pytestmark = pytest.mark.integration


def ids(receiver, kind):
    return Counter(r.body["summary"] if kind == "webhook" else r.line for r in receiver.of(kind))


def test_enqueue_stores_before_sending_and_twice_stores_once(outbox, receiver):
    assert outbox.enqueue(note(1, to="slack")) is True
    assert outbox.enqueue(note(1, to="slack")) is False
    [row] = outbox.deliveries("alert-slack-1")
    assert row.props["status"] == "pending" and receiver.of("slack") == []
    assert outbox.drain().sent == 1
    assert outbox.drain().sent == 0 and len(receiver.of("slack")) == 1


def test_a_receiver_down_for_an_hour_gets_everything_once_after_it_recovers(outbox, receiver, clock):
    receiver.fail("slack", 500)
    for i in range(5):
        outbox.enqueue(note(i, to="slack"))
    for _ in range(12):  # an hour of drains, five minutes apart
        outbox.drain()
        clock.now += timedelta(minutes=5)
    assert receiver.of("slack") == [] and receiver.attempts["slack"] >= 5 * 5
    receiver.recover("slack")
    clock.now += timedelta(minutes=10)  # the backoff cap
    assert outbox.drain().sent == 5
    clock.now += timedelta(hours=1)
    outbox.drain()
    assert len(receiver.of("slack")) == 5 and set(ids(receiver, "slack").values()) == {1}
    assert {e.props["status"] for i in range(5) for e in outbox.deliveries(f"alert-slack-{i}")} == {"sent"}


def test_retry_after_is_honoured(outbox, receiver, clock):
    receiver.fail("pagerduty", 429, times=1, retry_after="120")
    outbox.enqueue(note(to="pagerduty"))
    assert outbox.drain().retried == 1
    clock.now = T0 + timedelta(seconds=119)
    assert outbox.drain().sent == 0 and receiver.attempts["pagerduty"] == 1  # not asked again before it
    clock.now = T0 + timedelta(seconds=121)
    assert outbox.drain().sent == 1 and len(receiver.of("pagerduty")) == 1


def test_retry_after_as_an_http_date(outbox, receiver, clock):
    receiver.fail("opsgenie", 503, times=1, retry_after="Sun, 22 Nov 2026 12:30:00 GMT")
    outbox.enqueue(note(to="opsgenie"))
    outbox.drain()
    clock.now = T0 + timedelta(minutes=29)
    assert outbox.drain().sent == 0
    clock.now = T0 + timedelta(minutes=30)
    assert outbox.drain().sent == 1


def test_a_400_is_not_retried_and_is_recorded(outbox, receiver, clock, ledger):
    receiver.fail("teams", 400)
    outbox.enqueue(note(to="teams"))
    assert outbox.drain().rejected == 1
    clock.now += timedelta(days=1)
    assert outbox.drain().rejected == 0 and receiver.attempts["teams"] == 1
    [record] = ledger.audit_records({"action": "notification_rejected"})
    assert record["detail"]["receiver"] == "teams" and record["detail"]["status"] == 400
    assert record["correlation_id"] == "alert-teams-1"


def test_routes_fan_out_and_default(outbox, receiver):
    outbox.enqueue(note(to="nobody"))  # no route matches: the default receiver
    outbox.drain()
    assert len(receiver.of("webhook")) == 1 and receiver.of("slack") == []


def test_two_drains_at_once_send_each_delivery_once(outbox, receiver):
    for i in range(15):
        outbox.enqueue(note(i, to="slack"))
        outbox.enqueue(note(i, to="webhook"))
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(outbox.drain())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in reports) == 30
    assert len(receiver.of("slack")) == 15 and set(ids(receiver, "slack").values()) == {1}
    assert len(receiver.of("webhook")) == 15 and set(ids(receiver, "webhook").values()) == {1}
