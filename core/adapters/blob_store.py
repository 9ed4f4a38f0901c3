"""BlobStore on Azure Blob Storage (Azurite locally), through azure-storage-blob."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from core.ports import BlobInfo

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient


class AzureBlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._containers: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_connection(cls, connection: str = "", account: str = "") -> AzureBlobStore:
        from azure.storage.blob import BlobServiceClient

        if connection:
            return cls(BlobServiceClient.from_connection_string(connection))
        from azure.identity import DefaultAzureCredential

        return cls(BlobServiceClient(f"https://{account}.blob.core.windows.net",
                                     credential=DefaultAzureCredential()))

    def _ensure(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        if container in self._containers:
            return
        with self._lock:
            # Created before, by us or another instance: exactly what we need.
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(container)
            self._containers.add(container)

    def put(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> str:
        from azure.storage.blob import ContentSettings

        self._ensure(container)
        blob = self._service.get_blob_client(container, name)
        result = blob.upload_blob(data, overwrite=True,
                                  content_settings=ContentSettings(content_type=content_type))
        return str(result["etag"])

    def get(self, container: str, name: str) -> bytes:
        return bytes(self._service.get_blob_client(container, name).download_blob().readall())

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        client = self._service.get_container_client(container)
        for item in client.list_blobs(name_starts_with=prefix or None):
            yield BlobInfo(container=container, name=item.name, etag=str(item.etag), size=int(item.size),
                           content_type=item.content_settings.content_type or "",
                           last_modified=item.last_modified)

    def list_folders(self, container: str, prefix: str) -> Iterator[str]:
        """Folder names directly under ``prefix`` (a delimiter listing); none when the container is absent."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobPrefix

        client = self._service.get_container_client(container)
        try:
            for item in client.walk_blobs(name_starts_with=prefix or None, delimiter="/"):
                if isinstance(item, BlobPrefix):
                    yield item.name[len(prefix):].rstrip("/")
        except ResourceNotFoundError:
            return
