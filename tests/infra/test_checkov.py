"""checkov (bicep framework, offline) over every template: no failed check, no parsing error, and
every accepted finding explained by a ``// checkov:skip=CKV_...:reason`` comment in the Bicep.

checkov is slow to start and lives in its own virtualenv (it pins packaging<24, which pytest 9
cannot share a venv with), so it runs once, as a subprocess, over infra/ and the two canaries in
tests/infra/canary/ that prove the gate fails on a real finding, on an unexplained suppression
and on a template it cannot parse.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

CANARY = Path(__file__).resolve().parent / "canary"
UNEXPLAINED = CANARY / "unexplained.bicep"
BROKEN = CANARY / "broken.bicep"
MIN_REASON = 20  # characters: a reason, not a placeholder
SKIP_COMMENT = re.compile(r"//\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")
INSTALL = "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r tests/infra/requirements-checkov.txt"


def checkov_executable() -> str:
    """$CHECKOV_BIN, else .venv-checkov/bin/checkov, else checkov on PATH or beside this Python."""
    candidates = [os.environ.get("CHECKOV_BIN", ""), str(bicep.ROOT / ".venv-checkov" / "bin" / "checkov"),
                  shutil.which("checkov") or "", str(Path(sys.executable).with_name("checkov"))]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"checkov not found; install it with: {INSTALL}")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """checkov's JSON report over infra/ and the canaries (one run for the whole session)."""
    files = [*bicep.bicep_files(), UNEXPLAINED, BROKEN]
    args = [checkov_executable(), "--framework", "bicep", "--skip-download", "--compact", "--output", "json"]
    for path in files:
        args += ["--file", str(path)]
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    done = subprocess.run(args, cwd=bicep.ROOT, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode in (0, 1), f"checkov crashed ({done.returncode}):\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout)
    reports = result if isinstance(result, list) else [result]
    [found] = [r for r in reports if r.get("check_type") == "bicep"]
    return dict(found)


def by_file(report: dict[str, Any], kind: str) -> dict[Path, list[dict[str, Any]]]:
    grouped: dict[Path, list[dict[str, Any]]] = {}
    for check in report["results"][kind]:
        grouped.setdefault(Path(check["file_abs_path"]).resolve(), []).append(check)
    return grouped


def infra_only(grouped: dict[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [check for path, checks in grouped.items() if path.is_relative_to(bicep.INFRA) for check in checks]


def unexplained(skipped: list[dict[str, Any]]) -> list[str]:
    """Suppressions whose comment gives no real reason."""
    problems = []
    for check in skipped:
        reason = str(check.get("check_result", {}).get("suppress_comment", "")).strip()
        if reason == "No comment provided" or len(reason) < MIN_REASON:
            problems.append(f"{check['file_path']}: {check['check_id']} on {check['resource']} "
                            f"is suppressed without a reason ({reason!r})")
    return problems


def test_checkov_parses_every_template(report):
    errors = {Path(p).resolve() for p in report["results"].get("parsing_errors", [])}
    assert BROKEN.resolve() in errors, "the broken canary must be reported: parse errors would go unnoticed"
    assert errors - {BROKEN.resolve()} == set(), (
        "checkov could not parse these templates, so it did not scan them (pycep, the parser checkov "
        f"3.3.30 pins, lacks some Bicep syntax: items(), map(), toObject(), deployer()...): {sorted(errors)}")


# Resource types checkov has checks for: each such resource of infra/ must show up in the report.
CHECKED_TYPES = ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults", "Microsoft.Web/sites",
                 "Microsoft.Web/serverfarms")


def test_checkov_evaluated_every_security_relevant_resource(report):
    evaluated = {(Path(c["file_abs_path"]).resolve(), c["resource"])
                 for kind in ("passed_checks", "failed_checks", "skipped_checks") for c in report["results"][kind]}
    missing = []
    for path in bicep.bicep_files():
        for type_ in CHECKED_TYPES:
            for name, resource in bicep.resources(bicep.parse(path), type_).items():
                if not resource["existing"] and (path.resolve(), f"{type_}.{name}") not in evaluated:
                    missing.append(f"{path.relative_to(bicep.ROOT)}: {type_}.{name}")
    assert missing == []


def test_no_failed_checks(report):
    failed = infra_only(by_file(report, "failed_checks"))
    assert failed == [], "\n".join(
        f"{c['file_path']}: {c['check_id']} {c['check_name']} ({c['resource']}): fix it, or explain it "
        f"with // checkov:skip={c['check_id']}:<reason> in the resource" for c in failed)


def test_canary_findings_fail_the_gate(report):
    failed = {c["check_id"] for c in by_file(report, "failed_checks").get(UNEXPLAINED.resolve(), [])}
    assert {"CKV_AZURE_3", "CKV_AZURE_44"} <= failed  # https only, TLS 1.2


def test_every_suppression_is_explained(report):
    skipped = by_file(report, "skipped_checks")
    assert unexplained(infra_only(skipped)) == []
    assert unexplained(skipped[UNEXPLAINED.resolve()]), "a suppression without a reason must be caught"


def test_no_stale_suppressions(report):
    """Every checkov:skip comment in infra/ silences a finding checkov actually reports."""
    used = {(Path(c["file_abs_path"]).resolve(), c["check_id"]) for c in report["results"]["skipped_checks"]}
    stale = []
    for path in bicep.bicep_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = SKIP_COMMENT.search(line.strip())
            if match and (path.resolve(), match.group(1)) not in used:
                stale.append(f"{path.relative_to(bicep.ROOT)}:{number}: {match.group(1)} suppresses nothing")
    assert stale == []
