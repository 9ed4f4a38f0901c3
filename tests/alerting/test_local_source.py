"""The local MetricsSource: Azure Monitor's online-endpoint metrics computed from request samples,
the router's injected faults recorded as real answers, the control plane's query route over HTTP,
the composition of providers, and log rules answered from the ledger.

The router forwards to a real HTTP upstream on loopback (a stand-in for a deployment's scoring
process) and the control plane is the real one behind its real HTTP server; no ml.serve process
is needed here (tests/integration/test_local_serving.py covers them with real deployments)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.adapters.azure_monitor import dimension_filter
from core.adapters.local_metrics import FailedJobs, LocalSource, online_endpoint_metrics
from core.alerting.rules import parse_alerting
from core.alerting.sources import LogQuery, MetricQuery
from core.errors import SettingsError
from core.ledger import AuditRecord, Ledger
from core.settings import Settings
from embedded.local_settings import SAMPLE, read_values
from embedded.serving import ControlServer
from embedded.serving_api import ControlPlane, ModelFiles
from embedded.serving_faults import parse_fault
from embedded.serving_metrics import Query, evaluate, parse_query
from embedded.serving_router import Router, Routes
from embedded.serving_store import ServingStore
from tests.alerting.kit import EP
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore

NS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def samples(*spec: tuple[float, int, float]) -> list[tuple[datetime, int, float]]:
    """(seconds before END, status, latency ms) -> samples in time order."""
    return sorted((END - timedelta(seconds=ago), status, ms) for ago, status, ms in spec)


def query(metric: str, aggregation: str = "total", window: float = 300, **dims: str) -> Query:
    return Query("ep", metric, aggregation, END - timedelta(seconds=window), END, dims)


# -- Azure Monitor's arithmetic ---------------------------------------------------------------------------
def test_requests_per_minute_by_status_class_and_deployment_over_one_minute_buckets():
    blue = samples(*[(10 + i, 200, 5.0) for i in range(30)], *[(70 + i, 500, 9.0) for i in range(6)],
                   (400, 500, 1.0))  # outside the 5-minute window
    green = samples(*[(20 + i, 503, 4.0) for i in range(4)], (30, 0, 0.0))  # a failed connection is a 5xx
    found = {"blue": blue, "green": green}
    assert evaluate(query("RequestsPerMinute", statuscodeclass="5xx"), found) == 6 + 5
    assert evaluate(query("RequestsPerMinute", statuscodeclass="5xx", deployment="blue"), found) == 6
    assert evaluate(query("RequestsPerMinute", statuscode="503"), found) == 4
    assert evaluate(query("RequestsPerMinute"), found) == 30 + 6 + 5
    # five one-minute points: 35 (minute 0: 30 ok + 5 green errors), 6, 0, 0, 0
    assert evaluate(query("RequestsPerMinute", "average"), found) == pytest.approx(41 / 5)
    assert evaluate(query("RequestsPerMinute", "maximum"), found) == 35
    assert evaluate(query("RequestsPerMinute", "minimum"), found) == 0
    assert evaluate(query("RequestsPerMinute", "count"), found) == 5
    assert evaluate(query("RequestsPerMinute", statuscodeclass="4xx"), found) == 0  # a count is 0, not "no data"


def test_a_window_under_a_minute_is_one_bucket_scaled_to_a_per_minute_rate():
    found = {"blue": samples(*[(0.5 + i * 0.5, 500, 1.0) for i in range(10)], (15, 500, 1.0), (0, 500, 1.0))}
    assert evaluate(query("RequestsPerMinute", "average", window=10, statuscodeclass="5xx"), found) == 60.0


def test_latency_percentiles_per_minute_then_aggregated_and_none_without_requests():
    minute0 = [(10 + i * 0.1, 200, float(ms)) for i, ms in enumerate(range(1, 101))]  # 1..100 ms
    minute1 = [(70 + i, 200, 1000.0) for i in range(3)]
    found = {"blue": samples(*minute0, *minute1)}
    assert evaluate(query("RequestLatency_P95", "maximum"), found) == 1000.0
    assert evaluate(query("RequestLatency_P95", "minimum"), found) == 95.0  # nearest rank of 1..100
    assert evaluate(query("RequestLatency_P50", "average"), found) == (50.0 + 1000.0) / 2
    assert evaluate(query("RequestLatency_P99", "count"), found) == 2  # only minutes with requests have a point
    assert evaluate(query("RequestLatency_P95", "average", deployment="green"), found) is None


def test_a_query_is_validated_field_by_field():
    good = {"endpoint": "EP", "metric": "requestsperminute", "aggregation": "Total", "start": "2026-11-22T11:55:00Z",
            "end": "2026-11-22T12:00:00+00:00", "dimensions": {"statusCodeClass": "5XX"}}
    parsed = parse_query(good)
    assert (parsed.endpoint, parsed.metric, parsed.aggregation, dict(parsed.dimensions)) == (
        "ep", "RequestsPerMinute", "total", {"statuscodeclass": "5xx"})
    for change, message in [({"metric": "CpuUtilizationPercentage"}, "not an online-endpoint metric"),
                            ({"aggregation": "p95"}, "aggregation must be one of"),
                            ({"start": "yesterday"}, "start must be an ISO 8601 time"),
                            ({"end": "2026-11-22T11:00:00Z"}, "end must be after start"),
                            ({"metric": "RequestLatency_P95"}, "has no dimension statuscodeclass"),
                            ({"endpoint": 7}, "endpoint must be")]:
        with pytest.raises(ValueError, match=message):
            parse_query({**good, **change})


# -- the router's faults ---------------------------------------------------------------------------------
class Upstream:
    """A deployment's scoring process as far as the router can tell: answers every POST with 200."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                data = b'{"predictions": [1.0]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    found = Upstream()
    yield found
    found.stop()


def test_an_injected_fault_answers_500_for_its_share_and_is_counted_as_a_real_error(upstream):
    router = Router("ep")
    try:
        router.update(Routes({"blue": 100}, {}, {"blue": upstream.port}))
        start = datetime.now(UTC)
        router.set_fault("blue", parse_fault("error-percent:25"))
        answers = [router.score(b"{}", "application/json", "").status for _ in range(40)]
        router.set_fault("blue", None)
        answers += [router.score(b"{}", "application/json", "").status for _ in range(10)]
        assert answers.count(500) == 10 and answers[-10:] == [200] * 10  # exactly a quarter, then none
        window = router.metrics.window(start, datetime.now(UTC) + timedelta(seconds=1))
        q = Query("ep", "RequestsPerMinute", "total", start, start + timedelta(seconds=60),
                  {"statuscodeclass": "5xx"})
        assert evaluate(q, window) == 10
        assert router.metrics.window(datetime.now(UTC) + timedelta(seconds=5), datetime.now(UTC) +
                                     timedelta(seconds=9)) == {"blue": []}
    finally:
        router.stop()


def test_fault_texts_are_checked():
    assert parse_fault("") is None
    assert parse_fault("error").error_percent == 100 and parse_fault("slow:250").slow_ms == 250
    for bad in ("error-percent:0", "error-percent:101", "slow:-1", "crash"):
        with pytest.raises(ValueError, match="is not one of"):
            parse_fault(bad)


# -- the control plane's route and the source over HTTP ------------------------------------------------
@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, ControlServer]]:
    store = MemoryStateStore()
    control = ControlPlane(ServingStore(store, "t"), ModelFiles(MemoryBlobStore(), "t-models"), lambda events: [],
                           tmp_path)
    server = ControlServer(control)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield control, server
    server.shutdown()
    server.server_close()
    control.close()


