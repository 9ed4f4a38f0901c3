"""Our own events end to end: a decision -> its audit record -> the outbox -> the real
EventGridPublisherClient -> the local topic -> a subscriber. On Azurite; time moves by hand."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import pytest

from core.ledger import AuditRecord
from core.publish.catalogue import PREFIX
from core.publish.cloudevent import problems
from tests.publish.conftest import SOURCE, TOPIC_KEY
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"
LABELS = {"model": "diabetes", "endpoint": "diabetes-prod", "severity": "error"}


def received(receiver) -> list[dict]:
    return [dict(r.body) for r in receiver.of("cloudevents")]


def fire_and_resolve(services) -> None:
    """Two real decisions of the alerting service: an incident fires, then resolves."""
    assert services.alerting.incident("ReleaseRolledBack", LABELS, True, "diabetes:3 rolled back") is True
    assert services.alerting.incident("ReleaseRolledBack", LABELS, False, "diabetes:4 promoted") is True


def test_a_subscriber_receives_our_events_through_the_real_sdk(publishing, receiver, topic):
    services = publishing()
    fire_and_resolve(services)
    assert receiver.of("cloudevents") == [], "stored first; nothing is sent by the decision itself"
    assert services.publisher.drain().sent == 2
    events = wait_for("both events at the subscriber", lambda: received(receiver) if len(received(receiver)) == 2
                      else None, timeout=20)
    assert sorted(e["type"] for e in events) == [PREFIX + "AlertFired", PREFIX + "AlertResolved"]  # unordered
    for event in events:
        assert problems(event) == [] and event["source"] == SOURCE and event["specversion"] == "1.0"
        assert event["subject"].startswith("alerts/ReleaseRolledBack/")
        assert event["data"]["labels"]["model"] == "diabetes"
    [first] = [r for r in receiver.of("cloudevents")][:1]
    assert first.headers["content-type"].startswith("application/cloudevents+json")
    assert sorted(e["id"] for e in topic.accepted) == sorted(e["id"] for e in events)


def test_a_topic_down_for_a_while_gets_every_event_exactly_once(publishing, receiver, topic, clock):
    services = publishing()
    topic.fail(500)
    fire_and_resolve(services)
    record = AuditRecord("release.promoted", "c1", function="releases", model="diabetes", version="4",
                         detail={"release": "diabetes:4", "note": "diabetes-v4 serves 100%"})
    services.ledger.audit(record)
    services.ledger.audit(record)  # the same decision recorded again (a retried step): one event
    for _ in range(6):  # half an hour of drains, five minutes apart, all answered 500
        report = services.publisher.drain(clock.now)
        assert report.sent == 0
        clock.now += timedelta(minutes=5)
    assert topic.accepted == [] and receiver.of("cloudevents") == []
    topic.recover()
    clock.now += timedelta(minutes=10)  # the backoff cap
    assert services.publisher.drain(clock.now).sent == 3
    clock.now += timedelta(hours=1)
    assert services.publisher.drain(clock.now).sent == 0
    wait_for("three events at the subscriber", lambda: len(received(receiver)) >= 3, timeout=20)
    ids = Counter(e["id"] for e in received(receiver))
    assert len(ids) == 3 and set(ids.values()) == {1}, ids
    assert Counter(e["id"] for e in topic.accepted) == ids
    assert {e["type"] for e in received(receiver)} == {PREFIX + t for t in ("AlertFired", "AlertResolved",
                                                                            "ReleasePromoted")}


def test_a_wrong_key_is_a_configuration_error_and_the_decision_stands(publishing, receiver, topic, caplog):
    services = publishing(key="SECRET-wrong-key-0b0b")
    _everything_logged(caplog)
    assert services.alerting.incident("ReleaseRolledBack", LABELS, True, "diabetes:3 rolled back") is True
    [alert] = [a.value for a in services.alerting.alerts.alerts().values()]
    assert alert.state == "firing", "the decision does not depend on its event"
    report = services.publisher.drain()
    assert (report.sent, report.rejected, report.retried) == (0, 1, 0)
    [rejected] = services.ledger.audit_records({"action": "notification_rejected"})
    assert rejected["detail"]["status"] == 401 and rejected["detail"]["receiver"] == "eventgrid"
    assert services.publisher.drain().rejected == 0, "a configuration error is not retried"
    assert topic.accepted == [] and receiver.of("cloudevents") == []
    assert "SECRET-wrong-key" not in caplog.text and TOPIC_KEY not in caplog.text
    assert "SECRET-wrong-key" not in str(rejected)


def _everything_logged(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("azure", HTTP_LOG, "urllib3"):  # the app turns the SDK's HTTP log down; turn it all up
        caplog.set_level(logging.DEBUG, logger=name)


def test_no_key_in_logs_when_publishing_succeeds(publishing, receiver, caplog):
    services = publishing()
    _everything_logged(caplog)
    fire_and_resolve(services)
    assert services.publisher.drain().sent == 2
    sdk = [r.getMessage() for r in caplog.records if r.name == HTTP_LOG]
    assert any("aeg-sas-key" in m for m in sdk), "the SDK logged the request headers (this test can see a leak)"
    assert TOPIC_KEY not in caplog.text and "SECRET-sub-path" not in caplog.text
    assert TOPIC_KEY not in repr(services.settings) and TOPIC_KEY not in repr(services.publisher.outbox._send)


def test_an_unreachable_topic_never_blocks_the_decision(publishing, clock):
    from embedded.azurite import free_port

    services = publishing(endpoint=f"http://127.0.0.1:{free_port()}/eventgrid/api/events")
    fire_and_resolve(services)
    report = services.publisher.drain()
    assert (report.sent, report.retried) == (0, 2)
    [row] = services.publisher.outbox.deliveries(_first_id(services))
    assert row.props["status"] == "pending" and "ServiceRequestError" in row.props["last_error"]


class BusyTables:
    """Table Storage (Azurite) refusing the next insert into one table as a busy account does: the
    service answers 503 ServerBusy and the SDK raises HttpResponseError."""

    def __init__(self, inner, table: str) -> None:
        self.inner, self.table, self.refused = inner, table, 0

    def insert(self, table, partition, row, props):
        if table == self.table and not self.refused:
            from azure.core.exceptions import HttpResponseError

            self.refused += 1
            raise HttpResponseError(message="The server is busy. ErrorCode:ServerBusy")
        return self.inner.insert(table, partition, row, props)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_an_event_refused_by_busy_storage_reaches_the_subscriber_once(publishing, receiver, topic, clock, env):
    from core.adapters.table_store import TableStateStore

    prefix = env["REACTOR_TABLE_PREFIX"]
    busy = BusyTables(TableStateStore.from_connection(env["REACTOR_STORAGE_CONNECTION"]), f"{prefix}pubnotifications")
    services = publishing(store=busy)
    fire_and_resolve(services)  # the firing's event is refused with its decision, the resolution's stored
    assert busy.refused == 1
    assert services.publisher.drain(clock.now).sent == 1
    clock.now += timedelta(minutes=3)  # past the sweep's margin
    report = services.publisher.drain(clock.now)
    assert (report.sweep.recovered, report.sent) == (1, 1)
    restarted = publishing()  # another instance, later: the watermark is in storage
    clock.now += timedelta(minutes=3)
    again = restarted.publisher.drain(clock.now)
    assert (again.sweep.read, again.sweep.recovered, again.sent) == (0, 0, 0)
    events = wait_for("both events at the subscriber", lambda: received(receiver) if len(received(receiver)) >= 2
                      else None, timeout=20)
    assert sorted(e["type"] for e in events) == [PREFIX + "AlertFired", PREFIX + "AlertResolved"]
    assert len({e["id"] for e in events}) == 2 and Counter(e["id"] for e in topic.accepted) == Counter(
        e["id"] for e in events)
    assert _first_id(services) in {e["id"] for e in events}


def _first_id(services) -> str:
    [fired] = services.ledger.audit_records({"action": "alert.firing"})
    return f"alert/{fired['correlation_id']}/{fired['detail']['changed_at']}/AlertFired"


def test_no_events_are_stored_when_publishing_is_off(env):
    from core import bootstrap
    from core.settings import Settings
    from tests.fakes import FakeServing

    services = bootstrap.build(Settings.from_env(env), serving=FakeServing())
    assert services.publisher is None and services.ledger.on_audit is None
    fire_and_resolve(services)
