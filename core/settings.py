"""Typed settings, read once from the environment and validated as a whole.

Locally the values come from ``local.settings.json`` (``Values``); in Azure from app
settings (secrets as Key Vault references). Nothing else in ``core`` reads ``os.environ``.
Every problem is collected, so one start-up error lists all of them.

``SETTINGS`` below is the catalogue of every setting the app reads; the infrastructure
consistency tests hold it against ``local.settings.sample.json`` and the Bicep.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from core.admin.auth import AuthConfig, parse_role_map
from core.alerting.rules import AlertingConfig, load_alerting
from core.errors import SettingsError
from core.feedback.drift_policy import DriftMonitor, parse_monitors
from core.notify.routing import Routes, parse_routes
from core.release.policy import ReleasePolicy, parse_release_policies
from core.retrain_policy import RetrainPolicy, parse_policies

T = TypeVar("T")

# name -> one-line description; the single list of app settings.
SETTINGS: dict[str, str] = {
    "REACTOR_STORAGE_CONNECTION": "Storage connection string for the ledger and blobs "
    "(UseDevelopmentStorage=true locally). Leave empty in Azure to use REACTOR_STORAGE_ACCOUNT.",
    "REACTOR_STORAGE_ACCOUNT": "Storage account name, reached with the app's managed identity "
    "when no connection string is set.",
    "REACTOR_TABLE_PREFIX": "Prefix of the ledger tables and internal containers (letters and digits).",
    "REACTOR_STORAGE_EVENT_SOURCES": "Comma-separated storage account topics accepted for blob events; "
    "'*' matches any run of characters.",
    "REACTOR_ML_EVENT_SOURCES": "Comma-separated Azure ML workspace topics accepted for ML events; "
    "'*' matches any run of characters.",
    "REACTOR_DATA_CONTAINER": "Blob container where new training data lands.",
    "REACTOR_CLAIM_LEASE_SECONDS": "How long an event claim protects in-flight work before another "
    "delivery may take it over (a crashed instance's claim expires).",
    "REACTOR_LOG_LEVEL": "Log level: DEBUG, INFO, WARNING or ERROR.",
    "REACTOR_RETRAIN_POLICIES": "JSON object: model name -> retraining policy (data container/prefix, test set, "
    "window, thresholds, cooldown, metric, drift monitors). Empty: nothing is retrained automatically.",
    "REACTOR_RETRAIN_TICK_SCHEDULE": "NCRONTAB schedule of the timer that closes batching windows and repairs "
    "lost submits and outcomes.",
    "REACTOR_RELEASE_POLICIES": "JSON object: model name -> release policy (tag filter, QA and production endpoints, "
    "smoke test, manual or auto approval and its timeout, canary steps and health bounds, retention). Empty: "
    "registered models are not released.",
    "REACTOR_RELEASE_TICK_SCHEDULE": "NCRONTAB schedule of the timer that advances releases (deployments, canary "
    "steps, health checks, approval expiry).",
    "REACTOR_CODE_VERSION": "The code version being run (the git commit in Azure); retraining jobs carry it.",
    "REACTOR_NOTIFY_ROUTES": "JSON: notification receivers (type, optional API url), routes (severity/match/"
    "match_re/continue) and a default receiver. Each receiver's URL or key is the secret setting "
    "REACTOR_NOTIFY_SECRET_<NAME> (a Key Vault reference in Azure). Empty: stored, sent nowhere.",
    "REACTOR_OUTBOX_DRAIN_SCHEDULE": "NCRONTAB schedule of the timer that delivers stored notifications.",
    "REACTOR_ALERT_RULES": "Alert rules and alert routing as JSON (rules, group_by, group_wait, group_interval, "
    "repeat_interval, send_resolved, inhibit_rules), or the path of a file holding it. Empty: no rules "
    "(Azure Monitor alerts posted to /api/alerts/azure-monitor are still handled).",
    "REACTOR_ALERTS_TICK_SCHEDULE": "NCRONTAB schedule of the timer that evaluates alert rules and flushes groups.",
    "REACTOR_ALERTS_SOURCE": "Where rule values come from: 'azure' (Azure Monitor) or 'local' (the local online "
    "endpoints' request metrics from the serving control plane, and the ledger for log rules).",
    "REACTOR_ALERTS_METRICS_ENDPOINT": "Regional Azure Monitor metrics endpoint, https://<region>.metrics.monitor."
    "azure.com (required when REACTOR_ALERTS_SOURCE=azure).",
    "REACTOR_ALERTS_MAX_CONCURRENCY": "Azure Monitor queries run at once (1-16).",
    "REACTOR_OUTBOX_RETENTION_HOURS": "How long delivered and rejected notifications stay in the outbox before "
    "they are pruned (1-8760 hours; the audit trail keeps their record).",
    "REACTOR_EASY_AUTH": "true when App Service authentication (Easy Auth) fronts the app: admin roles come from "
    "the signed-in principal's role claims. false (local host): from REACTOR_ROLE_MAP.",
    "REACTOR_ROLE_MAP": "Local host only: roles of each function key name, 'keyname:role+role,...' (roles: "
    "approver, operator). The master key holds every role. Ignored with Easy Auth.",
    "REACTOR_ML_PLATFORM": "Which ML platform runs jobs: 'azure' (Azure ML) or 'local' (the embedded default).",
    "REACTOR_LOCAL_EVENTGRID_URL": "Local platform only: the Functions host its events are delivered to.",
    "REACTOR_LOCAL_JOB_ATTEMPTS": "Local platform only: how many times a retraining job is run in all when the "
    "process running it dies (it is resumed from the start by the next local platform); then it ends failed.",
    "REACTOR_LOCAL_SERVING_URL": "Local platform only: the control plane of the local online endpoints "
    "(python -m embedded.serving).",
    "REACTOR_AML_SUBSCRIPTION_ID": "Azure ML workspace subscription id (REACTOR_ML_PLATFORM=azure).",
    "REACTOR_AML_RESOURCE_GROUP": "Azure ML workspace resource group.",
    "REACTOR_AML_WORKSPACE": "Azure ML workspace name.",
    "REACTOR_AML_COMPUTE": "Azure ML compute cluster that runs the retraining pipeline.",
    "REACTOR_AML_EXPERIMENT": "Azure ML experiment the retraining jobs are grouped under.",
    "REACTOR_AML_DATASTORE": "Azure ML datastore name(s), comma-separated: one per blob container a retraining "
    "policy reads (training data and test set).",
    "REACTOR_EVENTS_TOPIC_ENDPOINT": "Endpoint of the custom Event Grid topic our own CloudEvents are published to "
    "(https://<topic>.<region>-1.eventgrid.azure.net/api/events; the local host's /eventgrid/api/events). "
    "Empty: publishing is off.",
    "REACTOR_EVENTS_SOURCE": "The CloudEvents 'source' of our own events: a stable URI of this app (its resource "
    "id in Azure).",
    "REACTOR_LOCAL_EVENTS_TOPIC_KEY": "Local only: the topic key sent as aeg-sas-key (a secret, never logged). "
    "Empty: the app's managed identity (EventGrid Data Sender), as in Azure.",
    "REACTOR_COLLECT_CONTAINER": "Blob container of the collected inference data (Azure ML data collector layout: "
    "modelDataCollector/{endpoint}/{deployment}/model_inputs|model_outputs/yyyy/MM/dd/HH/*.jsonl).",
    "REACTOR_LABELS_CONTAINER": "Blob container where late labels land (CSV or JSON lines with request_id and "
    "observed); each new file is joined to the collected predictions.",
    "REACTOR_LABELS_LOOKBACK_HOURS": "How far back from a labels file's arrival its request ids are looked up in the "
    "collected inference data.",
    "REACTOR_LIVE_QUALITY_WINDOW_HOURS": "The window of live quality (RMSE, MAE over labelled predictions) shown in "
    "the status.",
    "REACTOR_LOCAL_COLLECT_BATCH": "Local endpoints only: collected requests written in one batch (a flush by size).",
    "REACTOR_LOCAL_COLLECT_FLUSH_SECONDS": "Local endpoints only: seconds between flushes of collected requests.",
    "REACTOR_LOCAL_COLLECT_BUFFER": "Local endpoints only: collected requests buffered at most; beyond it a request "
    "is still answered and its record dropped (counted, logged).",
    "REACTOR_DRIFT_CHECK": "'local': the app checks production inputs for drift itself (the embedded default); "
    "'off': Azure ML model monitoring does it (Azure) and the timer does nothing.",
    "REACTOR_DRIFT_CHECK_SCHEDULE": "NCRONTAB schedule of the drift check timer.",
    "REACTOR_DRIFT_MONITORS": "JSON object: model name -> drift monitor (monitor name, signal schema, window, delay, "
    "repeat, PSI threshold, KS p-value, minimum samples, features that must breach). Empty: nothing is checked.",
}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,30}$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_NCRONTAB = re.compile(r"^\S+( \S+){5}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_OPTIONAL_URL = re.compile(r"^(https?://[^\s/]+(/\S*)?)?$")
_URI_REFERENCE = re.compile(r"^\S{1,500}$")  # CloudEvents: a non-empty URI-reference
_AML = ("subscription_id", "resource_group", "workspace", "compute", "experiment", "datastore")


class _Reader:
    """Reads typed values from an environment mapping and collects every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str, default: str = "") -> str:
        assert name in SETTINGS, f"setting {name} is not in the catalogue"
        return self.env.get(name, default).strip()

    def text(self, name: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw(name, default)
        if pattern is not None and not pattern.match(value):
            self.problems.append(f"{name}={value!r} is not valid (expected {pattern.pattern})")
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        return self._convert(name, default, int, lambda v: minimum <= v <= maximum,
                             f"an integer from {minimum} to {maximum}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name, default).upper()
        if value not in choices:
            self.problems.append(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def policies(self, name: str) -> Mapping[str, RetrainPolicy]:
        policies, problems = parse_policies(self.raw(name))
        self.problems += problems
        return policies

    def releases(self, name: str) -> Mapping[str, ReleasePolicy]:
        policies, problems = parse_release_policies(self.raw(name))
        self.problems += problems
        return policies

    def drift_monitors(self, name: str) -> Mapping[str, DriftMonitor]:
        monitors, problems = parse_monitors(self.raw(name))
        self.problems += problems
        return monitors

    def routes(self, name: str) -> Routes:
        routes, problems = parse_routes(self.raw(name), self.env)
        self.problems += problems
        return routes

    def alerting(self, name: str) -> AlertingConfig:
        config, problems = load_alerting(self.raw(name))
        self.problems += problems
        return config

    def admin_auth(self) -> AuthConfig:
        easy = self.choice("REACTOR_EASY_AUTH", "false", ("TRUE", "FALSE"))
        roles, problems = parse_role_map(self.raw("REACTOR_ROLE_MAP"))
        self.problems += problems
        return AuthConfig(easy == "TRUE", roles)

    def csv(self, name: str, required: bool) -> tuple[str, ...]:
        items = tuple(p.strip() for p in self.raw(name).split(",") if p.strip())
        if required and not items:
            self.problems.append(f"{name} is required (a comma-separated list)")
        return items

    def _convert(self, name: str, default: T, kind: Callable[[str], T],
                 ok: Callable[[T], bool], expected: str) -> T:
        raw = self.raw(name)
        if raw == "":
            return default
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not {expected}")
            return default
        if not ok(value):
            self.problems.append(f"{name}={raw!r} is not {expected}")
            return default
        return value


@dataclass(frozen=True)
class Settings:
    storage_connection: str
    storage_account: str
    table_prefix: str
    storage_event_sources: tuple[str, ...]
    ml_event_sources: tuple[str, ...]
    data_container: str
    claim_lease_seconds: int
    log_level: str
    retrain_policies: Mapping[str, RetrainPolicy]
    retrain_tick_schedule: str
    release_policies: Mapping[str, ReleasePolicy]
    release_tick_schedule: str
    code_version: str
    notify_routes: Routes
    outbox_drain_schedule: str
    alert_rules: AlertingConfig
    alerts_tick_schedule: str
    alerts_source: str
    alerts_metrics_endpoint: str
    alerts_max_concurrency: int
    admin_auth: AuthConfig
    ml_platform: str
    local_eventgrid_url: str
    local_serving_url: str
    aml: Mapping[str, str]
    drift_check: str
    drift_check_schedule: str
    drift_monitors: Mapping[str, DriftMonitor]
    events_topic_endpoint: str
    events_source: str
    events_topic_key: str = field(repr=False)  # a secret: never in a repr or a log
    outbox_retention_hours: int = 168
    collect_container: str = "inference-data"
    labels_container: str = "labels"
    labels_lookback_hours: int = 24
    live_quality_window_hours: int = 24
    local_collect_batch: int = 500
    local_collect_flush_seconds: int = 2
    local_collect_buffer: int = 100_000
    local_job_attempts: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        r = _Reader(env)
        settings = cls(
            storage_connection=r.raw("REACTOR_STORAGE_CONNECTION"),
            storage_account=r.raw("REACTOR_STORAGE_ACCOUNT"),
            table_prefix=r.text("REACTOR_TABLE_PREFIX", "reactor", _NAME),
            storage_event_sources=r.csv("REACTOR_STORAGE_EVENT_SOURCES", required=True),
            ml_event_sources=r.csv("REACTOR_ML_EVENT_SOURCES", required=True),
            data_container=r.text("REACTOR_DATA_CONTAINER", "data", _CONTAINER),
            claim_lease_seconds=r.integer("REACTOR_CLAIM_LEASE_SECONDS", 300, 5, 86_400),
            log_level=r.choice("REACTOR_LOG_LEVEL", "INFO", _LEVELS),
            retrain_policies=r.policies("REACTOR_RETRAIN_POLICIES"),
            retrain_tick_schedule=r.text("REACTOR_RETRAIN_TICK_SCHEDULE", "*/10 * * * * *", _NCRONTAB),
            release_policies=r.releases("REACTOR_RELEASE_POLICIES"),
            release_tick_schedule=r.text("REACTOR_RELEASE_TICK_SCHEDULE", "*/5 * * * * *", _NCRONTAB),
            code_version=r.raw("REACTOR_CODE_VERSION", "dev")[:64] or "dev",
            notify_routes=r.routes("REACTOR_NOTIFY_ROUTES"),
            outbox_drain_schedule=r.text("REACTOR_OUTBOX_DRAIN_SCHEDULE", "*/30 * * * * *", _NCRONTAB),
            alert_rules=r.alerting("REACTOR_ALERT_RULES"),
            alerts_tick_schedule=r.text("REACTOR_ALERTS_TICK_SCHEDULE", "0 * * * * *", _NCRONTAB),
            alerts_source=r.choice("REACTOR_ALERTS_SOURCE", "LOCAL", ("LOCAL", "AZURE")).lower(),
            alerts_metrics_endpoint=r.raw("REACTOR_ALERTS_METRICS_ENDPOINT"),
            alerts_max_concurrency=r.integer("REACTOR_ALERTS_MAX_CONCURRENCY", 4, 1, 16),
            admin_auth=r.admin_auth(),
            ml_platform=r.choice("REACTOR_ML_PLATFORM", "LOCAL", ("LOCAL", "AZURE")).lower(),
            local_eventgrid_url=r.text("REACTOR_LOCAL_EVENTGRID_URL", "http://127.0.0.1:7071", _URL),
            local_job_attempts=r.integer("REACTOR_LOCAL_JOB_ATTEMPTS", 3, 1, 20),
            local_serving_url=r.text("REACTOR_LOCAL_SERVING_URL", "http://127.0.0.1:7073", _URL),
            aml={name: r.raw(f"REACTOR_AML_{name.upper()}") for name in _AML},
            events_topic_endpoint=r.text("REACTOR_EVENTS_TOPIC_ENDPOINT", "", _OPTIONAL_URL),
            events_source=r.text("REACTOR_EVENTS_SOURCE", "urn:mlops-reactor", _URI_REFERENCE),
            events_topic_key=r.raw("REACTOR_LOCAL_EVENTS_TOPIC_KEY"),
            outbox_retention_hours=r.integer("REACTOR_OUTBOX_RETENTION_HOURS", 168, 1, 8760),
            collect_container=r.text("REACTOR_COLLECT_CONTAINER", "inference-data", _CONTAINER),
            labels_container=r.text("REACTOR_LABELS_CONTAINER", "labels", _CONTAINER),
            labels_lookback_hours=r.integer("REACTOR_LABELS_LOOKBACK_HOURS", 24, 1, 24 * 90),
            live_quality_window_hours=r.integer("REACTOR_LIVE_QUALITY_WINDOW_HOURS", 24, 1, 24 * 90),
            local_collect_batch=r.integer("REACTOR_LOCAL_COLLECT_BATCH", 500, 1, 100_000),
            local_collect_flush_seconds=r.integer("REACTOR_LOCAL_COLLECT_FLUSH_SECONDS", 2, 1, 300),
            local_collect_buffer=r.integer("REACTOR_LOCAL_COLLECT_BUFFER", 100_000, 10, 10_000_000),
            drift_check=r.choice("REACTOR_DRIFT_CHECK", "LOCAL", ("LOCAL", "OFF")).lower(),
            drift_check_schedule=r.text("REACTOR_DRIFT_CHECK_SCHEDULE", "0 * * * * *", _NCRONTAB),
            drift_monitors=r.drift_monitors("REACTOR_DRIFT_MONITORS"),
        )
        r.problems += _drift_problems(settings)
        if settings.alerts_source == "azure" and not settings.alerts_metrics_endpoint.startswith("https://"):
            r.problems.append("REACTOR_ALERTS_METRICS_ENDPOINT must be an https URL when REACTOR_ALERTS_SOURCE=azure")
        if settings.alerts_source == "azure":
            r.problems += [f"REACTOR_ALERT_RULES: rule {rule.name} has a window under a minute, which Azure Monitor "
                           "metrics cannot answer (one-minute points)" for rule in settings.alert_rules.rules
                           if rule.kind == "metric" and rule.window < 60]
        if settings.ml_platform == "azure":
            r.problems += [f"REACTOR_AML_{n.upper()} is required when REACTOR_ML_PLATFORM=azure"
                           for n in _AML if not settings.aml[n]]
            if settings.release_policies and not settings.alerts_metrics_endpoint.startswith("https://"):
                r.problems.append("REACTOR_ALERTS_METRICS_ENDPOINT must be an https URL when releases run on Azure ML "
                                  "(canary health checks read the endpoint's metrics from Azure Monitor)")
        if settings.events_topic_endpoint.startswith("http://") and not settings.events_topic_key:
            r.problems.append("REACTOR_EVENTS_TOPIC_ENDPOINT is http: set REACTOR_LOCAL_EVENTS_TOPIC_KEY (a managed "
                              "identity's token is only ever sent over https)")
        if bool(settings.storage_connection) == bool(settings.storage_account):
            r.problems.append("set exactly one of REACTOR_STORAGE_CONNECTION (connection string) "
                              "and REACTOR_STORAGE_ACCOUNT (account name, managed identity)")
        if r.problems:
            raise SettingsError(r.problems)
        return settings

    @property
    def internal_container(self) -> str:
        """Container for the app's own blobs (dead-letter payloads and the like)."""
        return f"{self.table_prefix.lower()}-internal"


def _drift_problems(s: Settings) -> list[str]:
    """A monitor must be one its model's retraining policy listens to, or its signal starts nothing."""
    problems = []
    if s.drift_check == "local" and s.ml_platform == "azure" and s.drift_monitors:
        problems.append("REACTOR_DRIFT_CHECK=local reads baselines from the local ML platform; with "
                        "REACTOR_ML_PLATFORM=azure set it to off (Azure ML model monitoring checks drift)")
    for model, m in s.drift_monitors.items():
        policy = s.retrain_policies.get(model)
        if policy is not None and m.monitor not in policy.monitors:
            problems.append(f"REACTOR_DRIFT_MONITORS.{model}.monitor: {m.monitor!r} is not one of "
                            f"REACTOR_RETRAIN_POLICIES.{model}.monitors, so its signal would start no retrain")
    return problems