def test_the_source_asks_the_control_plane_once_per_tick_for_every_endpoint_rule(plane, caplog):
    control, server = plane
    control.ensure_endpoint("diabetes-prod", {})
    source = LocalSource(online_endpoint_metrics(server.url))
    prod, missing = EP + "diabetes-prod", EP + "nowhere-ep"
    queries = [MetricQuery((prod, missing), NS, "RequestsPerMinute", "total", 60, (("statusCodeClass", "5xx"),)),
               MetricQuery((prod,), NS, "RequestLatency_P95", "average", 60),
               MetricQuery((prod,), NS, "RequestLatency_P95", "average", 60, (("statusCodeClass", "5xx"),)),
               MetricQuery((prod,), "Microsoft.Compute/virtualMachines", "RequestsPerMinute", "total", 60),
               MetricQuery((prod,), NS, "CpuUtilizationPercentage", "average", 60)]
    with caplog.at_level(logging.WARNING):
        first = source.query_metrics(queries, datetime.now(UTC))
        second = source.query_metrics(queries, datetime.now(UTC))
    assert first == second == [{prod: 0.0, missing: None}, {prod: None}, {prod: None}, {prod: None}, {prod: None}]
    problems = [r.getMessage() for r in caplog.records]
    assert sum("refused a metric query" in p for p in problems) == 1  # latency has no statusCodeClass
    assert sum("not an online endpoint" in p for p in problems) == 1
    assert sum("no local source answers this metric" in p for p in problems) == 1  # logged once, not per tick


