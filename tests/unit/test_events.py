from __future__ import annotations

import pytest

from core.errors import EventValidationError
from core.events import (
    BlobCreated,
    DatasetDriftDetected,
    ModelDeployed,
    ModelRegistered,
    RunCompleted,
    RunStatusChanged,
    parse_event,
    split_batch,
)
from tests.payloads import SAMPLES, camel_data, load, sample, to_cloudevent

EXPECTED = {"BlobCreated": BlobCreated, "ModelRegistered": ModelRegistered, "ModelDeployed": ModelDeployed,
            "RunCompleted": RunCompleted, "RunStatusChanged": RunStatusChanged,
            "DatasetDriftDetected": DatasetDriftDetected}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_every_sample_parses_in_both_schemas(kind: str, schema: str) -> None:
    raw = load(SAMPLES[kind])[0]
    event = parse_event(raw if schema == "eventgrid" else to_cloudevent(raw))
    assert type(event) is EXPECTED[kind]
    assert event.schema == schema
    assert event.id == raw["id"] and event.source == raw["topic"] and event.subject == raw["subject"]
    assert event.time.year == 2017 and event.time.microsecond == 958410  # 7 digits cut to 6


def test_blob_created_fields() -> None:
    event = parse_event(load(SAMPLES["BlobCreated"])[0])
    assert isinstance(event, BlobCreated)
    assert (event.container, event.blob_name) == ("test-container", "new-file.txt")
    assert event.content_length == 524288 and event.api == "PutBlockList"
    assert event.etag == '"0x8D4BCC2E4835CD0"' and event.sequencer == "00000000000004420000000000028963"


def test_model_registered_accepts_both_casings_and_version_types() -> None:
    pascal = parse_event(sample("ModelRegistered"))
    camel_raw = camel_data(sample("ModelRegistered"))
    camel_raw["data"]["modelVersion"] = "3"
    camel = parse_event(camel_raw)
    assert isinstance(pascal, ModelRegistered) and isinstance(camel, ModelRegistered)
    assert (pascal.model_name, pascal.model_version) == ("sklearn_regression_model", "20")
    assert (camel.model_name, camel.model_version) == ("sklearn_regression_model", "3")
    assert camel.tags == {"area": "diabetes", "type": "regression"}


def test_run_tags_casing_and_monitor_breach() -> None:
    raw = sample("RunStatusChanged")
    del raw["data"]["runTags"]
    raw["data"]["RunTags"] = {"azureml_modelmonitor_threshold_breached": "has failed due to one or more "
                              "features violating metric thresholds"}
    event = parse_event(raw)
    assert isinstance(event, RunStatusChanged)
    assert event.is_monitor_breach and event.failed
    plain = parse_event(sample("RunStatusChanged"))
    assert isinstance(plain, RunStatusChanged) and not plain.is_monitor_breach


def test_model_deployed_model_ids() -> None:
    event = parse_event(sample("ModelDeployed"))
    assert isinstance(event, ModelDeployed)
    assert event.model_ids == (("sklearn_regression_model", "1"), ("sklearn_regression_model", "2"))


@pytest.mark.parametrize(("mutate", "field", "reason"), [
    (lambda e: e.pop("id"), "id", "is required"),
    (lambda e: e.update(id=42), "id", "must be a string"),
    (lambda e: e.pop("eventTime"), "eventTime", "is required"),
    (lambda e: e.update(eventTime="yesterday"), "eventTime", "not an RFC 3339"),
    (lambda e: e.update(eventType="Contoso.Thing"), "type", "unknown event type"),
    (lambda e: e.update(data="text"), "data", "must be a JSON object"),
    (lambda e: e["data"].pop("ModelName"), "data.ModelName", "is required"),
    (lambda e: e["data"].update(ModelVersion=[1]), "data.ModelVersion", "integer or a non-empty string"),
    (lambda e: e["data"].update(ModelVersion=True), "data.ModelVersion", "number or a string"),
    (lambda e: e["data"].update(ModelTags=[1]), "data.ModelTags", "must be an object"),
])
def test_validation_names_field_and_reason(mutate, field: str, reason: str) -> None:
    raw = sample("ModelRegistered")
    mutate(raw)
    with pytest.raises(EventValidationError) as err:
        parse_event(raw)
    assert err.value.field == field
    assert reason in err.value.reason


def test_wrongly_typed_blob_length() -> None:
    raw = sample("BlobCreated")
    raw["data"]["contentLength"] = "big"
    with pytest.raises(EventValidationError, match=r"data\.contentLength"):
        parse_event(raw)


def test_cloudevents_spec_version_checked() -> None:
    raw = to_cloudevent(sample("BlobCreated"))
    raw["specversion"] = "0.3"
    with pytest.raises(EventValidationError, match="specversion"):
        parse_event(raw)


def test_non_object_event() -> None:
    with pytest.raises(EventValidationError, match="must be a JSON object, got an array"):
        parse_event([1])


def test_events_are_frozen() -> None:
    event = parse_event(sample("BlobCreated"))
    with pytest.raises(AttributeError):
        event.id = "x"  # type: ignore[misc]


def test_split_batch() -> None:
    assert split_batch({"a": 1}) == [{"a": 1}]
    assert len(split_batch([{}, {}])) == 2
    with pytest.raises(EventValidationError, match="at most 5000"):
        split_batch([{}] * 5001)
