"""The release half of ``make demo``: production traffic, approvals through ``reactor``, and three
releases (one promoted, one failing QA, one rolled back by its canary health check).

Kept apart from ``embedded.demo`` so each file reads at once; the demo calls these in order.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

MODEL = "diabetes"
PROD, QA = "diabetes-prod", "diabetes-qa"
# Demo timings: a canary step lasts 5 s and needs 10 requests to prove anything.
RELEASE_POLICY = {MODEL: {
    "qa_endpoint": QA, "prod_endpoint": PROD, "approval": "manual", "approval_timeout_minutes": 30,
    "smoke": {"requests": 10, "p95_ms": 500}, "retention": 1, "separation_of_duties": True,
    "canary": {"steps": [10, 50, 100], "step_seconds": 5, "max_error_rate": 0.05, "max_p95_ms": 500,
               "min_requests": 10}}}
ROOT = Path(__file__).resolve().parent.parent
Say = Callable[..., None]


class Traffic:
    """Production traffic: rows of the held-out set posted to the production endpoint, ~25/s."""

    def __init__(self, scoring_uri: str, holdout: Path, rate: float = 25.0,
                 sent: Callable[[str], None] | None = None) -> None:
        with holdout.open(newline="") as f:
            rows = [r for r in csv.DictReader(f)]
        self._bodies = [json.dumps({"data": [{k: float(v) for k, v in r.items() if k != "y"}]})
                        for r in rows[:200]]
        self._uri, self._pause, self._sent = scoring_uri, 1.0 / rate, sent
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            body = self._bodies[i % len(self._bodies)]
            if self._sent is not None:  # told what goes out, e.g. the demo's stand-in for collected data
                self._sent(body)
            try:
                status = session.post(self._uri, data=body, timeout=5,
                                      headers={"Content-Type": "application/json"}).status_code
            except requests.RequestException:
                status = 0
            self.statuses[status] += 1
            i += 1
            self._stop.wait(self._pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Releases:
    def __init__(self, services: Any, stack_url: str, say: Say, workdir: Path) -> None:
        self.services, self.url, self.say, self.workdir = services, stack_url, say, workdir
        self.key = os.environ["LOCAL_FUNCTION_KEYS"].split(",")[0].partition(":")[2]
        self.traffic: Traffic | None = None

    def release(self, version: str) -> Any:
        return self.services.releases.get(f"{MODEL}:{version}")

    def wait_state(self, version: str, states: tuple[str, ...], timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.release(version)
            except KeyError:
                r = None
            if r is not None and r.state in states:
                return r
            time.sleep(0.25)
        raise TimeoutError(f"demo: release {MODEL}:{version} did not reach {' or '.join(states)}")

    def reactor(self, *args: str) -> str:
        """The operators' CLI, as a person would run it."""
        done = subprocess.run([sys.executable, "-m", "cli.reactor", "--url", self.url, *args], cwd=ROOT,
                              env={**os.environ, "REACTOR_KEY": self.key}, capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"reactor {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def approve(self, version: str, note: str) -> None:
        self.say(f"$ reactor approve {MODEL}:{version} --comment '{note}'")
        self.reactor("approve", f"{MODEL}:{version}", "--comment", note)

    def start_traffic(self, holdout: Path) -> None:
        endpoint = self.services.serving.get_endpoint(PROD)
        self.traffic = Traffic(endpoint.scoring_uri, holdout).start()
        self.say("production traffic started", f"~25 requests/s to {endpoint.scoring_uri}")

    def show(self, version: str) -> None:
        for step in self.release(version).timeline:
            figures = step.get("figures") or {}
            shown = ", ".join(f"{k}={v}" for k, v in figures.items() if k in (
                "requests", "failed", "errors", "error_rate", "p95_ms", "traffic", "seconds"))
            self.say(f"    {step['state']:<18} {step['note'][:110]}", shown)

    # -- the three releases ---------------------------------------------------------------------
    def first(self, holdout: Path) -> float:
        """v1 (from the retraining job): QA, smoke, approval by CLI, production."""
        t0 = time.monotonic()
        r = self.wait_state("1", ("awaiting_approval", "qa_failed"))
        self.say(f"release {r.id}: deployed to QA and smoke-tested -> {r.state}")
        self.approve("1", "QA figures look right")
        self.wait_state("1", ("canary", "promoted", "rolled_back"))
        self.start_traffic(holdout)
        r = self.wait_state("1", ("promoted", "rolled_back"))
        self.say(f"release {r.id}: {r.state.upper()}", self.traffic_split())
        self.show("1")
        return time.monotonic() - t0

    def broken(self) -> None:
        """v2: a model that raises on every scoring call. It must never leave QA."""
        package = self._package("broken", self._break_model)
        v = self.services.platform.register_package(MODEL, package, {"stage": "candidate", "demo": "broken"},
                                                    {}).version
        self.say(f"registered version {v}: a deliberately broken model (fitted on 9 features, scored with 10)")
        r = self.wait_state(v, ("qa_failed", "awaiting_approval"))
        self.say(f"release {r.id}: {r.state.upper()}", r.reason[:150])
        self.show(v)

    def degrading(self) -> None:
        """v3: fine for its first 40 requests per replica, then failing: passes QA, fails the canary."""
        package = self._package("degrading", lambda p: None)
        env = json.dumps({"REACTOR_SCORE_FAULT": "error-after:40"})
        v = self.services.platform.register_package(MODEL, package, {"stage": "candidate", "demo": "degrading"},
                                                    {"deployment_env": env}).version
        self.say(f"registered version {v}: a model that fails under load (REACTOR_SCORE_FAULT=error-after:40)")
        r = self.wait_state(v, ("awaiting_approval", "qa_failed"))
        self.say(f"release {r.id}: passed QA -> {r.state}")
        self.approve(v, "looks fine in QA")
        r = self.wait_state(v, ("rolled_back", "promoted"), timeout=120)
        self.say(f"release {r.id}: {r.state.upper()} automatically", r.reason[:150])
        self.say("production traffic after the rollback", self.traffic_split())
        self.show(v)

    def traffic_split(self) -> str:
        ep = self.services.serving.get_endpoint(PROD)
        return " / ".join(f"{name} {share}%" for name, share in sorted(ep.traffic.items()))

    def _package(self, name: str, change: Callable[[Path], None]) -> Path:
        dest = self.workdir / name
        if dest.exists():
            shutil.rmtree(dest)
        self.services.platform.model_files(MODEL, "1", dest)
        change(dest)
        return dest

    @staticmethod
    def _break_model(package: Path) -> None:
        import joblib
        import numpy as np
        from sklearn.linear_model import Ridge

        rng = np.random.default_rng(7)
        joblib.dump(Ridge().fit(rng.normal(size=(50, 9)), rng.normal(size=50)), package / "model.pkl")

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
            counts = ", ".join(f"HTTP {k or 'none'}: {v}" for k, v in sorted(self.traffic.statuses.items()))
            self.say("production traffic stopped", counts)
