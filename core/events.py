"""Typed, frozen events parsed from Event Grid schema or CloudEvents 1.0.

``parse_event`` takes one decoded JSON object in either schema and returns one of the
event classes below, or raises ``EventValidationError`` naming the field and the reason.
``split_batch`` turns a delivery body (one object or an array) into its items.

Real producers differ from the documentation samples: ``data`` keys arrive as
``ModelName`` or ``modelName``, ``ModelVersion`` as 20 or "3", ``RunTags`` or ``runTags``.
Data keys are therefore looked up case-insensitively and versions normalised to text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from core.errors import EventValidationError

Schema = Literal["eventgrid", "cloudevents"]

STORAGE = "Microsoft.Storage."
ML = "Microsoft.MachineLearningServices."
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
MONITOR_BREACH_TAG = "azureml_modelmonitor_threshold_breached"
MAX_BATCH = 5000


@dataclass(frozen=True)
class Event:
    """Envelope fields shared by every event, whichever schema it came in."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    schema: Schema

    TYPE: ClassVar[str] = ""

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]

    def summary(self) -> dict[str, str]:
        """Fields worth logging and auditing: never the payload itself."""
        return {"event_id": self.id, "event_type": self.type, "subject": self.subject}


@dataclass(frozen=True)
class BlobCreated(Event):
    TYPE: ClassVar[str] = "Microsoft.Storage.BlobCreated"
    api: str = ""
    url: str = ""
    etag: str = ""
    content_type: str = ""
    content_length: int = 0
    blob_type: str = ""
    sequencer: str = ""

    @property
    def container(self) -> str:
        return _subject_part(self.subject, "containers")

    @property
    def blob_name(self) -> str:
        _, _, name = self.subject.partition("/blobs/")
        return name


@dataclass(frozen=True)
class ModelRegistered(Event):
    TYPE: ClassVar[str] = ML + "ModelRegistered"
    model_name: str = ""
    model_version: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        return {**super().summary(), "model": self.model_name, "version": self.model_version}


