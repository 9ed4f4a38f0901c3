"""``make demo``, our own events: the app publishes its decisions as CloudEvents 1.0 to the local
custom topic (on the local host, through the real EventGridPublisherClient), which delivers them
to a subscriber of its own (a local receiver at /cloudevents/...); the demo shows the
ReleasePromoted event arriving there."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from embedded.receiver import LocalReceiver

TOPIC_KEY = "demo-topic-key"  # the local topic's key; a secret: never printed


class Subscriber:
    """A subscriber of the local topic, apart from the notification receivers."""

    def __init__(self) -> None:
        self.receiver = LocalReceiver(echo=lambda line: None)

    def start(self) -> Subscriber:
        self.receiver.start()
        return self

    def stop(self) -> None:
        self.receiver.stop()

    def settings(self) -> dict[str, str]:
        """Publishing on, to the local host's topic (the stack moves the port to its own), delivered here."""
        return {"REACTOR_EVENTS_TOPIC_ENDPOINT": "http://127.0.0.1:7071/eventgrid/api/events",
                "REACTOR_LOCAL_EVENTS_TOPIC_KEY": TOPIC_KEY, "LOCAL_TOPIC_KEY": TOPIC_KEY,
                "REACTOR_EVENTS_SOURCE": "urn:mlops-reactor:demo",
                "LOCAL_TOPIC_SUBSCRIBERS": f"{self.receiver.url}/cloudevents/demo-subscriber"}

    def show_promoted(self, say: Callable[[str, str], None], subject: str = "models/diabetes:1",
                      timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the ReleasePromoted CloudEvent and say what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r.body for r in self.receiver.of("cloudevents")
                     if r.body.get("type") == "mlops.reactor.ReleasePromoted" and r.body.get("subject") == subject]
            if found:
                event = dict(found[0])
                say("our own event at a subscriber (CloudEvents 1.0 via the local Event Grid topic)",
                    f"{event['type']} {event['subject']} id {event['id']}")
                return event
            time.sleep(0.2)
        raise TimeoutError(f"demo: gave up waiting for the ReleasePromoted CloudEvent of {subject}")
