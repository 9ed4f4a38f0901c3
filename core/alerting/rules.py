"""Alert rules and alert routing from configuration: one JSON document (the ``REACTOR_ALERT_RULES``
setting holds the JSON itself, or the path of a file holding it), validated as a whole at start
so one error lists every problem with its JSON path.

    {"group_by": ["endpoint"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
     "send_resolved": true,
     "inhibit_rules": [{"source": ["alertname=\\"EndpointDown\\""], "target": ["alertname=~\\"Latency.*\\""],
                        "equal": ["endpoint"]}],
     "rules": [
       {"name": "LatencyHigh", "kind": "metric", "resource_ids": ["/subscriptions/.../onlineEndpoints/ep"],
        "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "metric": "RequestLatency_P99", "aggregation": "average", "window": "5m", "operator": ">",
        "dimensions": {"deployment": "blue"}, "threshold": 500, "for": "5m", "keep_firing_for": "10m",
        "severity": "warning",
        "labels": {"model": "diabetes", "endpoint": "ep", "team": "ml"}, "runbook": "https://...",
        "action": {"type": "retrain", "model": "diabetes"}},
       {"name": "Errors", "kind": "log", "workspace_id": "...", "query": "... | summarize value=count()",
        "window": "15m", "operator": ">=", "threshold": 10, "severity": "error"}]}

Durations are seconds (a number) or text such as ``"90s"``, ``"5m"``, ``"1h30m"``. A metric rule's
``dimensions`` narrow the metric as an Azure Monitor dimension filter does (``{"statusCodeClass": "5xx"}``
is ``statusCodeClass eq '5xx'``). A window is at least 10 s; Azure Monitor's metrics have one-minute
points, so the settings refuse a metric window under a minute when the rules run on Azure Monitor.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.alerting.matchers import Matcher, parse_matcher
from core.notify.model import SEVERITIES, Severity

SETTING = "REACTOR_ALERT_RULES"
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
ACTIONS = ("retrain", "rollback")
RESERVED = ("alertname", "severity", "resource")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DIMENSION = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MIN_WINDOW = 10  # seconds
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (86_400, 3_600, 60, 1)


@dataclass(frozen=True)
class Action:
    type: str  # retrain | rollback
    model: str = ""


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # metric | log
    operator: str
    threshold: float
    window: int  # seconds
    severity: Severity
    for_: int = 0
    keep_firing_for: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    runbook: str = ""
    action: Action | None = None
    resource_ids: tuple[str, ...] = ()  # metric rules
    namespace: str = ""
    metric: str = ""
    aggregation: str = "average"
    dimensions: tuple[tuple[str, str], ...] = ()  # (name, value), sorted: an Azure Monitor dimension filter
    workspace_id: str = ""  # log rules
    query: str = ""

    def breached(self, value: float | None) -> bool:
        """No data is no breach (as in Prometheus: no series, no alert)."""
        return value is not None and OPERATORS[self.operator](value, self.threshold)


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertingConfig:
    rules: tuple[Rule, ...] = ()
    group_by: tuple[str, ...] = ("endpoint",)
    group_wait: int = 30
    group_interval: int = 300
    repeat_interval: int = 14_400
    send_resolved: bool = True
    inhibit_rules: tuple[InhibitRule, ...] = ()

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def load_alerting(value: str) -> tuple[AlertingConfig, list[str]]:
    """The setting's value: JSON (starts with ``{``), a file path, or empty (no rules)."""
    text = value.strip()
    if text and not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            return AlertingConfig(), [f"{SETTING}: cannot read file {value!r}: {exc.strerror or exc}"]
    return parse_alerting(text)


def parse_alerting(text: str) -> tuple[AlertingConfig, list[str]]:
    """(config, problems); every problem names its JSON path."""
    if not text.strip():
        return AlertingConfig(), []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return AlertingConfig(), [f"{SETTING} is not valid JSON: {exc}"]
    if not isinstance(doc, Mapping):
        return AlertingConfig(), [f"{SETTING} must be a JSON object"]
    p = _Parser()
    config = p.config(doc)
    return config, p.problems


