"""Publishing settings: off when unset, an http endpoint needs a key (a token never goes over http),
the key never shows in a repr, and the SDK is not loaded until the first publish."""

from __future__ import annotations

import pytest

from core.errors import SettingsError
from core.settings import Settings
from embedded.local_settings import SAMPLE, read_values
from tests.azure_transport import sdk_modules_loaded_by

BASE = {**read_values(SAMPLE), "REACTOR_LOCAL_EVENTS_TOPIC_KEY": ""}


def test_publishing_is_off_by_default() -> None:
    settings = Settings.from_env(BASE)
    assert settings.events_topic_endpoint == "" and settings.events_source == "urn:mlops-reactor"


def test_an_http_endpoint_needs_the_key_and_a_bad_one_is_named() -> None:
    with pytest.raises(SettingsError, match="is http: set REACTOR_LOCAL_EVENTS_TOPIC_KEY"):
        Settings.from_env({**BASE, "REACTOR_EVENTS_TOPIC_ENDPOINT": "http://127.0.0.1:7071/eventgrid/api/events"})
    with pytest.raises(SettingsError, match=r"REACTOR_EVENTS_TOPIC_ENDPOINT='topic\.eventgrid' is not valid"):
        Settings.from_env({**BASE, "REACTOR_EVENTS_TOPIC_ENDPOINT": "topic.eventgrid"})
    endpoint = "https://t.westeurope-1.eventgrid.azure.net/api/events"
    azure = Settings.from_env({**BASE, "REACTOR_EVENTS_TOPIC_ENDPOINT": endpoint})
    assert azure.events_topic_key == "", "https and no key: the managed identity"


def test_the_key_never_shows_in_a_repr() -> None:
    settings = Settings.from_env({**BASE, "REACTOR_EVENTS_TOPIC_ENDPOINT": "http://127.0.0.1:1/eventgrid/api/events",
                                  "REACTOR_LOCAL_EVENTS_TOPIC_KEY": "SECRET-key-in-repr"})
    assert settings.events_topic_key == "SECRET-key-in-repr" and "SECRET-key-in-repr" not in repr(settings)


def test_the_eventgrid_sdk_loads_on_the_first_publish_only() -> None:
    code = ("from core.adapters.eventgrid_publish import EventGridSend\n"
            "send = EventGridSend('https://t.westeurope-1.eventgrid.azure.net/api/events')\n")
    assert sdk_modules_loaded_by(code, ("azure.eventgrid", "azure.identity")) == []
    built = code + "send.client()\n"
    loaded = sdk_modules_loaded_by(built, ("azure.eventgrid", "azure.identity"))
    assert "azure.eventgrid" in loaded and "azure.identity" in loaded, "no key: DefaultAzureCredential"


def test_the_credential_is_the_key_or_the_managed_identity() -> None:
    from azure.core.credentials import AzureKeyCredential
    from azure.identity import DefaultAzureCredential

    from core.adapters.eventgrid_publish import EventGridSend

    https = "https://t.westeurope-1.eventgrid.azure.net/api/events"
    assert isinstance(EventGridSend(https).client()._credential, DefaultAzureCredential)
    keyed = EventGridSend("http://127.0.0.1:1/eventgrid/api/events", "SECRET-k")
    assert isinstance(keyed.client()._credential, AzureKeyCredential) and "SECRET-k" not in repr(keyed)
