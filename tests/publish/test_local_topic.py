"""The local topic over HTTP: what a custom Event Grid topic (CloudEvents 1.0 input) answers, and
how it delivers to its subscribers (handshake first, retries, no retry on 400)."""

from __future__ import annotations

import json

import pytest
import requests

from embedded.topic import LocalTopic, point_at
from tests.publish.conftest import TOPIC_KEY
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json; charset=utf-8"


def event(i: int = 1, **change) -> dict:
    return {"specversion": "1.0", "id": f"e{i}", "source": "urn:test", "type": "mlops.reactor.ReleasePromoted",
            "subject": f"models/diabetes:{i}", "time": "2026-12-01T21:00:05.123Z",
            "datacontenttype": "application/json", "data": {"model": "diabetes"}, **change}


def post(url: str, body: object, *, key: str | None = TOPIC_KEY, ctype: str = BATCH, query: str = "2018-01-01",
         headers: dict | None = None) -> requests.Response:
    sent = {"Content-Type": ctype, **({"aeg-sas-key": key} if key is not None else {}), **(headers or {})}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url, params={"api-version": query} if query else {}, data=data, headers=sent, timeout=10)


@pytest.mark.parametrize(("key", "headers"), [(None, {}), ("wrong", {}), (None, {"Authorization": "Bearer x"})])
def test_the_key_is_required(topic_url, topic, key, headers):
    answer = post(topic_url, [event()], key=key, headers=headers)
    assert answer.status_code == 401 and answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["field"] == "aeg-sas-key" and topic.accepted == []
    assert TOPIC_KEY not in answer.text


@pytest.mark.parametrize(("kwargs", "field", "text"), [
    ({"query": ""}, "api-version", "api-version is required"),
    ({"ctype": "application/json"}, "Content-Type", "Unsupported Content-Type"),
])
def test_the_request_shape_is_checked(topic_url, topic, kwargs, field, text):
    answer = post(topic_url, [event()], **kwargs)
    assert answer.status_code == 400 and answer.json()["field"] == field and text in answer.json()["title"]


def test_an_invalid_event_is_400_naming_the_event_and_the_attribute(topic_url, topic):
    answer = post(topic_url, [event(1), event(2, time="yesterday"), event(3, specversion="0.3")])
    problem = answer.json()
    assert answer.status_code == 400 and problem["field"] == "[1].time"
    assert "[1].time must be an RFC 3339 timestamp" in problem["detail"]
    assert "[2].specversion must be '1.0'" in problem["detail"]
    assert topic.accepted == [], "a batch is taken whole or not at all"
    assert post(topic_url, b"{not json").status_code == 400 and post(topic_url, []).status_code == 400


def test_more_than_a_megabyte_is_413(topic_url):
    assert post(topic_url, [event(data={"x": "y" * (1024 * 1024)})]).status_code == 413


def test_accepted_events_reach_the_subscriber_after_the_handshake(topic_url, topic, receiver):
    assert post(topic_url, [event(1), event(2)]).status_code == 200
    assert post(topic_url, event(3), ctype="application/cloudevents+json").status_code == 200
    wait_for("three deliveries", lambda: len(receiver.of("cloudevents")) == 3, timeout=20)
    assert sorted(r.body["id"] for r in receiver.of("cloudevents")) == ["e1", "e2", "e3"]
    assert all(r.headers["content-type"].startswith("application/cloudevents+json")
               for r in receiver.of("cloudevents"))


def test_a_failing_subscriber_gets_the_event_once_it_answers(topic_url, topic, receiver):
    receiver.fail("cloudevents", 503, times=2)
    assert post(topic_url, [event(7)]).status_code == 200
    wait_for("the delivery after two failures", lambda: receiver.of("cloudevents"), timeout=20)
    assert [r.body["id"] for r in receiver.of("cloudevents")] == ["e7"] and receiver.attempts["cloudevents"] == 3


def test_a_subscriber_that_refuses_the_handshake_gets_nothing(receiver):
    refusing = LocalTopic("k", [f"{receiver.url}/slack/not-a-subscriber"], retry_delays=(0.1, 0.1)).start()
    try:
        refusing.publish({"aeg-sas-key": "k", "content-type": BATCH}, {"api-version": "1"},
                         json.dumps([event()]).encode())
        wait_for("the retries to run out", lambda: refusing.pending() == 0 and refusing.accepted, timeout=10)
    finally:
        refusing.stop()
    assert refusing.delivered == [] and receiver.of("slack") == [], "nothing POSTed without the handshake"


def test_a_loopback_endpoint_follows_the_host_port():
    assert point_at("http://127.0.0.1:7071/eventgrid/api/events", 9123) == "http://127.0.0.1:9123/eventgrid/api/events"
    assert point_at("http://localhost:7071/eventgrid/api/events/", 9123) == "http://127.0.0.1:9123/eventgrid/api/events"
    azure = "https://reactor-events.westeurope-1.eventgrid.azure.net/api/events"
    assert point_at(azure, 9123) == azure


def test_the_topic_configuration_comes_from_settings_only(receiver):
    assert LocalTopic.from_env({}) is None
    topic = LocalTopic.from_env({"LOCAL_TOPIC_KEY": "k", "LOCAL_TOPIC_SUBSCRIBERS": f" {receiver.url}/cloudevents/a, "})
    assert topic is not None and topic.subscribers == (f"{receiver.url}/cloudevents/a",) and "k" not in repr(topic)
    with pytest.raises(ValueError, match="webhook URLs"):
        LocalTopic.from_env({"LOCAL_TOPIC_KEY": "k", "LOCAL_TOPIC_SUBSCRIBERS": "ftp://x"})
