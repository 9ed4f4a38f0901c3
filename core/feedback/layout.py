"""Where collected inference data lives and what one record looks like: Azure ML's data collector (v2,
managed online endpoints) layout, so the same reader serves both the local endpoints and Azure.

    {container}/modelDataCollector/{endpoint}/{deployment}/{collection}/{yyyy}/{MM}/{dd}/{HH}/{file}.jsonl

``collection`` is ``model_inputs`` or ``model_outputs``; each line is one CloudEvents-like JSON record
(``specversion``, ``id``, ``source``, ``type`` ``azureml.inference.<collection>``, ``datacontenttype``,
``time``, ``data`` = the rows as DataFrame records, ``correlationid`` / ``xrequestid`` = the request id,
``modelversion``, ``collectdatatype``, ``agent``). The local collector adds the extension attributes
``modelname``, ``endpoint``, ``deployment``, ``latencyms`` and ``statuscode`` (lower-case letters and
digits only, as CloudEvents requires); a record from Azure simply lacks them and the reader takes the
endpoint and deployment from the path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

ROOT = "modelDataCollector"
INPUTS = "model_inputs"
OUTPUTS = "model_outputs"
COLLECTIONS = (INPUTS, OUTPUTS)
EVENT_TYPE = "azureml.inference.{collection}"
AGENT = "mlops-reactor-collector/1"
PREDICTION = "prediction"  # the column name of one output row


def deployment_prefix(endpoint: str, deployment: str, collection: str) -> str:
    return f"{ROOT}/{endpoint}/{deployment}/{collection}/"


def hour_prefix(endpoint: str, deployment: str, collection: str, hour: datetime) -> str:
    return f"{deployment_prefix(endpoint, deployment, collection)}{hour.astimezone(UTC):%Y/%m/%d/%H}/"


def hours(since: datetime, until: datetime) -> Iterator[datetime]:
    """Every hour folder that can hold a record timed in [since, until)."""
    hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < until:
        yield hour
        hour += timedelta(hours=1)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source(workspace: str, endpoint: str, deployment: str) -> str:
    """The record's ``source``: the deployment's resource id, as Azure's collector writes it."""
    return f"{workspace}/onlineEndpoints/{endpoint}/deployments/{deployment}"


def record(collection: str, *, record_id: str, request_id: str, when: datetime, workspace: str, endpoint: str,
           deployment: str, model: str, version: str, rows: list[Any], latency_ms: float, status: int,
           error: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "specversion": "1.0", "id": record_id, "source": source(workspace, endpoint, deployment),
        "type": EVENT_TYPE.format(collection=collection), "datacontenttype": "application/json",
        "time": iso(when), "data": rows, "correlationid": request_id, "xrequestid": request_id,
        "modelversion": version, "collectdatatype": "pandas.core.frame.DataFrame", "agent": AGENT,
        "modelname": model, "endpoint": endpoint, "deployment": deployment,
        "latencyms": round(latency_ms, 3), "statuscode": status}
    if error:
        out["error"] = error
    return out
