"""The admin routes on a host whose app runs with REACTOR_EASY_AUTH=true, as in Azure once
infra/modules/easy-auth.bicep is deployed: a caller with only a key (Event Grid, scripts) is let
through without a role; the signed-in principal App Service injects carries the roles."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from core import bootstrap
from core.settings import Settings
from tests.admin.conftest import KEYS, MASTER, AdminHost, seed_release

pytestmark = pytest.mark.integration


def principal(name: str, *roles: str) -> str:
    claims = [{"typ": "name", "val": name}, *({"typ": "roles", "val": r} for r in roles)]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


@pytest.fixture(scope="module")
def easy(admin_env) -> Iterator[tuple[AdminHost, bootstrap.Services]]:
    env = {**admin_env, "REACTOR_EASY_AUTH": "true"}
    host = AdminHost(env)
    yield host, bootstrap.build(Settings.from_env(env))
    host.stop()


def test_a_key_alone_reads_but_holds_no_role(easy) -> None:
    host, services = easy
    assert host.call("GET", "status", KEYS["default"]).status_code == 200
    rid = seed_release(services, "31")
    for key in (KEYS["lead"], MASTER):  # in Azure a key never grants a role, not even the master key
        refused = host.call("POST", f"releases/{rid}/approve", key, json={})
        assert refused.status_code == 403 and refused.json()["field"] == "role", refused.text
    forged = host.call("POST", f"releases/{rid}/approve", KEYS["default"], json={},
                       headers={"x-reactor-key-name": "master"})
    assert forged.status_code == 403


def test_the_signed_in_principal_carries_the_roles(easy) -> None:
    host, services = easy
    rid = seed_release(services, "32")
    viewer = {"x-ms-client-principal": principal("viewer@contoso.com")}
    assert host.call("POST", f"releases/{rid}/approve", KEYS["default"], json={}, headers=viewer).status_code == 403
    approver = {"x-ms-client-principal": principal("ana@contoso.com", "approver")}
    done = host.call("POST", f"releases/{rid}/approve", KEYS["default"], json={}, headers=approver)
    assert done.status_code == 200 and done.json()["state"] == "approved", done.text
    assert done.json()["decided_by"] == "ana@contoso.com"
    mangled = host.call("GET", "status", KEYS["default"], headers={"x-ms-client-principal": "%%%"})
    assert mangled.status_code == 400 and mangled.json()["field"] == "X-MS-CLIENT-PRINCIPAL"
