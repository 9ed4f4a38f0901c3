"""The Azure Monitor adapter with the real SDK clients, answered by recorded REST responses
through an injected transport (requests session with a recording adapter)."""

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport

from core.adapters.azure_monitor import AzureMonitorSource
from core.alerting.sources import LogQuery, MetricQuery

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "azuremonitor"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml-rg/providers/"
EPS = "Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Token:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("token", int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))


class Recorded(requests.adapters.BaseAdapter):
    """Answers metrics:getBatch and logs $batch from the recorded files; records every request."""

    def __init__(self):
        super().__init__()
        self.requests = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        body = json.loads(request.body)
        if "metrics:getBatch" in request.url:
            answer = json.loads((FIXTURES / "metrics_getbatch.json").read_text())
            wanted = {r.lower() for r in body["resourceids"]}
            answer["values"] = [v for v in answer["values"] if v["resourceid"].lower() in wanted]
        else:
            recorded = json.loads((FIXTURES / "logs_batch.json").read_text())["responses"]
            answer = {"responses": [{**recorded[i % len(recorded)], "id": r["id"]}
                                    for i, r in enumerate(body["requests"])]}
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        data = json.dumps(answer).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(data))}
        response.headers.update(headers)
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(data), headers=headers, status=200,
                                            preload_content=False)
        return response

    def close(self):
        return None


def source():
    adapter, session = Recorded(), requests.Session()
    session.mount("https://", adapter)
    src = AzureMonitorSource(Token(), metrics_endpoint="https://westeurope.metrics.monitor.azure.com",
                             max_concurrency=3, transport=RequestsTransport(session=session))
    return src, adapter


def test_metrics_for_many_resources_in_batched_calls():
    src, adapter = source()
    resources = tuple((SUB + EPS + name).lower() for name in ["diabetes-ep", "churn-ep"] + [f"x{i}" for i in range(60)])
    query = MetricQuery(resources, "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                        "RequestLatency_P99", "average", 300)
    (values,) = src.query_metrics([query], NOW)
    assert values[resources[0]] == 812.5
    assert values[resources[1]] is None  # a time series without a value for the aggregation
    assert values[resources[5]] is None and len(values) == 62
    calls = [r for r in adapter.requests if "metrics:getBatch" in r.url]
    assert len(calls) == 2  # 62 resources: 50 + 12
    assert sorted(len(json.loads(c.body)["resourceids"]) for c in calls) == [12, 50]
    url = calls[0].url
    assert "metricnames=RequestLatency_P99" in url and "aggregation=Average" in url and "interval=PT5M" in url
    assert calls[0].headers["Authorization"] == "Bearer token"


def test_logs_in_one_batch_call_value_column_and_empty_result():
    src, adapter = source()
    values = src.query_logs([LogQuery("ws-1", "T | summarize value=count()", 900), LogQuery("ws-1", "U", 900)], NOW)
    assert values == [42.0, None]
    (call,) = adapter.requests
    assert call.url.endswith("/$batch")
    sent = json.loads(call.body)["requests"]
    assert [r["workspace"] for r in sent] == ["ws-1", "ws-1"] and sent[0]["body"]["query"].startswith("T |")


def test_no_sdk_is_imported_before_first_use():
    import subprocess
    import sys

    code = "import sys, core.adapters.azure_monitor; print(any(m.startswith('azure.monitor') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_a_rules_dimensions_go_to_azure_monitor_as_the_metric_filter():
    from urllib.parse import parse_qs, urlsplit

    src, adapter = source()
    resource = (SUB + EPS + "diabetes-ep").lower()
    query = MetricQuery((resource,), "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                        "RequestsPerMinute", "total", 300, (("deployment", "blue"), ("statusCodeClass", "5xx")))
    src.query_metrics([query], NOW)
    [call] = [r for r in adapter.requests if "metrics:getBatch" in r.url]
    params = {k.lower(): v for k, v in parse_qs(urlsplit(call.url).query).items()}
    assert params["filter"] == ["deployment eq 'blue' and statusCodeClass eq '5xx'"]
    assert params["metricnames"] == ["RequestsPerMinute"] and params["aggregation"] == ["Total"]
