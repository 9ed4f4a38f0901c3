"""Publishing one CloudEvent to a custom Event Grid topic with azure-eventgrid's
``EventGridPublisherClient``: the outbox's ``send`` for our own events.

Credentials: a topic key (``AzureKeyCredential``, sent as ``aeg-sas-key``) when one is set,
which is how the local topic is reached; otherwise ``DefaultAzureCredential``, the app's managed
identity with the EventGrid Data Sender role, which is how the Azure topic is reached (its
local auth is disabled). The SDK and azure-identity are imported on the first publish, never at
``import function_app``.

The outbox owns retrying: the SDK's own retry policy is turned off for each call
(``retry_total=0``), so a topic answering 500 costs one request per drain, not a blocking loop
inside it. The answer becomes the outbox's verdict exactly as a webhook's does (``judge``):
200 delivered, 429/5xx retry (honouring Retry-After), any other 4xx (401 for a wrong key, 403
for a missing role, 400 for a bad event) a configuration error. The key is never logged: it
lives in the credential, the SDK's HTTP log redacts the header, and error texts are scrubbed.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from core.notify.request import Request
from core.notify.send import Verdict, judge

PER_CALL = {"retry_total": 0}  # the SDK takes retry and timeout options per call
# With per-call options the SDK's event model warns about each unknown keyword on every send;
# the options are not event attributes, so that warning is noise.
_NOISE = "is not a known attribute of class"
_SERIALIZER_LOGGERS = ("azure.eventgrid._legacy._generated._serialization", "azure.eventgrid._serialization")


class EventGridSend:
    """``EventGridSend(endpoint, key)(request, now)``: one publish attempt; never raises."""

    def __init__(self, endpoint: str, key: str = "", *, timeout: float = 10.0) -> None:
        self._endpoint = endpoint
        self._key = key
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EventGridSend({self._endpoint}, {'key' if self._key else 'managed identity'})"

    def __call__(self, request: Request, now: datetime) -> Verdict:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            self.client().send([_cloud_event(request.body)], **PER_CALL,
                               connection_timeout=self._timeout, read_timeout=self._timeout)
        except HttpResponseError as exc:
            response = getattr(exc, "response", None)
            if exc.status_code is None or response is None:  # no answer: e.g. no token from the identity
                return Verdict("retry", error=f"{request.label}: {type(exc).__name__}")
            return judge(request, int(exc.status_code), response.headers.get("Retry-After", ""),
                         _text(response), now)
        except AzureError as exc:  # connection refused, timeout: the topic may be back later
            return Verdict("retry", error=f"{request.label}: {type(exc).__name__}")
        return Verdict("delivered", 200)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        from azure.eventgrid import EventGridPublisherClient

        _quiet_serializer()
        if self._key:
            from azure.core.credentials import AzureKeyCredential

            return EventGridPublisherClient(self._endpoint, AzureKeyCredential(self._key))
        from azure.identity import DefaultAzureCredential

        return EventGridPublisherClient(self._endpoint, DefaultAzureCredential())


def _cloud_event(doc: Any) -> Any:
    from azure.core.messaging import CloudEvent

    known = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}
    extensions = {k: v for k, v in doc.items() if k not in known}
    return CloudEvent(source=doc["source"], type=doc["type"], data=doc.get("data"), subject=doc.get("subject"),
                      id=doc["id"], time=datetime.fromisoformat(doc["time"].replace("Z", "+00:00")),
                      datacontenttype=doc.get("datacontenttype"), extensions=extensions or None)


def _text(response: Any) -> str:
    try:
        return str(response.text())
    except Exception:  # a body that cannot be decoded says nothing we need
        return ""


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _NOISE not in str(record.msg)


_FILTER = _DropNoise()


def _quiet_serializer() -> None:
    for name in _SERIALIZER_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
