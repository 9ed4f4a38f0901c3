"""A local host with the admin routes, three function keys and a role map, on Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from core import bootstrap
from core.settings import Settings
from tests.conftest import HostProcess, base_env, unique_prefix

MODEL = "diabetes"
KEYS = {"default": "viewer-key-123", "ops": "ops-key-456", "lead": "lead-key-789"}
MASTER = "master-key-000"
ROLE_MAP = "ops:operator,lead:operator+approver"


def policy() -> str:
    return json.dumps({MODEL: {"container": "data", "prefix": "diabetes/", "test_container": "data",
                               "test_blob": "holdout/diabetes.csv", "window_seconds": 3600, "min_new_files": 1,
                               "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.0,
                               "monitors": ["diabetes-drift"]}})


class AdminHost(HostProcess):
    """The local host (embedded.stack) with keys and roles of its own, and a helper to call it."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env, watch=False, timers=False)

    def call(self, method: str, path: str, key: str | None = None, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["x-functions-key"] = key
        return requests.request(method, f"{self.url}/api/{path}", headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def admin_env(azurite) -> dict[str, str]:
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(LOCAL_FUNCTION_KEYS=",".join(f"{n}:{k}" for n, k in KEYS.items()), LOCAL_MASTER_KEY=MASTER,
               REACTOR_ROLE_MAP=ROLE_MAP, REACTOR_EASY_AUTH="false", REACTOR_RETRAIN_POLICIES=policy(),
               REACTOR_ML_PLATFORM="local")
    return env


@pytest.fixture(scope="module")
def admin_host(admin_env) -> Iterator[AdminHost]:
    proc = AdminHost(admin_env)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin_services(admin_env) -> bootstrap.Services:
    return bootstrap.build(Settings.from_env(admin_env))