class _Parser:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, reason: str) -> None:
        self.problems.append(f"{where}: {reason}")

    def config(self, doc: Mapping[str, Any]) -> AlertingConfig:
        known = {"rules", "group_by", "group_wait", "group_interval", "repeat_interval", "send_resolved",
                 "inhibit_rules"}
        for key in doc:
            if key not in known:
                self.fail(f"{SETTING}.{key}", "unknown key")
        rules = tuple(r for i, raw in enumerate(self.array(doc, "rules", SETTING))
                      if (r := self.rule(f"{SETTING}.rules[{i}]", raw)) is not None)
        names = [r.name for r in rules]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.fail(f"{SETTING}.rules", f"rule name {name!r} is used more than once")
        inhibit = tuple(ir for i, raw in enumerate(self.array(doc, "inhibit_rules", SETTING))
                        if (ir := self.inhibit(f"{SETTING}.inhibit_rules[{i}]", raw)) is not None)
        d = AlertingConfig()
        return AlertingConfig(
            rules=rules, inhibit_rules=inhibit,
            group_by=tuple(self.labels_list(doc, "group_by", SETTING, d.group_by)),
            group_wait=self.duration(doc, "group_wait", SETTING, d.group_wait),
            group_interval=self.duration(doc, "group_interval", SETTING, d.group_interval, minimum=1),
            repeat_interval=self.duration(doc, "repeat_interval", SETTING, d.repeat_interval, minimum=1),
            send_resolved=self.boolean(doc, "send_resolved", SETTING, d.send_resolved))

    # -- rules ------------------------------------------------------------------------------
    def rule(self, where: str, raw: Any) -> Rule | None:
        if not isinstance(raw, Mapping):
            self.fail(where, "must be an object")
            return None
        before = len(self.problems)
        kind = self.choice(raw, "kind", where, ("metric", "log"), required=True)
        name = self.text(raw, "name", where, required=True, pattern=_NAME)
        common: dict[str, Any] = dict(
            name=name, kind=kind, operator=self.choice(raw, "operator", where, tuple(OPERATORS), required=True),
            threshold=self.number(raw, "threshold", where), window=self.duration(raw, "window", where, 300, MIN_WINDOW),
            severity=self.choice(raw, "severity", where, SEVERITIES, default="warning"),
            for_=self.duration(raw, "for", where, 0), keep_firing_for=self.duration(raw, "keep_firing_for", where, 0),
            labels=self.rule_labels(raw, where), runbook=self.url(raw, "runbook", where),
            action=self.action(raw.get("action"), f"{where}.action"))
        specific = self.metric_fields(raw, where) if kind == "metric" else self.log_fields(raw, where)
        allowed = set(common) - {"for_"} | {"for", *specific}
        for key in raw:
            if key not in allowed:
                self.fail(f"{where}.{key}", "unknown key" + (" for a metric rule" if kind == "metric" else ""))
        return Rule(**common, **specific) if len(self.problems) == before else None

    def metric_fields(self, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        ids = raw.get("resource_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.startswith("/") for i in ids):
            self.fail(f"{where}.resource_ids", "must be a non-empty list of Azure resource ids")
            ids = []
        return {"resource_ids": tuple(i.lower() for i in ids),
                "namespace": self.text(raw, "namespace", where, required=True),
                "metric": self.text(raw, "metric", where, required=True),
                "aggregation": self.choice(raw, "aggregation", where, AGGREGATIONS, default="average"),
                "dimensions": self.dimensions(raw, where)}

    def dimensions(self, raw: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
        found = raw.get("dimensions", {})
        if not isinstance(found, Mapping):
            self.fail(f"{where}.dimensions", 'must be an object of dimension name -> value, e.g. {"statusCodeClass": '
                                             '"5xx"}')
            return ()
        for key, value in found.items():
            if not _DIMENSION.match(str(key)):
                self.fail(f"{where}.dimensions.{key}", "not a dimension name")
            elif not isinstance(value, str) or not value.strip() or "'" in value:
                self.fail(f"{where}.dimensions.{key}", "must be non-empty text without quotes ('*' for any)")
        return tuple(sorted((str(k), str(v).strip()) for k, v in found.items()))

    def log_fields(self, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        return {"workspace_id": self.text(raw, "workspace_id", where, required=True),
                "query": self.text(raw, "query", where, required=True)}

    def rule_labels(self, raw: Mapping[str, Any], where: str) -> dict[str, str]:
        labels = raw.get("labels", {})
        if not isinstance(labels, Mapping):
            self.fail(f"{where}.labels", "must be an object of label name -> text")
            return {}
        for key, value in labels.items():
            if not _LABEL.match(str(key)) or key in RESERVED:
                self.fail(f"{where}.labels.{key}", f"not a usable label name (reserved: {', '.join(RESERVED)})")
            elif not isinstance(value, str) or not value:
                self.fail(f"{where}.labels.{key}", "must be non-empty text")
        return {str(k): str(v) for k, v in labels.items()}

    def action(self, raw: Any, where: str) -> Action | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.fail(where, 'must be an object such as {"type": "retrain", "model": "name"}')
            return None
        kind = self.choice(raw, "type", where, ACTIONS, required=True)
        model = self.text(raw, "model", where, required=kind == "retrain")
        return Action(kind, model)

    def inhibit(self, where: str, raw: Any) -> InhibitRule | None:
        if not isinstance(raw, Mapping):
            self.fail(where, "must be an object with source, target and equal")
            return None
        source, target = self.matchers(raw, "source", where), self.matchers(raw, "target", where)
        return InhibitRule(source, target, tuple(self.labels_list(raw, "equal", where, ())))

    def matchers(self, raw: Mapping[str, Any], key: str, where: str) -> tuple[Matcher, ...]:
        found: list[Matcher] = []
        for i, text in enumerate(self.array(raw, key, where, required=True)):
            try:
                found.append(parse_matcher(text))
            except ValueError as exc:
                self.fail(f"{where}.{key}[{i}]", str(exc))
        return tuple(found)

    # -- scalars ----------------------------------------------------------------------------
    def array(self, raw: Mapping[str, Any], key: str, where: str, required: bool = False) -> list[Any]:
        value = raw.get(key, None)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (required and not value):
            self.fail(f"{where}.{key}", "must be a " + ("non-empty " if required else "") + "list")
            return []
        return value

    def labels_list(self, raw: Mapping[str, Any], key: str, where: str, default: tuple[str, ...]) -> list[str]:
        if key not in raw:
            return list(default)
        items = self.array(raw, key, where)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not _LABEL.match(item):
                self.fail(f"{where}.{key}[{i}]", "must be a label name")
        return [str(i) for i in items]

    def text(self, raw: Mapping[str, Any], key: str, where: str, required: bool = False,
             pattern: re.Pattern[str] | None = None) -> str:
        value = raw.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(f"{where}.{key}", "is required and must be non-empty text" if required else "must be text")
            return ""
        if value and pattern is not None and not pattern.match(value):
            self.fail(f"{where}.{key}", f"{value!r} does not match {pattern.pattern}")
        return value.strip()

    def url(self, raw: Mapping[str, Any], key: str, where: str) -> str:
        value = self.text(raw, key, where)
        if value and not value.startswith(("https://", "http://")):
            self.fail(f"{where}.{key}", "must be an http(s) URL")
        return value

    def choice(self, raw: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...],
               required: bool = False, default: str = "") -> Any:
        value = raw.get(key, None if required else default)
        if value not in choices:
            self.fail(f"{where}.{key}", f"must be one of {', '.join(choices)}")
            return default or choices[0]
        return value

    def number(self, raw: Mapping[str, Any], key: str, where: str) -> float:
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{where}.{key}", "is required and must be a number")
            return 0.0
        return float(value)

    def boolean(self, raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", "must be true or false")
            return default
        return value

    def duration(self, raw: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
        value = raw.get(key, default)
        seconds = parse_duration(value)
        if seconds is None or not minimum <= seconds <= 30 * 86_400:
            self.fail(f"{where}.{key}", f"must be a duration from {minimum}s to 30d (seconds, or text like '5m')")
            return default
        return seconds


def parse_duration(value: Any) -> int | None:
    """Seconds from a number or text such as ``"1h30m"``; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value >= 0 else None
    found = _DURATION.match(value.strip()) if isinstance(value, str) and value.strip() else None
    if found is None:
        return None
    return sum(int(part or 0) * unit for part, unit in zip(found.groups(), _UNITS, strict=True))