@dataclass(frozen=True)
class ModelDeployed(Event):
    TYPE: ClassVar[str] = ML + "ModelDeployed"
    service_name: str = ""
    compute_type: str = ""
    model_ids: tuple[tuple[str, str], ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        return {**super().summary(), "endpoint": self.service_name}


@dataclass(frozen=True)
class RunEvent(Event):
    experiment_id: str = ""
    experiment_name: str = ""
    run_id: str = ""
    run_type: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        return {**super().summary(), "run_id": self.run_id}


@dataclass(frozen=True)
class RunCompleted(RunEvent):
    TYPE: ClassVar[str] = ML + "RunCompleted"


@dataclass(frozen=True)
class RunStatusChanged(RunEvent):
    TYPE: ClassVar[str] = ML + "RunStatusChanged"
    run_status: str = ""

    @property
    def failed(self) -> bool:
        return self.run_status.lower() in ("failed", "canceled", "cancelled")

    @property
    def is_monitor_breach(self) -> bool:
        """Model monitoring (v2) signals a threshold breach through this run tag."""
        return MONITOR_BREACH_TAG in {k.lower() for k in self.tags}


@dataclass(frozen=True)
class DatasetDriftDetected(Event):
    TYPE: ClassVar[str] = ML + "DatasetDriftDetected"
    drift_id: str = ""
    drift_name: str = ""
    run_id: str = ""
    base_dataset_id: str = ""
    target_dataset_id: str = ""
    drift_coefficient: float = 0.0
    start_time: str = ""
    end_time: str = ""


EVENT_CLASSES: dict[str, type[Event]] = {
    cls.TYPE.lower(): cls
    for cls in (BlobCreated, ModelRegistered, ModelDeployed, RunCompleted, RunStatusChanged,
                DatasetDriftDetected)
}


def split_batch(body: Any) -> list[Any]:
    """A delivery is one event object or an array of them (at most 5,000)."""
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_BATCH:
        raise EventValidationError("body", f"a batch holds at most {MAX_BATCH} events, got {len(items)}")
    return items


def detect_schema(raw: Mapping[str, Any]) -> Schema:
    return "cloudevents" if "specversion" in raw else "eventgrid"


def parse_event(raw: Any) -> Event:
    """Parse one event in either schema into its typed class."""
    if not isinstance(raw, Mapping):
        raise EventValidationError("event", f"must be a JSON object, got {_kind(raw)}")
    env = _envelope(raw)
    cls = EVENT_CLASSES.get(env["type"].lower())
    if cls is None:
        raise EventValidationError("type", f"unknown event type {env['type']!r}")
    data = raw.get("data")
    if not isinstance(data, Mapping):
        raise EventValidationError("data", f"must be a JSON object, got {_kind(data)}")
    fields = _DataReader(data)
    return _DATA_PARSERS[cls](env, fields)


def _envelope(raw: Mapping[str, Any]) -> dict[str, Any]:
    schema = detect_schema(raw)
    if schema == "cloudevents":
        if raw.get("specversion") != "1.0":
            raise EventValidationError("specversion", f"must be '1.0', got {raw.get('specversion')!r}")
        names = {"type": "type", "source": "source", "time": "time"}
    else:
        names = {"type": "eventType", "source": "topic", "time": "eventTime"}
    env: dict[str, Any] = {"schema": schema}
    env["id"] = _required_text(raw, "id")
    env["type"] = _required_text(raw, names["type"])
    env["source"] = _required_text(raw, names["source"])
    env["subject"] = _optional_text(raw, "subject")
    env["time"] = _timestamp(raw, names["time"])
    return env


def _required_text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None or value == "":
        raise EventValidationError(key, "is required")
    if not isinstance(value, str):
        raise EventValidationError(key, f"must be a string, got {_kind(value)}")
    if len(value) > 1024:
        raise EventValidationError(key, f"is {len(value)} characters long, at most 1024 allowed")
    return value


def _optional_text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventValidationError(key, f"must be a string, got {_kind(value)}")
    return value


def _timestamp(raw: Mapping[str, Any], key: str) -> datetime:
    text = _required_text(raw, key)
    try:
        parsed = _parse_iso(text)
    except ValueError:
        raise EventValidationError(key, f"is not an RFC 3339 timestamp: {text[:64]!r}") from None
    return parsed


def _parse_iso(text: str) -> datetime:
    # Event Grid writes 7 fractional digits (.4556811Z); fromisoformat takes at most 6.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:min(digits, 6)] + rest[digits:]
        text = f"{head}.{rest}"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return parsed


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _subject_part(subject: str, name: str) -> str:
    parts = subject.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part == name:
            return parts[i + 1]
    return ""


class _DataReader:
    """Reads ``data`` keys case-insensitively and names the field in every error."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self._folded = {str(k).lower(): k for k in data}

    def get(self, key: str) -> Any:
        real = self._folded.get(key.lower())
        return None if real is None else self._data[real]

    def text(self, key: str, required: bool = True) -> str:
        value = self.get(key)
        if value is None or value == "":
            if required:
                raise EventValidationError(f"data.{key}", "is required")
            return ""
        if not isinstance(value, str):
            raise EventValidationError(f"data.{key}", f"must be a string, got {_kind(value)}")
        return value

    def version(self, key: str) -> str:
        value = self.get(key)
        if isinstance(value, bool) or value is None:
            raise EventValidationError(f"data.{key}", f"must be a number or a string, got {_kind(value)}")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise EventValidationError(f"data.{key}", f"must be an integer or a non-empty string, got {_kind(value)}")

    def integer(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EventValidationError(f"data.{key}", f"must be a non-negative integer, got {_kind(value)}")
        return value

    def number(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EventValidationError(f"data.{key}", f"must be a number, got {_kind(value)}")
        return float(value)

    def tags(self, key: str) -> Mapping[str, str]:
        value = self.get(key)
        if value is None:
            return MappingProxyType({})
        if isinstance(value, str):  # some producers send tags as a JSON string
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise EventValidationError(f"data.{key}", "is a string that is not a JSON object") from None
        if not isinstance(value, Mapping):
            raise EventValidationError(f"data.{key}", f"must be an object, got {_kind(value)}")
        return MappingProxyType({str(k): "" if v is None else str(v) for k, v in value.items()})


def _blob_created(env: dict[str, Any], d: _DataReader) -> Event:
    return BlobCreated(**env, api=d.text("api"), url=d.text("url"), etag=d.text("eTag", False),
                       content_type=d.text("contentType", False),
                       content_length=d.integer("contentLength"),
                       blob_type=d.text("blobType", False), sequencer=d.text("sequencer", False))


def _model_registered(env: dict[str, Any], d: _DataReader) -> Event:
    return ModelRegistered(**env, model_name=d.text("ModelName"), model_version=d.version("ModelVersion"),
                           tags=d.tags("ModelTags"), properties=d.tags("ModelProperties"))


def _model_deployed(env: dict[str, Any], d: _DataReader) -> Event:
    return ModelDeployed(**env, service_name=d.text("ServiceName"),
                         compute_type=d.text("ServiceComputeType", False),
                         model_ids=_model_ids(d.text("ModelIds", False)),
                         tags=d.tags("ServiceTags"), properties=d.tags("ServiceProperties"))


def _model_ids(text: str) -> tuple[tuple[str, str], ...]:
    """``"name:1,name:2"`` -> ``(("name", "1"), ("name", "2"))``."""
    ids = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, version = item.rpartition(":")
        if not sep or not name or not version:
            raise EventValidationError("data.ModelIds", f"entry {item!r} is not NAME:VERSION")
        ids.append((name, version))
    return tuple(ids)


def _run_fields(d: _DataReader) -> dict[str, Any]:
    return {"experiment_id": d.text("experimentId", False),
            "experiment_name": d.text("experimentName", False), "run_id": d.text("runId"),
            "run_type": d.text("runType", False), "tags": d.tags("runTags"),
            "properties": d.tags("runProperties")}


def _run_completed(env: dict[str, Any], d: _DataReader) -> Event:
    return RunCompleted(**env, **_run_fields(d))


def _run_status_changed(env: dict[str, Any], d: _DataReader) -> Event:
    return RunStatusChanged(**env, **_run_fields(d), run_status=d.text("runStatus"))


def _drift_detected(env: dict[str, Any], d: _DataReader) -> Event:
    return DatasetDriftDetected(**env, drift_id=d.text("DataDriftId"), drift_name=d.text("DataDriftName", False),
                                run_id=d.text("RunId", False), base_dataset_id=d.text("BaseDatasetId", False),
                                target_dataset_id=d.text("TargetDatasetId", False),
                                drift_coefficient=d.number("DriftCoefficient"),
                                start_time=d.text("StartTime", False), end_time=d.text("EndTime", False))


_DATA_PARSERS = {
    BlobCreated: _blob_created, ModelRegistered: _model_registered, ModelDeployed: _model_deployed,
    RunCompleted: _run_completed, RunStatusChanged: _run_status_changed,
    DatasetDriftDetected: _drift_detected,
}
