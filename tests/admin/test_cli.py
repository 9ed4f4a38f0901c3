"""``reactor status|audit|deadletters|replay|releases|release|approve|reject|rollback`` against a
real host: tables, --json, errors on stderr and the exit codes scripts rely on."""

from __future__ import annotations

import json

import pytest

from cli.reactor import main
from tests.admin.conftest import KEYS, MODEL, PENDING, seed_release

pytestmark = pytest.mark.integration


@pytest.fixture
def run(admin_host, monkeypatch, capsys):
    def invoke(*argv: str, key: str = KEYS["ops"]) -> tuple[int, str, str]:
        monkeypatch.setenv("REACTOR_KEY", key)
        code = main(["--url", admin_host.url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_status_table_and_json(run, pending_release) -> None:
    code, out, _ = run("status")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["MODEL", "CHAMPION"] and MODEL in out
    production = [line for line in out.splitlines() if line.startswith(MODEL)][1]
    # production version, release in flight, traffic (unknown: no platform answers), alerts firing
    assert production.split()[:4] == [MODEL, "-", PENDING, "pending"] and "unknown (ConnectionError" in production
    assert production.split()[-1] == "0"
    assert "PRODUCTION TRAFFIC" in out and out.rstrip().endswith("notifications pending: 0")
    code, out, _ = run("--json", "status")
    assert code == 0 and MODEL in [m["model"] for m in json.loads(out)["models"]]


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


def test_releases_table_filters_and_bad_state(run, pending_release) -> None:
    code, out, _ = run("releases")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "STATE", "STEP/TRAFFIC", "UPDATED", "REASON"]
    assert any(line.split()[:2] == [PENDING, "pending"] for line in lines[2:])
    code, out, _ = run("--json", "releases", "--model", MODEL, "--state", "pending")
    assert code == 0 and [r["id"] for r in json.loads(out)["releases"]] == [PENDING]
    code, out, _ = run("releases", "--state", "promoted")
    assert code == 0 and out.splitlines()[-1] == "(none)"
    code, _, err = run("releases", "--state", "shipped")
    assert code == 1 and "(field: state)" in err


def test_one_release_with_its_timeline(run, pending_release) -> None:
    code, out, _ = run("release", PENDING)
    assert code == 0 and out.splitlines()[0].split() == ["release", PENDING]
    timeline = out.split("\n\n", 1)[1].splitlines()
    assert timeline[0].split() == ["AT", "STATE", "NOTE", "FIGURES"] and "version 7 registered" in timeline[2]
    code, out, _ = run("--json", "release", PENDING)
    assert code == 0 and json.loads(out)["timeline"][0]["state"] == "pending"
    code, _, err = run("release", f"{MODEL}:999")
    assert code == 1 and "Not found" in err and "(field: id)" in err
    code, _, err = run("release", "diabetes-7")
    assert code == 2 and "not a release id" in err


def test_approve_and_reject_refusals_exit_non_zero(run, pending_release) -> None:
    code, _, err = run("approve", PENDING, key=KEYS["ops"])
    assert code == 1 and "Forbidden" in err and "approver" in err
    code, _, err = run("approve", PENDING, "--comment", "ship it", key=KEYS["lead"])
    assert code == 1 and "Conflict" in err and "not awaiting approval" in err
    code, _, err = run("reject", PENDING, "--reason", "too slow", key=KEYS["lead"])
    assert code == 1 and "Conflict" in err
    code, _, err = run("reject", f"{MODEL}:999", "--reason", "too slow", key=KEYS["lead"])
    assert code == 1 and "Not found" in err
    code, _, err = run("approve", "no-version", key=KEYS["lead"])
    assert code == 2 and "not a release id" in err
    with pytest.raises(SystemExit) as missing:  # argparse: --reason is required before anything is sent
        run("reject", PENDING)
    assert missing.value.code == 2


def test_approve_prints_the_decided_release(run, admin_services) -> None:
    rid = seed_release(admin_services, "11")
    code, out, err = run("approve", rid, "--comment", "canary plan reviewed", key=KEYS["lead"])
    assert code == 0, err
    facts = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines() if " " in line)
    assert facts["state"].strip() == "approved"
    assert "decided by     key:lead" in out and "canary plan reviewed (by key:lead)" in out
    code, out, _ = run("--json", "reject", seed_release(admin_services, "12"), "--reason", "no", key=KEYS["lead"])
    assert code == 0 and json.loads(out)["state"] == "rejected"


def test_rollback_refusals(run, pending_release) -> None:
    code, _, err = run("rollback", MODEL, "--reason", "p95 up", key=KEYS["default"])
    assert code == 1 and "Forbidden" in err
    code, _, err = run("rollback", MODEL, "--reason", "p95 up")
    assert code == 1 and "Conflict" in err and "no previous production deployment" in err
    code, _, err = run("rollback", "no-such-model", "--reason", "p95 up")
    assert code == 1 and "Not found" in err


def test_ids_are_quoted_into_one_path_segment(run, admin_services) -> None:
    # Unquoted, '#' would end the path and '?' start a query: the host would see another route.
    code, _, err = run("release", "diabetes#x?y:7")
    assert code == 1 and "Not found" in err and "diabetes#x?y:7" in err
    rid = seed_release(admin_services, "22")
    code, out, err = run("approve", rid, key=KEYS["lead"])
    assert code == 0 and "approved" in out, err
    code, _, err = run("silence", "expire", "no-such#silence")
    assert code == 1 and "no silence no-such#silence" in err
