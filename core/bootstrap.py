"""The one place that wires adapters to services.

Built on first use and cached, never at import: cold start must not pay for SDK clients.
Tests call ``build`` with their own settings (Azurite) or fakes and ``install`` the result.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from core.adapters.blob_store import AzureBlobStore
from core.adapters.table_store import TableStateStore
from core.intake import Intake
from core.ledger import Ledger
from core.logs import configure
from core.ports import BlobStore, Clock, StateStore, utcnow
from core.settings import Settings
from core.sources import SourcePolicy


@dataclass
class Services:
    settings: Settings
    store: StateStore
    blobs: BlobStore
    ledger: Ledger
    intake: Intake


_lock = threading.Lock()
_services: Services | None = None


def build(settings: Settings, *, store: StateStore | None = None, blobs: BlobStore | None = None,
          clock: Clock = utcnow) -> Services:
    store = store or TableStateStore.from_connection(settings.storage_connection, settings.storage_account)
    blobs = blobs or AzureBlobStore.from_connection(settings.storage_connection, settings.storage_account)
    ledger = Ledger(store, blobs, prefix=settings.table_prefix, container=settings.internal_container,
                    clock=clock, lease_seconds=settings.claim_lease_seconds)
    sources = SourcePolicy(settings.storage_event_sources, settings.ml_event_sources)
    configure(settings.log_level)
    return Services(settings, store, blobs, ledger, Intake(ledger, sources))


def services() -> Services:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = build(Settings.from_env(os.environ))
    return _services


def install(built: Services | None) -> None:
    """Use these services from now on (tests); ``None`` rebuilds from the environment on next use."""
    global _services
    with _lock:
        _services = built
