"""The local custom topic: Event Grid's publish API for CloudEvents, served by the local host.

    POST /eventgrid/api/events?api-version=2018-01-01     what EventGridPublisherClient posts to

It takes what a custom topic with the CloudEvents 1.0 input schema takes: the key in
``aeg-sas-key`` (401 otherwise), ``application/cloudevents-batch+json`` (or one
``application/cloudevents+json`` event), at most 1 MB, and each event a valid CloudEvent (400
naming the event and the attribute otherwise); it answers 200, as Event Grid does. Accepted
events are delivered to the subscribers, webhook URLs from ``LOCAL_TOPIC_SUBSCRIBERS`` only
(comma-separated), as Event Grid delivers CloudEvents: the abuse-protection handshake first
(``OPTIONS`` with ``WebHook-Request-Origin``; the answer must allow that origin), then one
``application/cloudevents+json`` POST per event; 200-204 is delivered, 400 and 413 are not
retried, anything else is retried on a shortened Event Grid schedule and then dropped (a topic
without dead-lettering drops too). ``LOCAL_TOPIC_KEY`` is the key; without it there is no topic.
``fail`` makes it answer an error for a while, so tests can watch the publisher retry.
"""

from __future__ import annotations

import heapq
import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from core.publish.cloudevent import problems
from embedded.host import Problem

TOPIC_PATH = "/eventgrid/api/events"
MAX_BYTES = 1024 * 1024  # Event Grid: 1 MB per publish request
CONTENT_TYPES = ("application/cloudevents-batch+json", "application/cloudevents+json")
ORIGIN = "eventgrid.azure.net"
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # seconds; Event Grid's 10 s, 30 s, 1 min... shortened
_log = logging.getLogger("reactor.topic")


@dataclass(order=True)
class _Delivery:
    due: float
    attempt: int
    subscriber: str = field(compare=False)
    event: Mapping[str, Any] = field(compare=False)


@dataclass
class _Failure:
    status: int
    remaining: int | None
    until: float


