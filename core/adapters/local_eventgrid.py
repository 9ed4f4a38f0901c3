"""Deliver events to the local host through the subscriptions, as Event Grid would:
routed by filter, posted in batches to the Functions Event Grid endpoint, retried on
failure (with a shorter schedule than Event Grid's, this being one machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from core.adapters.eventgrid_subscriptions import Subscription, load, route

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Delivery:
    function: str
    events: int
    status: int  # HTTP status of the last attempt, 0 when the host was unreachable
    attempts: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 204


class EventGridEmulator:
    def __init__(self, host_url: str, subscriptions: Sequence[Subscription] | None = None, *,
                 retries: int = 5, backoff: float = 0.2, batch_size: int = 1000) -> None:
        self.host_url = host_url.rstrip("/")
        self.subscriptions = list(subscriptions) if subscriptions is not None else load()
        self.retries, self.backoff, self.batch_size = retries, backoff, batch_size
        self._session = requests.Session()

    def publish(self, events: Sequence[Mapping[str, Any]]) -> list[Delivery]:
        results = []
        for function, selected in route(self.subscriptions, events).items():
            for start in range(0, len(selected), self.batch_size):
                results.append(self.post(function, selected[start:start + self.batch_size]))
        return results

    def post(self, function: str, events: Sequence[Any], event_type: str = "Notification") -> Delivery:
        cloud = bool(events) and isinstance(events[0], Mapping) and "specversion" in events[0]
        headers = {"aeg-event-type": event_type,
                   "Content-Type": "application/cloudevents-batch+json" if cloud else "application/json"}
        return self.post_raw(function, json.dumps(list(events)).encode(), headers, len(events))

    def post_raw(self, function: str, body: bytes, headers: Mapping[str, str], count: int) -> Delivery:
        url = f"{self.host_url}/runtime/webhooks/eventgrid"
        status, text, attempt = 0, "", 0
        for attempt in range(1, self.retries + 2):
            try:
                resp = self._session.post(url, params={"functionName": function}, data=body,
                                          headers=dict(headers), timeout=30)
                status, text = resp.status_code, resp.text
            except requests.RequestException as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            if status not in RETRY_STATUSES and status != 0:
                break
            if attempt <= self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        return Delivery(function, count, status, attempt, text)

    def close(self) -> None:
        self._session.close()
