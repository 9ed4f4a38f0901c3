"""The ``MLClient`` of one Azure ML workspace and its credential, built on first use: how ``AzureMLPlatform`` and
``AzureServing`` (``from_settings``) connect to the workspace the settings name.

``azure.ai.ml`` costs ~2 s to import and ``azure.identity`` is not light either, so the SDK imports sit inside
the functions that run on first use, never at module level.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.ai.ml import MLClient


class LazyCredential:
    """One credential for all the SDK clients of an adapter: the one given, or ``DefaultAzureCredential`` (the
    Function App's managed identity in Azure; ``managed_identity_client_id`` picks a user-assigned one),
    built on first use."""

    def __init__(self, credential: Any, managed_identity_client_id: str | None) -> None:
        self._credential, self._client_id = credential, managed_identity_client_id
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
            return self._credential


def ml_client_factory(credential: Callable[[], Any], subscription_id: str, resource_group: str, workspace: str,
                      **client_kwargs: Any) -> Callable[[], MLClient]:
    """A factory of the workspace's ``MLClient``; ``client_kwargs`` go to the SDK's HTTP pipelines
    (``retry_total``, ``transport``, ...)."""

    def build() -> MLClient:
        from azure.ai.ml import MLClient

        # show_progress=False: no upload progress bars in the function's log
        return MLClient(credential(), subscription_id, resource_group, workspace, show_progress=False,
                        **client_kwargs)

    return build
