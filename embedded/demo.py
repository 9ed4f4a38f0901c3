"""``make demo``: the loop on one machine, narrated, then stopped.

Starts Azurite (in memory), the local Functions host, the blob watcher and the local ML
platform; then:
  1. uploads three CSV files within one batching window -> one retraining job -> model
     version 1 registered -> ModelRegistered arrives at ``on_model_registered``;
  2. releases version 1: QA deployment, smoke test, approval through ``reactor approve``,
     production (with production traffic flowing from then on);
  2b. production requests are collected (Azure ML data collector layout); labels for some of
     them arrive as a file -> the live RMSE and MAE of version 1 (shown in ``reactor status``);
  3. delivers an event again (Event Grid is at-least-once) -> recorded once;
  4. uploads a poor-quality batch -> the challenger loses -> the champion is kept;
  5. registers a broken version -> it fails its QA smoke test and never reaches production;
  6. registers a version that fails under load -> it passes QA, is approved, and its canary
     health check rolls it back automatically;
  6b. injects errors into production traffic -> an alert rule on the endpoint's 5xx metric (local
     metrics) pends, fires, notifies each receiver once, and resolves when the errors stop
     (``embedded.demo_alerts``);
  7. production traffic shifts -> the drift check flags it -> its model-monitoring signal comes back
     through the host -> retraining starts for reason drift -> the new version is released;
  8. an Azure Monitor alert (common alert schema) fires on the endpoint -> one grouped
     notification reaches the local Teams, Slack and PagerDuty receivers through the outbox;
     the alert resolves -> the resolve notifications follow;
and prints the timeline from the audit trail, ``reactor status`` and where the dashboard is.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import requests

from embedded import demo_events
from embedded.demo_alerts import ALERT_RULES, MetricAlert
from embedded.demo_drift import DRIFT_SETTINGS, drift_and_retrain
from embedded.demo_evidence import collect as collect_evidence
from embedded.demo_feedback import Feedback, live_quality_table
from embedded.demo_release import RELEASE_POLICY, Releases

T0 = time.monotonic()
MODEL = "diabetes"
DEMO_SETTINGS = {
    "REACTOR_RETRAIN_POLICIES": json.dumps({MODEL: {
        "container": "data", "prefix": "diabetes/", "test_container": "data", "test_blob": "holdout/diabetes.csv",
        "window_seconds": 8, "min_new_files": 1, "cooldown_seconds": 0, "metric": "rmse", "min_improvement": 0.0,
        "monitors": ["diabetes-drift"]}}),
    "REACTOR_RETRAIN_TICK_SCHEDULE": "*/1 * * * * *",
    "REACTOR_RELEASE_POLICIES": json.dumps(RELEASE_POLICY),
    "REACTOR_RELEASE_TICK_SCHEDULE": "*/1 * * * * *",
    "REACTOR_ML_PLATFORM": "local",
    "REACTOR_LOG_LEVEL": "WARNING",
    "REACTOR_ALERT_RULES": json.dumps(ALERT_RULES),
    "REACTOR_ALERTS_TICK_SCHEDULE": "*/1 * * * * *",
    "REACTOR_OUTBOX_DRAIN_SCHEDULE": "*/1 * * * * *",
    "REACTOR_NOTIFY_ROUTES": json.dumps({"default": "ml-teams", "receivers": {
        "ml-teams": {"type": "teams"}, "ml-slack": {"type": "slack"}, "oncall": {"type": "pagerduty"}},
        "routes": [{"receiver": "oncall", "severity": ["critical", "error"], "continue": True},
                   {"receiver": "ml-slack", "continue": True}, {"receiver": "ml-teams"}]}),
    **DRIFT_SETTINGS,
}
RECEIVER_PORT = 8099
UPLOAD_AT: list[float] = []  # when the first training data landed (seconds since start)


def say(step: str, detail: str = "") -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {step}{'  ' + detail if detail else ''}", flush=True)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"demo: gave up waiting for {what}")


class Demo:
    def __init__(self, services: Any, blobs: Any, stack: Any, workdir: Path) -> None:
        self.services, self.blobs, self.stack, self.workdir = services, blobs, stack, workdir

    def audit(self, action: str, **where: str) -> list[dict[str, Any]]:
        return [r for r in self.services.ledger.audit_records(where or None) if r["action"] == action]

    def upload(self, paths: list[Path], prefix: str) -> None:
        if not UPLOAD_AT:
            UPLOAD_AT.append(time.monotonic() - T0)
        for path in paths:
            self.blobs.get_blob_client("data", f"{prefix}{path.name}").upload_blob(path.read_bytes(), overwrite=True)
            say("uploaded", f"data/{prefix}{path.name} ({path.stat().st_size} bytes)")

    def first_model(self) -> dict[str, Any]:
        from ml.sample_data import write_batches

        self.upload(write_batches(self.workdir / "good", files=3, rows=150, seed=11), "diabetes/2026-11-22/")
        arrived = wait_for("three BlobCreated events at on_blob_created", lambda: _at_least([
            r for r in self.audit("event.processed", function="on_blob_created")
            if r["detail"].get("action") == "coalesced"], 3))
        say(f"{len(arrived)} BlobCreated events arrived at on_blob_created and joined one batching window")
        [started] = wait_for("the window to close", lambda: self.audit("retrain.started"))
        say("window closed: ONE retraining job started", f"{started['detail']['job']} "
            f"({started['detail']['files']} files, reason {started['detail']['reason']})")
        [done] = wait_for("the job to finish", lambda: self.audit("retrain.completed"))
        say("job completed: challenger passed evaluation", f"registered version "
            f"{done['detail'].get('reactor_registered_version')}")
        [registered] = wait_for("ModelRegistered at on_model_registered", lambda: [
            r for r in self.audit("event.processed", function="on_model_registered") if r["version"] == "1"])
        say("ModelRegistered arrived at on_model_registered", f"{registered['model']}:{registered['version']}, "
            f"correlation {registered['correlation_id'][:12]} = the retrain decision")
        return started

    def loop_figures(self, started: dict[str, Any], promoted_at: float) -> dict[str, float]:
        """Where the first loop's time went: each stage's end in seconds after the first BlobCreated
        was processed (audit times, wall clock), and the whole loop from the first upload."""
        first = min(_seconds(r["at"]) for r in self.audit("event.processed", function="on_blob_created"))
        [done] = self.audit("retrain.completed")
        [registered] = [r for r in self.audit("event.processed", function="on_model_registered")
                        if r["version"] == "1"]
        return {"job_started": round(_seconds(started["at"]) - first, 2),
                "job_completed": round(_seconds(done["at"]) - first, 2),
                "model_registered_arrived": round(_seconds(registered["at"]) - first, 2),
                "upload_to_100_percent": round(promoted_at - UPLOAD_AT[0], 2)}

    def redelivery(self) -> None:
        from embedded.blob_events import BlobWatcher

        before = len(self.audit("event.duplicate"))
        BlobWatcher(self.blobs, self.stack.eventgrid.publish).poll()  # a fresh watcher: same ids again
        wait_for("the duplicates", lambda: len(self.audit("event.duplicate")) > before)
        say("redelivered every blob event (at-least-once): all skipped as duplicates, nothing retrained")

    def poor_batch(self) -> None:
        from ml.sample_data import write_batches

        self.upload(write_batches(self.workdir / "poor", files=1, rows=900, seed=12, kind="poor"),
                    "diabetes/2026-11-23/")
        done = wait_for("the second job", lambda: self.audit("retrain.completed")[1:])
        kept = done[0]["detail"].get("reactor_champion_kept") == "true"
        say("second job completed: challenger LOST, champion kept" if kept else "second job completed",
            done[0]["detail"].get("reactor_verdict_reason", ""))

    def alert_round_trip(self, receiver: Any) -> None:
        alert = _common_alert("Fired")
        key = os.environ["LOCAL_FUNCTION_KEYS"].split(",")[0].partition(":")[2]
        url = f"{self.stack.url}/api/alerts/azure-monitor"
        say("Azure Monitor posts a Fired alert (common alert schema)", "p95 latency > 500 ms on diabetes-prod")
        before = len(receiver.received)
        requests.post(url, json=alert, headers={"x-functions-key": key}, timeout=30).raise_for_status()
        wait_for("the notifications", lambda: _mentioning(receiver.received[before:], "diabetes-p95-latency", 3),
                 timeout=60)
        kinds = sorted({r.kind for r in receiver.received[before:]})
        say(f"one grouped notification per receiver arrived: {', '.join(kinds)}")
        before = len(receiver.received)
        requests.post(url, json=_common_alert("Resolved"), headers={"x-functions-key": key},
                      timeout=30).raise_for_status()
        wait_for("the resolves", lambda: len(receiver.received) >= before + 3, timeout=60)
        say("the alert resolved: each receiver got the resolve (PagerDuty by the same dedup_key)")

    def timeline(self) -> None:
        print("\ntimeline (audit trail):")
        start = None
        for r in self.services.ledger.audit_records():
            if r["action"] in ("event.duplicate", "event.in_flight"):
                continue
            at = _seconds(r["at"])
            start = start if start is not None else at
            d = r["detail"]
            what = r["function"] or r["model"]
            kind = r["event_type"].rsplit(".", 1)[-1]
            extra = " ".join(str(x) for x in (kind, d.get("action"), d.get("job") or d.get("reason")) if x)
            print(f"  +{at - start:6.2f}s  {r['action']:<18} {what:<22} {r['version'] or '':>3}  {extra}")


def _common_alert(condition: str) -> dict[str, Any]:
    """An Azure Monitor metric alert in the common alert schema, as an action group posts it."""
    return {"schemaId": "azureMonitorCommonAlertSchema", "data": {
        "essentials": {"alertId": "/subscriptions/0/providers/Microsoft.AlertsManagement/alerts/demo-1",
                       "alertRule": "diabetes-p95-latency", "severity": "Sev1", "signalType": "Metric",
                       "monitorCondition": condition, "monitoringService": "Platform",
                       "alertTargetIDs": ["/subscriptions/0/resourceGroups/ml/providers/"
                                          "Microsoft.MachineLearningServices/workspaces/w/onlineEndpoints/diabetes-prod"],
                       "configurationItems": ["diabetes-prod"], "originAlertId": "demo-1",
                       "firedDateTime": "2026-11-22T10:00:00Z", "description": "p95 latency above bound",
                       "essentialsVersion": "1.0", "alertContextVersion": "1.0",
                       **({"resolvedDateTime": "2026-11-22T10:05:00Z"} if condition == "Resolved" else {})},
        "alertContext": {"properties": None, "conditionType": "SingleResourceMultipleMetricCriteria",
                         "condition": {"windowSize": "PT5M", "allOf": [{
                             "metricName": "RequestLatency_P95", "metricNamespace": "Microsoft.MachineLearningServices/"
                             "workspaces/onlineEndpoints", "operator": "GreaterThan", "threshold": "500",
                             "timeAggregation": "Average", "dimensions": [], "metricValue": 812.0}]}},
        "customProperties": {"model": MODEL, "endpoint": "diabetes-prod", "team": "ml"}}}


def _mentioning(received: list[Any], text: str, n: int) -> bool:
    """At least ``n`` received notifications whose payload names ``text`` (the alert rule)."""
    return sum(1 for r in received if text in json.dumps(r.body, default=str)) >= n


def _at_least(items: list[Any], n: int) -> list[Any]:
    return items if len(items) >= n else []


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def run(loop_only: bool = False) -> None:
    from embedded.receiver import LocalReceiver

    receiver = LocalReceiver(port=int(os.environ.get("REACTOR_DEMO_RECEIVER_PORT", RECEIVER_PORT)),
                             echo=lambda line: say("  receiver:", line)).start()
    secrets = {"REACTOR_NOTIFY_SECRET_ML_TEAMS": f"{receiver.url}/teams/demo-webhook",
               "REACTOR_NOTIFY_SECRET_ML_SLACK": f"{receiver.url}/slack/demo-webhook",
               "REACTOR_NOTIFY_SECRET_ONCALL": "demo-routing-key"}
    routes = json.loads(DEMO_SETTINGS["REACTOR_NOTIFY_ROUTES"])
    routes["receivers"]["oncall"]["url"] = f"{receiver.url}/pagerduty/v2/enqueue"
    events = demo_events.Subscriber().start()  # our own events: the local topic delivers them there
    secrets.update(events.settings())
    for key, value in {**DEMO_SETTINGS, **secrets, "REACTOR_NOTIFY_ROUTES": json.dumps(routes)}.items():
        os.environ.setdefault(key, value)
    try:
        _run_stack(receiver, events, loop_only)
    finally:
        receiver.stop()
        events.stop()


def _run_stack(receiver: Any, events: demo_events.Subscriber, loop_only: bool = False) -> None:
    from azure.storage.blob import BlobServiceClient

    from core.bootstrap import build
    from core.settings import Settings
    from embedded.stack import Stack
    from ml.sample_data import write_holdout

    stack = Stack(port=int(os.environ.get("REACTOR_DEMO_PORT", "7072")), azurite_mode="memory")
    say("starting Azurite (in memory), the local Functions host, the blob watcher and the local ML platform")
    stack.start()
    try:
        say("host ready", stack.url)
        services = build(Settings.from_env(os.environ))
        blobs = BlobServiceClient.from_connection_string(os.environ["REACTOR_STORAGE_CONNECTION"])
        blobs.create_container("data")
        with TemporaryDirectory() as tmp:
            holdout = write_holdout(Path(tmp) / "holdout")
            blobs.get_blob_client("data", "holdout/diabetes.csv").upload_blob(holdout.read_bytes())
            say("uploaded the fixed held-out set", "data/holdout/diabetes.csv (not training data)")
            demo = Demo(services, blobs, stack, Path(tmp))
            releases = Releases(services, stack.url, say, Path(tmp))
            try:
                started = demo.first_model()
                loop = time.monotonic() - T0
                took = releases.first(holdout)
                say(f"data upload to 100% production traffic: {loop + took - UPLOAD_AT[0]:.1f} s",
                    f"(release alone {took:.1f} s)")
                if loop_only:  # bench/loop.py: the figure and where its time went, then stop
                    print("LOOP " + json.dumps(demo.loop_figures(started, loop + took)), flush=True)
                    return
                events.show_promoted(say)
                Feedback(services, blobs, say, holdout, wait_for).late_labels("1")
                say("$ reactor status   (its live quality table)", live_quality_table(releases.reactor("status")))
                demo.redelivery()
                demo.poor_batch()
                releases.broken()
                releases.degrading()
                MetricAlert(services, receiver, say, wait_for).run()
                drift_and_retrain(services, releases, blobs, say, wait_for)
            finally:
                releases.stop()
            demo.alert_round_trip(receiver)
            demo.timeline()
            collect_evidence(stack.url, services, receiver)
            print("\n$ reactor status")
            print(releases.reactor("status"))
            say("dashboard (while the stack runs, e.g. under make dev)",
                f"{stack.url}/api/dashboard?code=<function key>")
    finally:
        stack.stop()
        say("stopped the host, the endpoints, the platform and Azurite")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m embedded.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--loop", action="store_true",
                        help="stop after the first loop (data upload -> 100%% production) and print its figures")
    args = parser.parse_args(argv)
    try:
        run(loop_only=args.loop)
    except (TimeoutError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
