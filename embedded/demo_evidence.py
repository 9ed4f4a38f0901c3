"""What the demo leaves behind for the checks of its end-to-end test, when ``REACTOR_DEMO_EVIDENCE``
names a directory: the admin API's answers (status, releases, audit, dead letters, silences,
OpenAPI, the status page, and refusals), every audit record, every notification the local
receiver accepted, and a screenshot of the status page in headless Chromium. Nothing is
collected without the setting, so ``make demo`` is unchanged.

The test then looks for the settings' secret values in all of it (tests/e2e/test_demo.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests

CHROMIUM = "/usr/bin/chromium"
READS = ["status", "releases", "releases/diabetes%3A1", "releases/diabetes:3", "audit?limit=1000",
         "audit?model=diabetes&version=1", "deadletters", "silences?expired=true", "openapi.json",
         "dashboard", "health"]
# Refusals and errors: their problem bodies must not echo what the caller or the settings hold.
REFUSED = [("GET", "status", None), ("GET", "status", "wrong-key"), ("GET", "releases/diabetes:99", "key"),
           ("POST", "releases/diabetes:1/approve", "key"), ("POST", "retrain", "key"),
           ("GET", "audit?from=yesterday", "key"), ("GET", "no-such-route", "key")]


def collect(stack_url: str, services: Any, receiver: Any) -> None:
    where = os.environ.get("REACTOR_DEMO_EVIDENCE", "")
    if not where:
        return
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    key = os.environ["LOCAL_FUNCTION_KEYS"].split(",")[0].partition(":")[2]
    _dump(out / "responses.json", _responses(stack_url, key))
    _dump(out / "audit.json", services.ledger.audit_records())
    _dump(out / "notifications.json", [{"kind": r.kind, "path": r.path, "headers": dict(r.headers), "body": r.body}
                                       for r in receiver.received])
    _screenshot(f"{stack_url}/api/dashboard?code={key}", out / "dashboard.png")


def _responses(url: str, key: str) -> list[dict[str, Any]]:
    calls = [("GET", path, key) for path in READS] + [
        (method, path, key if given == "key" else given) for method, path, given in REFUSED]
    answers = []
    for method, path, presented in calls:
        headers = {"x-functions-key": presented} if presented else {}
        resp = requests.request(method, f"{url}/api/{path}", headers=headers, data=b"{", timeout=60)
        answers.append({"method": method, "path": path, "status": resp.status_code,
                        "headers": dict(resp.headers), "body": resp.text})
    return answers


def _screenshot(url: str, png: Path) -> None:
    if not shutil.which(CHROMIUM):
        return
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
                        "--window-size=1280,1700", f"--screenshot={png}", url],
                       capture_output=True, timeout=120, check=False)


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")