class LocalTopic:
    path = TOPIC_PATH

    def __init__(self, key: str, subscribers: Sequence[str] = (), *,
                 retry_delays: Sequence[float] = RETRY_DELAYS, timeout: float = 10.0) -> None:
        if not key:
            raise ValueError("the local topic needs a key (LOCAL_TOPIC_KEY)")
        self._key = key
        self.subscribers = tuple(subscribers)
        self._delays = tuple(retry_delays)
        self._timeout = timeout
        self.accepted: list[Mapping[str, Any]] = []  # every event taken, in order
        self.delivered: list[tuple[str, str]] = []  # (subscriber, event id)
        self._validated: set[str] = set()
        self._failure: _Failure | None = None
        self._queue: list[_Delivery] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._deliver_forever, name="local-topic", daemon=True)

    def __repr__(self) -> str:  # never the key
        return f"LocalTopic({len(self.subscribers)} subscribers)"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LocalTopic | None:
        key = env.get("LOCAL_TOPIC_KEY", "").strip()
        subscribers = [u.strip() for u in env.get("LOCAL_TOPIC_SUBSCRIBERS", "").split(",") if u.strip()]
        for url in subscribers:
            if not url.startswith(("http://", "https://")):
                raise ValueError("LOCAL_TOPIC_SUBSCRIBERS must be comma-separated http(s) webhook URLs")
        return cls(key, subscribers) if key else None

    # -- the publish API ----------------------------------------------------------------------
    def publish(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> None:
        """Take a publish request (headers lower-cased) or raise the Problem Event Grid would answer."""
        self._authenticate(headers)
        self._maybe_fail()
        if not query.get("api-version"):
            raise Problem(400, "api-version is required", "e.g. ?api-version=2018-01-01", "api-version")
        if len(body) > MAX_BYTES:
            raise Problem(413, "Request too large", f"{len(body)} bytes; at most {MAX_BYTES}")
        events = _events(headers.get("content-type", ""), body)
        found = [p for i, e in enumerate(events) for p in problems(e, f"[{i}]")]
        if found:
            raise Problem(400, "Not a CloudEvents 1.0 event", "; ".join(found[:10]), found[0].split(" ")[0])
        with self._cv:
            self.accepted.extend(events)
            now = time.monotonic()
            for event in events:
                for url in self.subscribers:
                    heapq.heappush(self._queue, _Delivery(now, 0, url, event))
            self._cv.notify()

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        presented = headers.get("aeg-sas-key", "")
        if not presented and (headers.get("aeg-sas-token") or headers.get("authorization")):
            raise Problem(401, "Unauthorized", "the local topic takes its key in aeg-sas-key only", "aeg-sas-key")
        if not presented or not hmac.compare_digest(presented.encode(), self._key.encode()):
            raise Problem(401, "Unauthorized", "aeg-sas-key is missing or not the topic's key", "aeg-sas-key")

    def fail(self, status: int = 500, *, times: int | None = None, seconds: float | None = None) -> None:
        """Answer ``status`` to the next ``times`` publish requests, or for ``seconds``."""
        until = time.monotonic() + seconds if seconds is not None else float("inf")
        with self._cv:
            self._failure = _Failure(status, times, until)

    def recover(self) -> None:
        with self._cv:
            self._failure = None

    def _maybe_fail(self) -> None:
        with self._cv:
            f = self._failure
            if f is None or time.monotonic() >= f.until or f.remaining == 0:
                self._failure = None
                return
            if f.remaining is not None:
                f.remaining -= 1
        raise Problem(f.status, "Topic unavailable", "told to fail")

    # -- delivery -----------------------------------------------------------------------------
    def pending(self) -> int:
        """Deliveries waiting for their (next) attempt."""
        with self._cv:
            return len(self._queue)

    def start(self) -> LocalTopic:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _deliver_forever(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._queue or self._queue[0].due > time.monotonic()):
                    self._cv.wait(timeout=(self._queue[0].due - time.monotonic()) if self._queue else None)
                if self._stopped:
                    return
                item = heapq.heappop(self._queue)
            self._deliver(item)

    def _deliver(self, item: _Delivery) -> None:
        outcome = self._attempt(item)
        event_id = str(item.event.get("id", ""))
        if outcome == "delivered":
            with self._cv:
                self.delivered.append((item.subscriber, event_id))
            return
        if outcome == "drop" or item.attempt >= len(self._delays):
            _log.error("event %s not delivered to a subscriber (%s); dropped", event_id, outcome)
            return
        with self._cv:
            heapq.heappush(self._queue, _Delivery(time.monotonic() + self._delays[item.attempt], item.attempt + 1,
                                                  item.subscriber, item.event))
            self._cv.notify()

    def _attempt(self, item: _Delivery) -> str:
        try:
            if item.subscriber not in self._validated and not self._handshake(item.subscriber):
                return "retry: the subscriber did not allow the origin"
            response = requests.post(item.subscriber, data=json.dumps(item.event).encode(), timeout=self._timeout,
                                     headers={"Content-Type": "application/cloudevents+json; charset=utf-8"})
        except requests.RequestException as exc:
            return f"retry: {type(exc).__name__}"
        if 200 <= response.status_code <= 204:
            return "delivered"
        return "drop" if response.status_code in (400, 413) else f"retry: HTTP {response.status_code}"

    def _handshake(self, url: str) -> bool:
        """CloudEvents webhook abuse protection: may we send to this URL?"""
        response = requests.options(url, timeout=self._timeout,
                                    headers={"WebHook-Request-Origin": ORIGIN, "WebHook-Request-Rate": "120"})
        allowed = response.headers.get("WebHook-Allowed-Origin", "")
        if response.status_code == 200 and allowed in (ORIGIN, "*"):
            self._validated.add(url)
            return True
        return False


def point_at(endpoint: str, port: int) -> str:
    """A loopback topic endpoint moved to the port the local host really listens on (else unchanged)."""
    url = urlsplit(endpoint)
    if url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost") and url.path.rstrip("/") == TOPIC_PATH:
        return f"http://127.0.0.1:{port}{TOPIC_PATH}"
    return endpoint


def _events(content_type: str, body: bytes) -> list[Any]:
    media = content_type.split(";")[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise Problem(400, "Unsupported Content-Type", f"got {media or 'none'!r}; a CloudEvents topic takes "
                      f"{' or '.join(CONTENT_TYPES)}", "Content-Type")
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem(400, "Malformed JSON", str(exc)[:200], "body") from None
    events = parsed if media == CONTENT_TYPES[0] else [parsed]
    if not isinstance(events, list) or not events:
        raise Problem(400, "A batch is a non-empty JSON array of events", field="body")
    return events
