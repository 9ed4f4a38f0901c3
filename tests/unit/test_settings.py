from __future__ import annotations

import pytest

from core.errors import SettingsError
from core.settings import SETTINGS, Settings
from embedded.local_settings import SAMPLE, read_values


def test_sample_settings_are_valid() -> None:
    settings = Settings.from_env(read_values(SAMPLE))
    assert settings.table_prefix == "reactor" and settings.data_container == "data"
    assert settings.internal_container == "reactor-internal"


def test_every_problem_is_listed_at_once() -> None:
    env = read_values(SAMPLE)
    env.update(REACTOR_TABLE_PREFIX="no-dashes", REACTOR_CLAIM_LEASE_SECONDS="ten",
               REACTOR_LOG_LEVEL="LOUD", REACTOR_ML_EVENT_SOURCES="", REACTOR_STORAGE_ACCOUNT="acct")
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    text = str(err.value)
    assert len(err.value.problems) == 5
    for name in ("REACTOR_TABLE_PREFIX", "REACTOR_CLAIM_LEASE_SECONDS", "REACTOR_LOG_LEVEL",
                 "REACTOR_ML_EVENT_SOURCES", "REACTOR_STORAGE_ACCOUNT"):
        assert name in text


def test_sample_documents_every_setting() -> None:
    import json

    doc = json.loads(SAMPLE.read_text())
    for name in SETTINGS:
        assert name in doc["Values"], name
        assert name in doc["Documentation"], name
