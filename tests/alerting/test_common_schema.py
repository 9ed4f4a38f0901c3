"""Azure Monitor's common alert schema: Fired then Resolved, log search, activity log, malformed."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest

from core import bootstrap
from functions.alerts import azure_monitor_alert
from tests.alerting.kit import World

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
METRIC = json.loads((FIXTURES / "payloads" / "AzureMonitor.CommonAlertSchema.metric.json").read_text())
LOGSEARCH = json.loads((FIXTURES / "azuremonitor" / "CommonAlertSchema.logsearch.json").read_text())
ACTIVITY = json.loads((FIXTURES / "azuremonitor" / "CommonAlertSchema.activitylog.json").read_text())


def fired(sample):
    body = copy.deepcopy(sample)
    body["data"]["essentials"]["monitorCondition"] = "Fired"
    return body


def post(body):
    req = func.HttpRequest("POST", "/api/alerts/azure-monitor", body=json.dumps(body).encode())
    return azure_monitor_alert(req)


@pytest.fixture
def world():
    w = World({"group_wait": 0, "group_interval": "1m", "rules": []})
    bootstrap.install(SimpleNamespace(alerting=w.alerting))
    yield w
    bootstrap.install(None)


def test_the_real_metric_sample_fires_then_resolves(world):
    assert post(fired(METRIC)).status_code == 202
    assert post(fired(METRIC)).status_code == 202  # Azure retries webhooks: a redelivery changes nothing
    world.advance(60)
    response = post(METRIC)  # the real sample is the Resolved one
    assert json.loads(response.get_body())["notifications"] == 1
    assert [n.kind for n in world.sink.sent] == ["firing", "resolved"]
    first = world.sink.sent[0]
    assert first.labels["alertname"] == "WCUS-R2-Gen2" and first.severity == "info"
    assert "Percentage CPU Average = 7.727 (GreaterThan 25)" in first.summary
    assert sorted(world.actions()) == ["alert.firing", "alert.notified", "alert.notified", "alert.resolved"]


def test_a_late_fired_after_resolved_is_ignored(world):
    post(METRIC)
    post(fired(METRIC))  # fired at 13:58, resolved at 14:03: older than what we know
    assert world.state() == "resolved" and world.sink.sent == []


def test_log_search_alert_carries_its_custom_labels(world):
    assert post(LOGSEARCH).status_code == 202
    (note,) = world.sink.sent
    assert (note.severity, note.labels["model"], note.labels["endpoint"]) == ("error", "diabetes", "diabetes-ep")
    assert "log search Count = 27.0" in note.summary


def test_activity_log_alert(world):
    assert post(ACTIVITY).status_code == 202
    (note,) = world.sink.sent
    assert "onlineEndpoints/delete Succeeded by someone@contoso.com" in note.summary


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.pop("schemaId"), "schemaId"),
    (lambda b: b["data"].pop("essentials"), "data.essentials"),
    (lambda b: b["data"]["essentials"].update(monitorCondition="Maybe"), "data.essentials.monitorCondition"),
    (lambda b: b["data"]["essentials"].update(severity="High"), "data.essentials.severity"),
    (lambda b: b["data"]["essentials"].update(alertTargetIDs=[]), "data.essentials.alertTargetIDs"),
    (lambda b: b["data"]["essentials"].update(resolvedDateTime="yesterday"), "data.essentials.resolvedDateTime"),
    (lambda b: b["data"]["essentials"].pop("alertRule"), "data.essentials.alertRule"),
])
def test_malformed_alerts_are_400_naming_the_field(world, mutate, field):
    body = copy.deepcopy(METRIC)
    mutate(body)
    response = post(body)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert json.loads(response.get_body())["field"] == field


def test_not_json_is_400(world):
    response = azure_monitor_alert(func.HttpRequest("POST", "/api/alerts/azure-monitor", body=b"{"))
    assert response.status_code == 400 and json.loads(response.get_body())["field"] == "body"
