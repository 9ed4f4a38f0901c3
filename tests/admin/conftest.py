"""A local host with the admin routes, three function keys and a role map, on Azurite.

Releases: the host has a release policy for ``diabetes`` (and ``churn``) but no serving platform
answers (the control plane URL is a port nobody listens on), so a registered version becomes a
release that stays ``pending`` with a step error: enough for every release route's refusals.
Releases further on (awaiting approval) are written into the host's table by ``seed_release``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from core import bootstrap
from core.release.service import deployment_name
from core.release.store import Release
from core.settings import Settings
from embedded.azurite import free_port
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.payloads import sample

MODEL = "diabetes"
OTHER = "churn"  # released only; its releases are seeded in states the missing platform cannot reach
KEYS = {"default": "viewer-key-123", "ops": "ops-key-456", "lead": "lead-key-789"}
MASTER = "master-key-000"
ROLE_MAP = "ops:operator,lead:operator+approver"
PENDING = f"{MODEL}:7"  # registered by the ``pending_release`` fixture


def policy() -> str:
    return json.dumps({MODEL: {"container": "data", "prefix": "diabetes/", "test_container": "data",
                               "test_blob": "holdout/diabetes.csv", "window_seconds": 3600, "min_new_files": 1,
                               "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.0,
                               "monitors": ["diabetes-drift"]}})


def release_policies() -> str:
    return json.dumps({m: {"qa_endpoint": f"{m}-qa", "prod_endpoint": f"{m}-prod", "approval": "manual",
                           "canary": {"steps": [10, 50, 100]}} for m in (MODEL, OTHER)})


class AdminHost(HostProcess):
    """The local host (embedded.stack) with keys and roles of its own, and a helper to call it."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env, watch=False, timers=False)

    def call(self, method: str, path: str, key: str | None = None, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["x-functions-key"] = key
        return requests.request(method, f"{self.url}/api/{path}", headers=headers, timeout=30, **kw)

    def deliver(self, function: str, event: dict) -> None:
        """An Event Grid notification, as the subscription would post it."""
        resp = requests.post(f"{self.url}/runtime/webhooks/eventgrid", params={"functionName": function},
                             headers={"aeg-event-type": "Notification"}, json=[event], timeout=30)
        assert resp.status_code == 202, resp.text


@pytest.fixture(scope="module")
def admin_env(azurite) -> dict[str, str]:
    env = base_env(azurite.connection_string, unique_prefix())
    env.update(LOCAL_FUNCTION_KEYS=",".join(f"{n}:{k}" for n, k in KEYS.items()), LOCAL_MASTER_KEY=MASTER,
               REACTOR_ROLE_MAP=ROLE_MAP, REACTOR_EASY_AUTH="false", REACTOR_RETRAIN_POLICIES=policy(),
               REACTOR_ML_PLATFORM="local", REACTOR_RELEASE_POLICIES=release_policies(),
               REACTOR_LOCAL_SERVING_URL=f"http://127.0.0.1:{free_port()}")
    return env


@pytest.fixture(scope="module")
def admin_host(admin_env) -> Iterator[AdminHost]:
    proc = AdminHost(admin_env)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin_services(admin_env) -> bootstrap.Services:
    return bootstrap.build(Settings.from_env(admin_env))


@pytest.fixture(scope="module")
def pending_release(admin_host: AdminHost) -> str:
    """``diabetes:7``, registered through the host: a release stuck in pending (no platform answers)."""
    raw = sample("ModelRegistered")
    model, version = PENDING.split(":")
    raw["data"].update(ModelName=model, ModelVersion=version, ModelTags={"stage": "candidate"})
    admin_host.deliver("on_model_registered", raw)
    return PENDING


def seed_release(services: bootstrap.Services, version: str, requested_by: str = "") -> str:
    """A ``churn`` release awaiting approval, written as the state machine would have left it."""
    now = datetime.now(UTC).isoformat()
    release = Release(OTHER, version, qa_endpoint=f"{OTHER}-qa", prod_endpoint=f"{OTHER}-prod",
                      deployment=deployment_name(OTHER, version), requested_by=requested_by, created_at=now)
    release = (release.with_step(now, "pending", f"version {version} registered")
               .with_step(now, "smoke_testing", "20 smoke requests passed, p95 12 ms", requests=20, p95_ms=12.0)
               .with_step(now, "awaiting_approval", "waiting for an approver"))
    services.releases.store.insert(release)
    return release.id
