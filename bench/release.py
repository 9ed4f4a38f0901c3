"""Release wall time on the local platform: ModelRegistered -> 100 % production traffic.

    python bench/release.py

A real host process (its release timer every second), the local endpoints' control plane, real
``ml.serve`` deployments and production traffic. Version 1 goes straight to 100 % (nothing to
canary against); version 2 goes through every canary step. Auto-approval, so the figure is the
machine's, not a person's.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedded.azurite import Azurite
from tests.integration import test_release_flow as flow

# Demo step timings: 10 -> 50 -> 100 %, 5 s per step, 10 requests to judge a step.
flow.POLICY["diabetes"]["canary"] = {"steps": [10, 50, 100], "step_seconds": 5, "min_requests": 10,
                                     "max_error_rate": 0.05, "max_p95_ms": 500}


def _until_promoted(world: flow.World, version: str, started: float) -> float:
    while time.monotonic() - started < 300:
        state = world.release(version).state
        if state == "promoted":
            return time.monotonic() - started
        if state in ("qa_failed", "rolled_back", "expired", "rejected", "superseded"):
            raise SystemExit(f"release {version} ended {state}: {world.release(version).reason}")
        time.sleep(0.1)
    raise SystemExit(f"release {version} not promoted within 300 s")


def main() -> None:
    azurite = Azurite.on_free_ports().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            world = flow.World(azurite, Path(tmp))
            try:
                figures = []
                for label in ("v1 (first: straight to 100 %)", "v2 (canary 10 -> 50 -> 100 %)"):
                    started = time.monotonic()
                    version = world.register()
                    figures.append((label, _until_promoted(world, version, started)))
            finally:
                world.stop()
    finally:
        azurite.stop()
    print(f"release: ModelRegistered -> 100 % production traffic, auto-approval, policy "
          f"{json.dumps(flow.POLICY['diabetes']['canary'])}")
    for label, seconds in figures:
        print(f"  {label:<34} {seconds:6.1f} s")
    steps_floor = 3 * 5
    print(f"  v2 time spent outside the canary's own {steps_floor} s of steps: {figures[1][1] - steps_floor:.1f} s")


if __name__ == "__main__":
    main()
