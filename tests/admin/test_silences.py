"""Silences through the admin API and the CLI, against the host: roles, validation, expiry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.admin.conftest import KEYS, AdminHost
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
SILENCE = {"matchers": ["endpoint=diabetes-prod", "severity=~warning|info"], "duration": "2h",
           "comment": "planned load test"}


def test_silence_lifecycle_and_roles(admin_host: AdminHost) -> None:
    assert admin_host.call("POST", "silences", KEYS["default"], json=SILENCE).status_code == 403
    created = admin_host.call("POST", "silences", KEYS["ops"], json=SILENCE)
    assert created.status_code == 201
    silence = created.json()
    assert silence["created_by"] == "key:ops" and silence["matchers"][0] == 'endpoint="diabetes-prod"'
    listed = admin_host.call("GET", "silences", KEYS["default"]).json()["silences"]
    assert silence["id"] in [s["id"] for s in listed]
    assert admin_host.call("DELETE", f"silences/{silence['id']}", KEYS["default"]).status_code == 403
    assert admin_host.call("DELETE", f"silences/{silence['id']}", KEYS["ops"]).status_code == 200
    listed = admin_host.call("GET", "silences", KEYS["default"]).json()["silences"]
    assert silence["id"] not in [s["id"] for s in listed]
    everything = admin_host.call("GET", "silences", KEYS["default"], params={"expired": "true"}).json()
    assert silence["id"] in [s["id"] for s in everything["silences"]]
    assert admin_host.call("DELETE", "silences/nope", KEYS["ops"]).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({**SILENCE, "matchers": []}, "matchers"),
    ({**SILENCE, "matchers": ["no operator here"]}, "matchers"),
    ({**SILENCE, "duration": "soon"}, "duration"),
    ({**SILENCE, "duration": "400d"}, "duration"),
    ({k: v for k, v in SILENCE.items() if k != "comment"}, "comment"),
])
def test_bad_silences_name_the_field(admin_host: AdminHost, body: dict, field: str) -> None:
    resp = admin_host.call("POST", "silences", KEYS["ops"], json=body)
    assert resp.status_code == 400 and resp.json()["field"].startswith(field), resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"


def test_silence_cli(admin_host: AdminHost) -> None:
    cli = [sys.executable, "-m", "cli.reactor", "--url", admin_host.url, "--json", "silence"]
    env = {**os.environ, "REACTOR_KEY": KEYS["ops"]}
    added = subprocess.run([*cli, "add", "model=diabetes", "--duration", "30m", "--comment", "retraining"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    silence_id = json.loads(added.stdout)["id"]
    listed = subprocess.run([*cli, "list"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert silence_id in listed.stdout
    expired = subprocess.run([*cli, "expire", silence_id], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert expired.returncode == 0
    denied = subprocess.run([*cli, "add", "model=x", "--comment", "c"], env={**os.environ, "REACTOR_KEY": KEYS[
        "default"]}, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert denied.returncode == 1 and "Forbidden" in denied.stderr
