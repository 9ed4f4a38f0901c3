"""The feedback half of ``make demo``: production requests are collected, labels for some of them
arrive later as a file in the labels container, and the live RMSE of the production version follows.

The labels are what a business system would send back: for requests it made earlier (their ids came
back in the ``x-request-id`` header; here they are read from the collected data, which has the same
ids), the observed outcome, here the held-out targets of the rows the demo traffic sent. Three ids
nobody ever sent are mixed in: they are counted and audited, not an error.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.feedback.collected import read_inferences
from ml.dataset import FEATURES

MODEL, PROD = "diabetes", "diabetes-prod"
LABELLED = 100  # production requests labelled
UNKNOWN = ("never-sent-1", "never-sent-2", "never-sent-3")
Say = Callable[..., None]


class Feedback:
    def __init__(self, services: Any, blob_service: Any, say: Say, holdout: Path,
                 wait_for: Callable[..., Any]) -> None:
        self.services, self.blob_service, self.say, self.wait_for = services, blob_service, say, wait_for
        with holdout.open(newline="") as f:
            self._targets = {_key(r): float(r["y"]) for r in csv.DictReader(f)}

    def late_labels(self, version: str = "1", timeout: float = 60.0) -> dict[str, Any]:
        """Wait for collected production requests, label some, upload them, wait for the live quality."""
        settings = self.services.settings
        seen = self.wait_for(f"{LABELLED} collected production requests of {MODEL}:{version}",
                             lambda: self._collected(version) if len(self._collected(version)) >= LABELLED else None,
                             timeout)
        self.say(f"inference data collected from {PROD}", f"{len(seen)} requests of {MODEL}:{version} so far in "
                 f"{settings.collect_container}/modelDataCollector/{PROD}/.../model_inputs|model_outputs/yyyy/MM/dd/HH/")
        rows = [(i.request_id, self._targets[_key_of(i.inputs[0])]) for i in seen[:LABELLED]
                if _key_of(i.inputs[0]) in self._targets]
        body = io.StringIO()
        writer = csv.writer(body, lineterminator="\n")
        writer.writerow(["request_id", "observed"])
        writer.writerows([*rows, *((rid, 100.0) for rid in UNKNOWN)])
        name = f"{MODEL}/labels-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"
        container = self.blob_service.get_container_client(settings.labels_container)
        if not container.exists():
            container.create_container()
        container.upload_blob(name, body.getvalue().encode(), overwrite=True)
        self.say(f"labels arrived for {len(rows)} earlier production requests (+{len(UNKNOWN)} unknown ids)",
                 f"{settings.labels_container}/{name}")
        quality = self.wait_for("the live quality", lambda: self._quality(version, len(rows)), timeout)
        self.say(f"live quality of {MODEL}:{version}: RMSE {quality['rmse']:.2f}, MAE {quality['mae']:.2f} over "
                 f"{quality['n']} labelled predictions", f"(window {settings.live_quality_window_hours} h)")
        # the join's audit record is written just after its rows: the quality can be seen a moment before it
        joined = self.wait_for("the join's audit record", lambda: [
            r for r in self.services.ledger.audit_records() if r["action"] == "labels.joined"] or None, timeout)
        unknown = joined[-1]["detail"]["unknown"]
        self.say(f"{unknown} label(s) for unknown request ids recorded in the audit trail, not an error")
        return quality

    def _collected(self, version: str) -> list[Any]:
        now = datetime.now(UTC)
        return [i for i in read_inferences(self.services.blobs, self.services.settings.collect_container,
                                           endpoint=PROD, since=now - timedelta(hours=1), until=now,
                                           features=FEATURES)
                if i.model == MODEL and i.version == version and len(i.inputs) == 1]

    def _quality(self, version: str, expected: int) -> dict[str, Any] | None:
        q = self.services.quality.live_quality(MODEL, version)
        return q if q["n"] >= expected else None


def _key(row: dict[str, str]) -> tuple[float, ...]:
    """A held-out row's features in the model's order, as the collected data is read back (as floats)."""
    return tuple(float(row[name]) for name in FEATURES)


def _key_of(features: list[float]) -> tuple[float, ...]:
    return tuple(features)


def live_quality_table(status: str) -> str:
    """The LIVE RMSE table of ``reactor status`` output: from its header line to the next blank line."""
    lines = status.splitlines()
    start = next((i for i, line in enumerate(lines) if "LIVE RMSE" in line), None)
    if start is None:
        return "(reactor status shows no live quality)"
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n" + "\n".join(lines[start:end])
