"""Our events are CloudEvents 1.0: every type the catalogue makes passes the spec check, the check
itself catches what the spec forbids, and ids come from the decision, not from the clock."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from core.ledger import AuditRecord
from core.notify.codec import from_props, to_props
from core.publish.catalogue import PREFIX, TYPES, event_for
from core.publish.cloudevent import CloudEvent, from_notification, problems, rfc3339

AT = datetime(2026, 12, 1, 21, 0, 5, 123456, tzinfo=timezone.utc)
SOURCE = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Web/sites/reactor"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# Audit records as the services write them (core/retraining.py, core/release/service.py, core/alerting/service.py).
RECORDS = {
    "RetrainStarted": AuditRecord("retrain.started", "d3c1", model="diabetes", detail={
        "action": "started", "model": "diabetes", "reason": "data", "job": "retrain-diabetes-d3c1",
        "decision_id": "d3c1", "triggers": ["e1", "e2", "e3"], "trigger_count": 3, "files": 3, "bytes": 9000,
        "drift": "", "manual": ""}),
    "RetrainCompleted": AuditRecord("retrain.completed", "d3c1", model="diabetes", detail={
        "action": "completed", "model": "diabetes", "job": "retrain-diabetes-d3c1", "decision_id": "d3c1",
        "reactor_registered_version": "4", "reactor_champion_kept": "false", "reactor_job_url": "http://x/log",
        "reactor_verdict_reason": "rmse 53.1 < 55.0"}),
    "RetrainFailed": AuditRecord("retrain.failed", "d3c1", model="diabetes", detail={
        "action": "failed", "model": "diabetes", "job": "retrain-diabetes-d3c1",
        "reactor_error": "data/diabetes/bad.csv: column age is missing"}),
    "ReleaseStarted": AuditRecord("release.created", "c0", function="releases", model="diabetes", version="4",
                                  detail={"release": "diabetes:4", "tags": {"stage": "candidate"}}),
    "ReleasePromoted": AuditRecord("release.promoted", "c0", function="releases", model="diabetes", version="4",
                                   detail={"release": "diabetes:4", "note": "diabetes-v4 serves 100% of prod",
                                           "deleted": ["diabetes-v1"]}),
    "ReleaseRolledBack": AuditRecord("release.rolled_back", "c0", function="releases", model="diabetes",
                                     version="4", detail={"release": "diabetes:4", "note": "health check failed",
                                                          "error_rate": 0.189, "p95_ms": float("nan")}),
    "ReleaseFailed": AuditRecord("release.qa_failed", "c0", function="releases", model="diabetes", version="4",
                                 detail={"release": "diabetes:4", "note": "10 of 10 smoke requests failed"}),
    "AlertFired": AuditRecord("alert.firing", "fp01", function="alerting", model="diabetes", detail={
        "labels": {"alertname": "ReleaseRolledBack", "model": "diabetes", "severity": "error"}, "value": "",
        "source": "reactor", "summary": "diabetes:4 rolled back", "changed_at": "2026-12-01T21:00:00+00:00"}),
    "AlertResolved": AuditRecord("alert.resolved", "fp01", function="alerting", model="diabetes", detail={
        "labels": {"alertname": "ReleaseRolledBack", "model": "diabetes", "severity": "error"}, "value": "",
        "source": "reactor", "summary": "diabetes:5 promoted", "changed_at": "2026-12-01T22:00:00+00:00"}),
}


def test_the_catalogue_covers_every_documented_type() -> None:
    assert set(RECORDS) == set(TYPES)


@pytest.mark.parametrize("kind", TYPES)
def test_each_type_is_a_valid_cloudevent(kind: str) -> None:
    event = event_for(RECORDS[kind], AT, SOURCE)
    assert event is not None
    doc = event.to_dict()
    assert problems(doc) == []
    assert doc["specversion"] == "1.0" and doc["type"] == PREFIX + kind and doc["source"] == SOURCE
    assert all(isinstance(doc[a], str) and doc[a] for a in ("id", "source", "type", "subject", "time"))
    assert RFC3339.match(doc["time"]) and doc["time"] == "2026-12-01T21:00:05.123Z"
    assert doc["datacontenttype"] == "application/json" and isinstance(doc["data"], dict)
    assert doc["correlationid"] == RECORDS[kind].correlation_id


def test_subjects_name_the_model_version_or_alert() -> None:
    subjects = {kind: event_for(r, AT, SOURCE).subject for kind, r in RECORDS.items()}  # type: ignore[union-attr]
    assert subjects["RetrainStarted"] == "models/diabetes" and subjects["RetrainFailed"] == "models/diabetes"
    assert subjects["RetrainCompleted"] == "models/diabetes:4"
    assert {subjects[k] for k in TYPES if k.startswith("Release")} == {"models/diabetes:4"}
    assert subjects["AlertFired"] == subjects["AlertResolved"] == "alerts/ReleaseRolledBack/fp01"


def test_data_carries_what_a_subscriber_acts_on() -> None:
    def data(kind: str) -> dict:
        return dict(event_for(RECORDS[kind], AT, SOURCE).data)  # type: ignore[union-attr]

    assert data("RetrainCompleted")["registered_version"] == "4" and data("RetrainCompleted")["champion_kept"] is False
    assert data("RetrainFailed")["error"].startswith("data/diabetes/bad.csv")
    assert data("ReleaseFailed")["state"] == "qa_failed"
    assert data("ReleaseRolledBack")["figures"] == {"error_rate": 0.189, "p95_ms": None}  # JSON has no NaN
    assert data("AlertFired")["labels"]["alertname"] == "ReleaseRolledBack"


def test_ids_come_from_the_decision_not_from_when_it_was_written() -> None:
    for kind, record in RECORDS.items():
        first, again = event_for(record, AT, SOURCE), event_for(record, AT + timedelta(minutes=7), SOURCE)
        assert first is not None and again is not None and first.id == again.id, kind
    ids = [event_for(r, AT, SOURCE).id for r in RECORDS.values()]  # type: ignore[union-attr]
    assert len(set(ids)) == len(ids), "two decisions, two ids"


def test_records_that_are_not_published_decisions_make_no_event() -> None:
    for action in ("event.processed", "retrain.coalesced", "retrain.queued", "release.canary", "release.smoke",
                   "alert.pending", "alert.notified", "notification_rejected", "admin.denied"):
        assert event_for(AuditRecord(action, "c"), AT, SOURCE) is None


def test_long_texts_are_clipped() -> None:
    record = AuditRecord("retrain.failed", "c", model="m", detail={"action": "failed", "job": "j",
                                                                   "reactor_error": "x" * 50_000})
    event = event_for(record, AT, SOURCE)
    assert event is not None and len(event.data["error"]) < 1100


def test_an_event_survives_the_outbox_row() -> None:
    event = event_for(RECORDS["ReleaseRolledBack"], AT, SOURCE)
    assert event is not None
    stored = from_notification(from_props(to_props(event.as_notification())))
    assert stored == CloudEvent(event.id, event.type, event.source, event.subject, event.time, event.data,
                                event.correlation_id)


GOOD = {"specversion": "1.0", "id": "1", "source": "urn:x", "type": "t", "time": "2026-12-01T21:00:05Z"}


@pytest.mark.parametrize(("change", "expected"), [
    ({"id": None}, "id is required"),
    ({"specversion": "0.3"}, "specversion must be '1.0'"),
    ({"type": ""}, "type must be a non-empty string"),
    ({"source": 7}, "source must be a non-empty string"),
    ({"time": "yesterday"}, "time must be an RFC 3339 timestamp"),
    ({"time": "2026-13-01T00:00:00Z"}, "time must be an RFC 3339 timestamp"),
    ({"time": "2026-12-01T21:00:05"}, "time must be an RFC 3339 timestamp"),  # no zone
    ({"subject": ""}, "subject must be a non-empty string"),
    ({"datacontenttype": "json"}, "datacontenttype must be a media type"),
    ({"dataschema": "schemas/x"}, "dataschema must be an absolute URI"),
    ({"Correlation_Id": "x"}, "extension attribute names are 1-20 lower-case letters or digits"),
    ({"traceinfo": {"a": 1}}, "an extension attribute is a non-empty string"),
    ({"data": {}, "data_base64": "e30="}, "data and data_base64 are mutually exclusive"),
])
def test_the_check_catches_what_the_spec_forbids(change: dict, expected: str) -> None:
    event = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    found = problems(event)
    assert any(expected in p for p in found), found
    assert problems(GOOD) == [] and problems([GOOD]) == ["event must be a JSON object"]


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=timezone(timedelta(hours=2)))) == \
        "2026-01-02T01:04:05.999Z"
