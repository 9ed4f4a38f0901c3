"""An ML platform outage: how long the work that arrived during it takes to drain once it ends.

    python bench/outage.py [--outage 20]

The local stack of tests/integration/test_ml_outage.py (a host process with its timers every
second, the endpoints' control plane, Azurite, production traffic). Each round a new version's
ModelRegistered and a new data file arrive; the data makes a retraining job (which keeps the
champion), the version is released (QA, smoke test, auto-approval, canary 50 -> 100 %). First
with the platform up, then with it down (``local_outage``) from just before the arrivals for
``--outage`` seconds: refusing with 500 (``error``), then carrying requests out and answering past
the client's timeout (``timeout``). The figures are measured from the arrivals without an outage,
from the recovery with one; times are the platform's own records (the job row's creation, the
release's timeline), so polling adds nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.release.store import ACTIVE_STATES
from embedded.azurite import Azurite
from tests.integration.test_ml_outage import HANG, Outages, retrain_env, run_container
from tests.integration.test_release_flow import World


@dataclass
class Round:
    label: str
    to_submitted: float  # seconds from the arrivals (or the recovery) to the job row; < 0: accepted in the outage
    to_promoted: float
    release_retries: int
    retrain_retries: int
    refused: int
    jobs: int
    promotions: int


def _wait(what: str, probe: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


def one_round(o: Outages, label: str, mode: str, outage_s: float) -> Round:
    world = o.world
    version = o.register_held()
    started_before = len(o.audit("retrain.started"))
    retrain_before = len(o.audit("retrain.submit_failed")) + len(o.audit("retrain.reconcile_failed"))
    refused_before = o.failed_requests()
    if mode:
        o.start(mode, seconds=outage_s + 120)
    began = time.monotonic()
    since = datetime.now(UTC)  # the arrivals; with an outage, its end
    o.deliver_held()
    o.new_data()
    if mode:
        time.sleep(max(0.0, outage_s - (time.monotonic() - began)))
        since = datetime.now(UTC)  # the switch goes off within the request below
        o.end()
    _wait(f"release {version} to end", lambda: world.release(version).state not in ACTIVE_STATES)
    release = world.release(version)
    if release.state != "promoted":
        raise SystemExit(f"release {version} ended {release.state}: {release.reason}")
    _wait("the retraining job to finish", o.idle)
    job = next(j for j in o.jobs() if j["name"] == o.retrain_state()["started_job"])
    promoted_at = next(e["at"] for e in release.timeline if e["state"] == "promoted")
    return Round(label, (datetime.fromisoformat(job["created_at"]) - since).total_seconds(),
                 (datetime.fromisoformat(promoted_at) - since).total_seconds(),
                 len(o.audit("release.step_error", version)),
                 len(o.audit("retrain.submit_failed")) + len(o.audit("retrain.reconcile_failed")) - retrain_before,
                 o.failed_requests() - refused_before, len(o.audit("retrain.started")) - started_before,
                 len(o.audit("release.promoted", version)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the platform is down (default 20)")
    outage_s = parser.parse_args().outage
    azurite = Azurite.on_free_ports().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            container = run_container()
            world = World(azurite, Path(tmp), env=retrain_env(container))
            try:
                o = Outages(world, Path(tmp), container)
                first = world.register()
                _wait("version 1 in production", lambda: world.release(first).state == "promoted")
                rounds = [one_round(o, "no outage", "", 0), one_round(o, "500 outage", "error", outage_s),
                          one_round(o, "timeout outage", "timeout", outage_s)]
                dead = len(list(world.services.ledger.dead_letters()))
                violations, statuses = len(world.violations), dict(sorted(world.statuses.items()))
            finally:
                world.stop()
    finally:
        azurite.stop()
    base = rounds[0]
    print(f"ML platform outage of {outage_s:g} s (timeout outage: answers after {HANG:g} s, client timeout 10 s); "
          "host timers every 1 s, canary 50 -> 100 %, 3 s a step")
    print(f"  {'':<16}{'-> job submitted':>17}{'-> promoted':>13}{'vs no outage':>14}"
          f"{'retries: release':>18}{'retraining':>12}{'refused':>9}{'jobs':>6}{'promoted':>10}")
    for r in rounds:
        ratio = "" if r is base else f"{r.to_promoted / base.to_promoted:.2f}x"
        submitted = f"{r.to_submitted:.1f} s" if r.to_submitted >= 0 else "in outage"
        print(f"  {r.label:<16}{submitted:>17}{r.to_promoted:>11.1f} s{ratio:>14}{r.release_retries:>18}"
              f"{r.retrain_retries:>12}{r.refused:>9}{r.jobs:>6}{r.promotions:>10}")
    print("  (no outage: from the arrivals; with one: from the recovery, the drain time)")
    print(f"  dead letters {dead}, traffic naming a deployment not up {violations}, production requests {statuses}")
    if any(r.jobs != 1 or r.promotions != 1 for r in rounds) or dead or violations:
        raise SystemExit("work was lost or done twice")


if __name__ == "__main__":
    main()
