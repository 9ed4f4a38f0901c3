"""The drift half of ``make demo``: production traffic drawn from a shifted distribution, the drift
check flags it, its signal (Azure ML's model-monitoring ``RunStatusChanged``) comes back through
the host's subscriptions, retraining starts for reason drift, and the new version is released.

Production inputs reach the check as they would in Azure: the production endpoint's router collects
every request it answers (``embedded.serving_collect``) and the check reads the collected data back
(``core.feedback.collected.CollectedInputs``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedded.demo_release import PROD, Traffic

MODEL, MONITOR = "diabetes", "diabetes-drift"
# A short window and a check every second keep the added demo time small.
DRIFT_SETTINGS = {
    "REACTOR_DRIFT_CHECK": "local",
    "REACTOR_DRIFT_CHECK_SCHEDULE": "*/1 * * * * *",
    # collected requests reach storage within a second, before the check reads their window (delay 3 s)
    "REACTOR_LOCAL_COLLECT_FLUSH_SECONDS": "1",
    "REACTOR_DRIFT_MONITORS": json.dumps({MODEL: {
        "monitor": MONITOR, "signal": "model-monitoring", "window_seconds": 4, "delay_seconds": 3,
        "min_samples": 40, "psi_threshold": 0.2, "ks_p_value": 0.05, "min_features": 1}}),
}
Say = Callable[..., None]


class DriftDemo:
    def __init__(self, services: Any, releases: Any, blobs: Any, say: Say,
                 wait_for: Callable[..., Any]) -> None:
        self.services, self.releases, self.blobs, self.say, self.wait_for = services, releases, blobs, say, wait_for
        self.workdir: Path = releases.workdir

    def audit(self, action: str, **where: str) -> list[dict[str, Any]]:
        return [r for r in self.services.ledger.audit_records(where or None) if r["action"] == action]

    def run(self) -> None:
        self._quarantine_poor_data()
        if self.releases.traffic is not None:
            self.releases.traffic.stop()  # from now on production sees the shifted population only
        endpoint = self.services.serving.get_endpoint(PROD)
        traffic = Traffic(endpoint.scoring_uri, self._shifted_rows()).start()
        self.say("production traffic SHIFTED", "bmi, bp and s5 one standard deviation up, ~25 requests/s")
        try:
            self._detect()
            version = self._retrain()
            self._release(version)
        finally:
            traffic.stop()
            self.say("shifted traffic stopped", ", ".join(f"HTTP {k or 'none'}: {v}"
                                                         for k, v in sorted(traffic.statuses.items())))

    def _shifted_rows(self) -> Path:
        """Rows of the shifted population (bmi, bp and s5 one standard deviation up), as the traffic reads them."""
        from ml.dataset import write_csv
        from ml.sample_data import make_batch

        return write_csv(self.workdir / "shifted" / "traffic.csv", *make_batch(200, seed=31, kind="shifted"))

    def _quarantine_poor_data(self) -> None:
        """The earlier poor batch (shuffled labels) would make any challenger lose; take it out first."""
        container = self.blobs.get_container_client("data")
        for blob in container.list_blobs(name_starts_with="diabetes/"):
            if "-poor-" in blob.name:
                container.delete_blob(blob.name)
                self.say("removed the poor batch from the training data", f"data/{blob.name}")

    def _detect(self) -> None:
        [checked] = self.wait_for("the drift check to flag the shift", lambda: [
            r for r in self.audit("drift.checked", model=MODEL) if r["detail"].get("action") == "drifted"][:1],
            timeout=60)
        d = checked["detail"]
        self.say(f"drift check: {MODEL}:{checked['version']} DRIFTED", f"{d['reason']} ({d['samples']} inputs "
                 f"in a {d['window'].split('/')[0][11:19]} window)")
        for name, f in d["features"].items():
            if f["breached"]:
                self.say(f"    {name:<4} PSI {f['psi']:.2f} (> {d['thresholds']['psi']})",
                         f"KS D {f['ks']:.2f}, p {f['p']:.1e}")
        [signal] = self.wait_for("the drift signal", lambda: self.audit("drift.signalled", model=MODEL), timeout=30)
        [arrived] = self.wait_for("the signal at the host", lambda: [
            r for r in self.audit("event.processed", function="on_run_status_changed")
            if r["event_id"] == signal["event_id"]], timeout=30)
        self.say("drift signal RunStatusChanged (run tag azureml_modelmonitor_threshold_breached) arrived at "
                 "on_run_status_changed", f"-> {arrived['detail'].get('action')} "
                 f"(reason {arrived['detail'].get('reason')})")

    def _retrain(self) -> str:
        [started] = self.wait_for("the drift retrain", lambda: [
            r for r in self.audit("retrain.started") if r["detail"].get("reason") == "drift"], timeout=30)
        self.say("retraining started for reason drift", started["detail"]["job"])
        [done] = self.wait_for("the drift retrain to finish", lambda: [
            r for r in self.audit("retrain.completed") if r["detail"].get("job") == started["detail"]["job"]],
            timeout=120)
        version = str(done["detail"].get("reactor_registered_version", ""))
        if not version:
            raise RuntimeError(f"the drift retrain registered nothing: {done['detail'].get('reactor_verdict_reason')}")
        self.say(f"drift retrain completed: registered version {version}", done["detail"].get("reactor_verdict_reason"))
        return version

    def _release(self, version: str) -> None:
        r = self.releases.wait_state(version, ("awaiting_approval", "qa_failed"))
        self.say(f"release {r.id}: deployed to QA and smoke-tested -> {r.state}")
        self.releases.approve(version, "retrained after drift")
        t0 = time.monotonic()
        r = self.releases.wait_state(version, ("promoted", "rolled_back"), timeout=120)
        self.say(f"release {r.id}: {r.state.upper()} under shifted traffic", self.releases.traffic_split())
        if r.state != "promoted":
            raise RuntimeError(f"release {r.id} was {r.state}: {r.reason}")
        self.say(f"canary to 100% took {time.monotonic() - t0:.1f} s")


def drift_and_retrain(services: Any, releases: Any, blobs: Any, say: Say, wait_for: Callable[..., Any]) -> None:
    DriftDemo(services, releases, blobs, say, wait_for).run()
