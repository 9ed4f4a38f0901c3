"""BlobCreated events for Azurite, which emits none: a watcher that polls every container
and publishes ``Microsoft.Storage.BlobCreated`` in the real Event Grid schema, with the same
fields as Azure's (api, contentType, contentLength, blobType, url, sequencer, eTag...).

The event id is derived from the blob's name and ETag, so a watcher that restarts and sees
the same blobs again publishes the same ids, which the app's ledger deduplicates.

A container none of whose events any subscription would deliver (``routable`` says so, e.g. the
collected inference data, which grows with every scoring request) is not listed at all: Event Grid
would drop its events anyway, and listing it every half second would cost more as it grows.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from azure.storage.blob import BlobServiceClient

from core.adapters.eventgrid_subscriptions import Subscription, route

LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
STORAGE_TOPIC = (f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/local/providers/"
                 "Microsoft.Storage/storageAccounts/devstoreaccount1")
_NAMESPACE = uuid.UUID("6c5f4b2e-0d8e-4a53-9a57-6d0f0f6b7a10")
_log = logging.getLogger("reactor.local.blobs")


def blob_created_event(*, container: str, name: str, etag: str, size: int, content_type: str,
                       url: str, sequence: int, when: datetime) -> dict[str, Any]:
    event_id = str(uuid.uuid5(_NAMESPACE, f"{container}/{name}/{etag}"))
    return {
        "topic": STORAGE_TOPIC,
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "id": event_id,
        "data": {
            "api": "PutBlob",
            "clientRequestId": event_id,
            "requestId": event_id,
            "eTag": etag,
            "contentType": content_type or "application/octet-stream",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{sequence:032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid5(_NAMESPACE, event_id))},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


class BlobWatcher:
    """Polls the account; for each new (name, ETag) publishes one BlobCreated event."""

    def __init__(self, service: BlobServiceClient, publish: Callable[[list[dict[str, Any]]], Any], *,
                 interval: float = 0.5, routable: Callable[[str], bool] | None = None) -> None:
        self._service = service
        self._routable = routable or (lambda container: True)
        self._publish = publish
        self._interval = interval
        self._seen: dict[tuple[str, str], str] = {}
        self._sequence = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="blob-watcher", daemon=True)
        self.published = 0

    def start(self) -> BlobWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # storage hiccup: log and poll again next round, nothing is marked seen
                _log.exception("polling the blob service failed")
            self._stop.wait(self._interval)

    def poll(self) -> int:
        events = list(self._new_events(self._service.list_containers()))
        if events:
            self._publish(events)
            self.published += len(events)
        return len(events)

    def _new_events(self, containers: Iterable[Any]) -> Iterable[dict[str, Any]]:
        for container in containers:
            if not self._routable(container["name"]):
                continue
            client = self._service.get_container_client(container["name"])
            for blob in client.list_blobs():
                key = (container["name"], blob.name)
                if self._seen.get(key) == blob.etag:
                    continue
                self._seen[key] = blob.etag
                self._sequence += 1
                yield blob_created_event(container=container["name"], name=blob.name, etag=blob.etag,
                                         size=blob.size, content_type=blob.content_settings.content_type or "",
                                         url=client.get_blob_client(blob.name).url, sequence=self._sequence,
                                         when=blob.last_modified or datetime.now(timezone.utc))


def routed_container(subscriptions: Sequence[Subscription], container: str) -> bool:
    """Would any subscription deliver a BlobCreated of some blob in this container?"""
    probe = blob_created_event(container=container, name="probe.csv", etag="0", size=0, content_type="",
                               url="", sequence=0, when=datetime.now(timezone.utc))
    return bool(route(subscriptions, [probe]))
