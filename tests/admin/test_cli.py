"""``reactor status|audit|deadletters|replay`` against a real host: tables, --json, errors."""

from __future__ import annotations

import json

import pytest

from cli.reactor import main
from tests.admin.conftest import KEYS, MODEL

pytestmark = pytest.mark.integration


@pytest.fixture
def run(admin_host, monkeypatch, capsys):
    def invoke(*argv: str, key: str = KEYS["ops"]) -> tuple[int, str, str]:
        monkeypatch.setenv("REACTOR_KEY", key)
        code = main(["--url", admin_host.url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_status_table_and_json(run) -> None:
    code, out, _ = run("status")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["MODEL", "CHAMPION"] and MODEL in out
    code, out, _ = run("--json", "status")
    assert code == 0 and json.loads(out)["models"][0]["model"] == MODEL


def test_audit_filters_and_bad_time(run) -> None:
    code, out, _ = run("--json", "audit", "--model", MODEL, "--since", "2000-01-01T00:00:00Z", "--limit", "5")
    assert code == 0 and isinstance(json.loads(out)["records"], list)
    code, _, err = run("audit", "--since", "last tuesday")
    assert code == 1 and "(field: from)" in err


def test_deadletters_and_replay(run, admin_host) -> None:
    code, out, _ = run("deadletters")
    assert code == 0 and out.splitlines()[0].startswith("ID")
    code, _, err = run("replay", "on_blob_created/0123456789abcdef")
    assert code == 1 and "Unknown dead letter" in err
    code, _, err = run("replay", "on_blob_created/0123456789abcdef", key=KEYS["default"])
    assert code == 1 and "Forbidden" in err
    code, _, err = run("replay", "no-slash")
    assert code == 2 and "not a dead letter id" in err


def test_wrong_key_and_unreachable_host_fail_clearly(run, monkeypatch, capsys) -> None:
    code, _, err = run("status", key="wrong")
    assert code == 1 and "Unauthorized" in err
    monkeypatch.setenv("REACTOR_KEY", KEYS["ops"])
    assert main(["--url", "http://127.0.0.1:9", "status"]) == 1
    assert "cannot reach" in capsys.readouterr().err
