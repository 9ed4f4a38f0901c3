"""The drift signal in the schema Azure ML would send it, so the app's drift path cannot tell.

- ``model-monitoring`` (v2): ``RunStatusChanged``, run status Failed, with the run tag
  ``azureml_modelmonitor_threshold_breached`` whose text is what the monitoring components
  write ("The signal '<monitor>_data_drift' has failed due to one or more features violating
  metric thresholds..." and the violating features as JSON rows of group, metric_value,
  metric_name, threshold_value). An Event Grid advanced filter on that text matches it.
- ``data-drift`` (v1): ``DatasetDriftDetected`` with the monitor's ``DataDriftName``; its
  ``DriftCoefficient`` is the share of features that drifted (0 to 1).

The event id derives from the model, the monitor and the window, so a signal published twice
(at-least-once) is one event to the app's ledger.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from core.events import ML, MONITOR_BREACH_TAG
from core.feedback.drift import DriftReport
from core.feedback.drift_policy import DriftMonitor

_NAMESPACE = uuid.UUID("6b0f8f3e-1f8e-4a52-9d8e-6f2f4c1d7a90")
RUN_TYPE = "azureml.PipelineRun"


def signal_id(monitor: DriftMonitor, until: datetime) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{monitor.model}/{monitor.monitor}/{until.isoformat()}"))


def build_signal(monitor: DriftMonitor, report: DriftReport, *, topic: str, version: str, endpoint: str,
                 since: datetime, until: datetime, now: datetime) -> dict[str, Any]:
    if monitor.signal == "data-drift":
        event_type, subject, data = _dataset_drift(monitor, report, version, endpoint, since, until)
    else:
        event_type, subject, data = _run_status_changed(monitor, report, version, endpoint, since, until)
    return {"topic": topic, "subject": subject, "eventType": event_type,
            "eventTime": _iso(now), "id": signal_id(monitor, until), "data": data,
            "dataVersion": "", "metadataVersion": "1"}


def breach_text(monitor: DriftMonitor, report: DriftReport) -> str:
    rows = []
    for f in report.breached:
        rows.append(json.dumps({"group": f.name, "metric_value": round(f.psi, 6),
                                "metric_name": "populationStabilityIndex", "threshold_value": monitor.psi_threshold}))
        rows.append(json.dumps({"group": f.name, "metric_value": float(f"{f.ks_p_value:.6g}"),
                                "metric_name": "twoSampleKolmogorovSmirnovTest",
                                "threshold_value": monitor.ks_p_value}))
    return (f"The signal '{monitor.monitor}_data_drift' has failed due to one or more features violating metric "
            "thresholds.\nThe feature names and their corresponding computed metric values violating the threshold "
            f"are \n{rows}\n")


def _run_status_changed(monitor: DriftMonitor, report: DriftReport, version: str, endpoint: str,
                        since: datetime, until: datetime) -> tuple[str, str, dict[str, Any]]:
    experiment_id = str(uuid.uuid5(_NAMESPACE, f"experiment/{monitor.monitor}"))
    run_id = f"{monitor.monitor}-{until.strftime('%Y%m%d%H%M%S')}"
    data = {"experimentId": experiment_id, "experimentName": monitor.monitor, "runId": run_id,
            "runType": RUN_TYPE, "runTags": {MONITOR_BREACH_TAG: breach_text(monitor, report)},
            "runProperties": _properties(monitor, report, version, endpoint, since, until),
            "runStatus": "Failed"}
    return ML + "RunStatusChanged", f"experiments/{experiment_id}/runs/{run_id}", data


def _dataset_drift(monitor: DriftMonitor, report: DriftReport, version: str, endpoint: str,
                   since: datetime, until: datetime) -> tuple[str, str, dict[str, Any]]:
    drift_id = str(uuid.uuid5(_NAMESPACE, f"datadrift/{monitor.monitor}"))
    run_id = f"{drift_id}_{int(until.timestamp() * 1000)}"
    data = {"DataDriftId": drift_id, "DataDriftName": monitor.monitor, "RunId": run_id,
            "BaseDatasetId": str(uuid.uuid5(_NAMESPACE, f"baseline/{monitor.model}:{version}")),
            "TargetDatasetId": str(uuid.uuid5(_NAMESPACE, f"production/{endpoint}")),
            "DriftCoefficient": len(report.breached) / max(len(report.features), 1),
            "StartTime": since.isoformat(), "EndTime": until.isoformat()}
    return ML + "DatasetDriftDetected", f"datadrifts/{drift_id}/runs/{run_id}", data


def _properties(monitor: DriftMonitor, report: DriftReport, version: str, endpoint: str,
                since: datetime, until: datetime) -> dict[str, str]:
    return {"reactor_platform": "local", "reactor_model": f"{monitor.model}:{version}", "reactor_endpoint": endpoint,
            "reactor_window": f"{since.isoformat()}/{until.isoformat()}", "reactor_samples": str(report.samples)}


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")
