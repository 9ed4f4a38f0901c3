"""Publishing fixtures: the local topic on a local host of its own (loopback, free port), the local
receiver as its subscriber, and the app's services on the session's Azurite publishing to it through
the real EventGridPublisherClient, with a hand-moved clock (and a store of the test's, if it brings one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import azure.functions as func
import pytest

from core import bootstrap
from core.ports import StateStore
from core.settings import Settings
from embedded.host import HostServer, LocalHost
from embedded.keys import HostKeys
from embedded.receiver import LocalReceiver
from embedded.topic import TOPIC_PATH, LocalTopic
from tests.fakes import Clock, FakeServing

T0 = datetime(2026, 12, 1, 21, 0, tzinfo=timezone.utc)
TOPIC_KEY = "SECRET-topic-key-5e5e7a"
SOURCE = "urn:mlops-reactor:test"
Build = Callable[..., bootstrap.Services]


@pytest.fixture
def receiver() -> Iterator[LocalReceiver]:
    with LocalReceiver(echo=lambda line: None) as r:
        yield r


@pytest.fixture
def topic(receiver: LocalReceiver) -> Iterator[LocalTopic]:
    t = LocalTopic(TOPIC_KEY, [f"{receiver.url}/cloudevents/SECRET-sub-path"], retry_delays=(0.2, 0.5, 1.0)).start()
    yield t
    t.stop()


@pytest.fixture
def topic_url(topic: LocalTopic) -> Iterator[str]:
    server = HostServer(LocalHost(func.FunctionApp(), HostKeys("SECRET-master", {}), topic=topic), port=0).start()
    yield server.url + TOPIC_PATH
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def publishing(env: dict[str, str], topic_url: str, clock: Clock) -> Build:
    """Services that publish to the local topic, with the key given (the topic's by default)."""
    def build(key: str = TOPIC_KEY, endpoint: str = topic_url, store: StateStore | None = None) -> bootstrap.Services:
        settings = Settings.from_env({**env, "REACTOR_EVENTS_TOPIC_ENDPOINT": endpoint,
                                      "REACTOR_LOCAL_EVENTS_TOPIC_KEY": key, "REACTOR_EVENTS_SOURCE": SOURCE})
        return bootstrap.build(settings, clock=clock, serving=FakeServing(), store=store)
    return build
