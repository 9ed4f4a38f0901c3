"""The Microsoft documentation samples (copied verbatim into tests/fixtures/payloads) and
variants of them: CloudEvents 1.0 form, other key casing, fresh ids."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "payloads"
ML_TOPIC = "/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}/providers/" \
           "Microsoft.MachineLearningServices/workspaces/{workspace-name}"

SAMPLES = {
    "BlobCreated": "Microsoft.Storage.BlobCreated.eventgrid.json",
    "ModelRegistered": "Microsoft.MachineLearningServices.ModelRegistered.eventgrid.json",
    "ModelDeployed": "Microsoft.MachineLearningServices.ModelDeployed.eventgrid.json",
    "RunCompleted": "Microsoft.MachineLearningServices.RunCompleted.eventgrid.json",
    "RunStatusChanged": "Microsoft.MachineLearningServices.RunStatusChanged.eventgrid.json",
    "DatasetDriftDetected": "Microsoft.MachineLearningServices.DatasetDriftDetected.eventgrid.json",
}

FUNCTION_OF = {
    "BlobCreated": "on_blob_created", "ModelRegistered": "on_model_registered",
    "ModelDeployed": "on_model_deployed", "RunCompleted": "on_run_status_changed",
    "RunStatusChanged": "on_run_status_changed", "DatasetDriftDetected": "on_drift_detected",
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def sample(kind: str, fresh_id: bool = True) -> dict[str, Any]:
    """One Event Grid schema sample event, with a fresh id unless told otherwise."""
    event: dict[str, Any] = copy.deepcopy(load(SAMPLES[kind])[0])
    if fresh_id:
        event["id"] = str(uuid.uuid4())
    return event


def to_cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event["id"], "source": event["topic"], "subject": event["subject"],
            "type": event["eventType"], "time": event["eventTime"], "data": copy.deepcopy(event["data"])}


def camel_data(event: dict[str, Any]) -> dict[str, Any]:
    """The same event as another producer writes it: lower camelCase data keys."""
    out = copy.deepcopy(event)
    out["data"] = {k[0].lower() + k[1:]: v for k, v in event["data"].items()}
    return out