def test_an_unreachable_control_plane_is_no_data_not_an_error():
    from embedded.azurite import free_port

    source = LocalSource(online_endpoint_metrics(f"http://127.0.0.1:{free_port()}"))
    q = MetricQuery((EP + "diabetes-prod",), NS, "RequestsPerMinute", "total", 60)
    assert source.query_metrics([q], datetime.now(UTC)) == [{EP + "diabetes-prod": None}]


def test_the_control_plane_route_refuses_a_malformed_body(plane):
    import requests

    _, server = plane
    assert requests.post(f"{server.url}/metrics/query", json={"q": []}, timeout=5).status_code == 400
    answer = requests.post(f"{server.url}/metrics/query", json={"queries": [{"metric": "x"}]}, timeout=5).json()
    assert answer["values"] == [None] and "not an online-endpoint metric" in answer["errors"][0]


# -- composition -----------------------------------------------------------------------------------------
def test_a_metric_is_one_entry_in_the_mapping_and_a_failing_provider_is_no_data():
    calls: list[list[str]] = []

    def live_rmse(queries, end):
        calls.append([q.metric for q in queries])
        return [{r: 61.5 for r in q.resource_ids} for q in queries]

    def broken(queries, end):
        raise RuntimeError("down")

    model = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/ws/models/m"
    source = LocalSource({"LiveRMSE": live_rmse, "LiveMAE": live_rmse, "Broken": broken})
    found = source.query_metrics([MetricQuery((model,), "x", "LiveRMSE", "average", 60),
                                  MetricQuery((model,), "x", "Broken", "average", 60),
                                  MetricQuery((model,), "x", "LiveMAE", "average", 60)], END)
    assert found == [{model: 61.5}, {model: None}, {model: 61.5}]
    assert calls == [["LiveRMSE", "LiveMAE"]]  # one call per provider, whatever names it answers


# -- log rules on the ledger -----------------------------------------------------------------------------
def test_failed_job_counts_come_from_the_audit_trail_and_other_queries_are_no_data(caplog):
    clock, store = Clock(END - timedelta(minutes=20)), MemoryStateStore()
    ledger = Ledger(store, MemoryBlobStore(), prefix="t", container="c", clock=clock, lease_seconds=60)
    for minutes, action in [(0, "retrain.failed"), (10, "retrain.failed"), (12, "retrain.canceled"),
                            (14, "retrain.completed")]:
        clock.now = END - timedelta(minutes=20) + timedelta(minutes=minutes)
        ledger.audit(AuditRecord(action, "d", model="diabetes"))
    source = LocalSource({}, [FailedJobs(store, ledger.audit_table)])
    failed = 'AmlRunStatusChangedEvent | where Status == "Failed" | summarize value = count()'
    either = "AmlRunStatusChangedEvent\n| where Status in ('Failed', 'Canceled')\n| summarize count()"
    other = "AppRequests | summarize value = count()"
    with caplog.at_level(logging.WARNING):
        values = source.query_logs([LogQuery("w", failed, 900), LogQuery("w", either, 900),
                                    LogQuery("w", failed, 3600), LogQuery("w", other, 900),
                                    LogQuery("w", other, 900)], END)
    assert values == [1.0, 2.0, 2.0, None, None]
    assert sum("not supported locally" in r.getMessage() for r in caplog.records) == 1


# -- rules and settings ------------------------------------------------------------------------------
def test_metric_rules_take_dimensions_and_azure_gets_them_as_a_filter():
    rule = {"name": "Errors", "kind": "metric", "resource_ids": [EP + "ep"], "namespace": NS,
            "metric": "RequestsPerMinute", "operator": ">", "threshold": 5, "window": "10s",
            "dimensions": {"statusCodeClass": "5xx", "deployment": "blue"}}
    config, problems = parse_alerting(json.dumps({"rules": [rule]}))
    assert problems == [] and config.rules[0].dimensions == (("deployment", "blue"), ("statusCodeClass", "5xx"))
    assert dimension_filter(config.rules[0].dimensions) == "deployment eq 'blue' and statusCodeClass eq '5xx'"
    _, problems = parse_alerting(json.dumps({"rules": [{**rule, "dimensions": {"a b": "x", "c": "it's"}}]}))
    assert len(problems) == 2 and all("dimensions" in p for p in problems)
    env = {**read_values(SAMPLE), "REACTOR_ALERT_RULES": json.dumps({"rules": [rule]})}
    assert Settings.from_env(env).alert_rules.rules[0].window == 10
    with pytest.raises(SettingsError, match="rule Errors has a window under a minute"):
        Settings.from_env({**env, "REACTOR_ALERTS_SOURCE": "azure",
                           "REACTOR_ALERTS_METRICS_ENDPOINT": "https://westeurope.metrics.monitor.azure.com"})
