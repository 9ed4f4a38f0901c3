"""The alerting service: ``tick`` evaluates every rule (a timer calls it), ``receive`` takes Azure
Monitor's alerts, and both feed one chain of stages, Alertmanager's:

    lifecycle (for / keep_firing_for) -> group -> inhibit -> silence -> dedup -> enqueue notification

Each transition and each action is an audit record, written only by the instance whose
ETag-conditional write won, so it happens once however many instances run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.alerting.common_schema import ReceivedAlert, parse_common_alert
from core.alerting.dispatch import GroupView, decide, due, group_key
from core.alerting.lifecycle import AlertState, State, step
from core.alerting.mute import inhibited, silenced
from core.alerting.rules import AlertingConfig, Rule
from core.alerting.silences import Silences
from core.alerting.sources import LogQuery, MetricQuery, MetricsSource
from core.alerting.store import AlertStore, GroupState, Stored, fingerprint
from core.ledger import AuditRecord, Ledger
from core.notify.model import Notification, NotificationSink
from core.ports import Clock, StateStore

RetrainAction = Callable[[str, str, str], Mapping[str, Any]]  # (model, reason, actor) -> outcome
RollbackAction = Callable[[str, str], Mapping[str, Any]]  # (model, reason) -> outcome
ACTOR = "alerting"
_log = logging.getLogger(__name__)


class Alerting:
    def __init__(self, store: StateStore, ledger: Ledger, sink: NotificationSink, source: MetricsSource,
                 config: AlertingConfig, *, prefix: str, clock: Clock, retrain: RetrainAction | None = None,
                 rollback: RollbackAction | None = None) -> None:
        self.config = config
        self.silences = Silences(store, ledger, prefix=prefix, clock=clock)
        self.alerts = AlertStore(store, prefix)
        self._ledger = ledger
        self._sink = sink
        self._source = source
        self._clock = clock
        self._retrain = retrain
        self._rollback = rollback

    # -- entry points -------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> dict[str, int]:
        """Evaluate every rule once, then flush the groups that are due."""
        now = now or self._clock()
        stored, seen, transitions = self.alerts.alerts(), set(), 0
        for rule, labels, value in self._observe(now):
            fp = fingerprint(labels)
            seen.add(fp)
            transitions += self._evaluate(rule, labels, value, stored.get(fp), now)
        for fp, old in stored.items():  # rules removed, or resources no longer reported: let them clear
            if fp not in seen and old.value.source == "rule" and old.value.state in ("pending", "firing"):
                gone = Rule(old.value.labels.get("alertname", ""), "metric", ">", 0.0, 60, "info")
                transitions += self._evaluate(gone, old.value.labels, None, old, now)
        return {"rules": len(self.config.rules), "transitions": transitions, "notifications": self.flush(now)}

    def receive(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """An Azure Monitor common-schema alert; ``RequestError`` naming the field when malformed."""
        received = parse_common_alert(body)
        changed = [a.fingerprint for a in received if self._receive(a)]
        return {"alerts": len(received), "changed": changed, "notifications": self.flush(self._clock())}

    def incident(self, name: str, labels: Mapping[str, str], firing: bool, summary: str) -> bool:
        """An incident the app raises itself (a release failed or rolled back, an approval expired):
        one alert per name and labels, deduplicated, grouped and routed like any other."""
        full = {**labels, "alertname": name}
        fp = fingerprint(full)
        if not firing and self.alerts.alert(fp) is None:
            return False  # nothing to resolve
        alert = ReceivedAlert(fp, full, "firing" if firing else "resolved", self._clock(), {"summary": summary})
        changed = self._receive(alert, source="reactor")
        if changed:
            self.flush(self._clock())
        return changed

    def flush(self, now: datetime) -> int:
        """Group, mute and dedup every alert; enqueue what is due. Returns the notifications enqueued."""
        views, groups = self._views(now), self.alerts.groups()
        sent = 0
        for key in views.keys() | {k for k, g in groups.items() if g.value.created_at or g.value.sent_kind == "firing"}:
            view = views.get(key) or GroupView(key, groups[key].value.labels, [], 0)
            sent += self._flush_group(view, groups.get(key), now)
        return sent

    # -- lifecycle ----------------------------------------------------------------------------
    def _observe(self, now: datetime) -> Iterator[tuple[Rule, dict[str, str], float | None]]:
        metric_rules = [r for r in self.config.rules if r.kind == "metric"]
        log_rules = [r for r in self.config.rules if r.kind == "log"]
        if metric_rules:
            queries = [MetricQuery(r.resource_ids, r.namespace, r.metric, r.aggregation, r.window, r.dimensions)
                       for r in metric_rules]
            for rule, values in zip(metric_rules, self._source.query_metrics(queries, now), strict=True):
                for resource in rule.resource_ids:
                    yield rule, _labels(rule, resource), values.get(resource)
        if log_rules:
            queries_l = [LogQuery(r.workspace_id, r.query, r.window) for r in log_rules]
            for rule, value in zip(log_rules, self._source.query_logs(queries_l, now), strict=True):
                yield rule, _labels(rule, ""), value

    def _evaluate(self, rule: Rule, labels: dict[str, str], value: float | None, old: Stored | None,
                  now: datetime) -> int:
        prev: AlertState = old.value if old else AlertState(fingerprint(labels), labels)
        new, transition = step(prev, rule.breached(value), value, now, rule.for_, rule.keep_firing_for)
        if new == prev:
            return 0
        if transition is not None:
            new = replace(new, labels=labels, annotations=_annotations(rule, value))
        if not self.alerts.save_alert(new, old.etag if old else ""):
            return 0  # another instance evaluated it first and recorded the transition
        if transition is not None:
            self._record(new, transition, rule)
        return int(transition is not None)

    def _receive(self, alert: ReceivedAlert, source: str = "azure-monitor") -> bool:
        old = self.alerts.alert(alert.fingerprint)
        at = alert.at.isoformat()
        if old is not None and (old.value.state == alert.state or (old.value.changed_at or "") > at):
            return False  # a redelivery, or older than what we know (webhooks arrive out of order)
        base = old.value if old else AlertState(alert.fingerprint, alert.labels, source=source)
        times = {"fired_at": at, "resolved_at": ""} if alert.state == "firing" else {"resolved_at": at}
        state: State = "firing" if alert.state == "firing" else "resolved"
        new = replace(base, labels=alert.labels, state=state, changed_at=at, annotations=alert.annotations, **times)
        if not self.alerts.save_alert(new, old.etag if old else ""):
            return False
        self._record(new, state, None)
        return True

    def _record(self, alert: AlertState, transition: State, rule: Rule | None) -> None:
        detail = {"labels": alert.labels, "value": alert.value, "source": alert.source,
                  "summary": alert.annotations.get("summary", ""), "changed_at": alert.changed_at}
        self._ledger.audit(AuditRecord(f"alert.{transition}", alert.fingerprint, function=ACTOR,
                                       model=alert.labels.get("model", ""), detail=detail))
        if transition == "firing" and rule is not None and rule.action is not None:
            self._act(rule, alert)

    def _act(self, rule: Rule, alert: AlertState) -> None:
        assert rule.action is not None
        detail: dict[str, Any] = {"action": rule.action.type, "rule": rule.name, "alert": alert.fingerprint,
                                  "labels": alert.labels}
        if rule.action.type == "rollback":
            detail.update(self._call(self._rollback, "rollback", rule, alert))
        elif self._retrain is None:
            detail["outcome"] = "not configured (no retrain callable was given)"
        else:
            detail.update(model=rule.action.model, **self._call_retrain(rule, alert))
        self._ledger.audit(AuditRecord("alert.action", alert.fingerprint, function=ACTOR,
                                       model=rule.action.model, detail=detail))

    def _call(self, action: RollbackAction | None, name: str, rule: Rule, alert: AlertState) -> dict[str, Any]:
        assert rule.action is not None
        if action is None:
            return {"outcome": f"not configured (no {name} callable was given)"}
        model = rule.action.model or alert.labels.get("model", "")  # rollback: the alert's model by default
        if not model:
            return {"outcome": "failed", "error": "the rule names no model and the alert has no 'model' label"}
        reason = f"alert {rule.name} firing ({alert.fingerprint}): {alert.annotations.get('summary', '')}"
        try:
            return {"outcome": dict(action(model, reason[:400])), "model": model}
        except Exception as exc:  # one failing action must not stop the evaluation of the other rules
            _log.error("alert action %s for %s failed: %s", name, rule.action.model, exc)
            return {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}

    def _call_retrain(self, rule: Rule, alert: AlertState) -> dict[str, Any]:
        assert self._retrain is not None and rule.action is not None
        reason = f"alert {rule.name} firing ({alert.fingerprint}): {alert.annotations.get('summary', '')}"
        try:
            return {"outcome": dict(self._retrain(rule.action.model, reason[:400], ACTOR))}
        except Exception as exc:  # one failing action must not stop the evaluation of the other rules
            _log.error("alert action retrain for %s failed: %s", rule.action.model, exc)
            return {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}

    # -- grouping, muting, dedup ---------------------------------------------------------------
    def _views(self, now: datetime) -> dict[str, GroupView]:
        firing = [s.value for s in self.alerts.alerts().values() if s.value.firing]
        muted = inhibited(firing, self.config.inhibit_rules) | silenced(firing, self.silences.active(now), now)
        views: dict[str, GroupView] = {}
        for alert in firing:
            key, labels = group_key(alert.labels, self.config.group_by)
            view = views.setdefault(key, GroupView(key, labels, [], 0))
            if alert.fingerprint in muted:
                views[key] = replace(view, muted=view.muted + 1)
            else:
                view.firing.append(alert)
        return views

    def _flush_group(self, view: GroupView, old: Stored | None, now: datetime) -> int:
        g: GroupState = old.value if old else GroupState(view.key, view.labels)
        start = g
        if (view.firing or view.muted) and not g.created_at:
            g = replace(g, created_at=now.isoformat())  # a new episode: group_wait runs from now
        note: Notification | None = None
        if due(g, self.config, now):
            g, note = decide(g, view, self.config, now)
        if g == start:
            return 0
        if note is not None:
            self._sink.enqueue(note)  # before recording the flush: the id makes a retry harmless
        if not self.alerts.save_group(g, old.etag if old else "") or note is None:
            return 0
        self._ledger.audit(AuditRecord("alert.notified", note.id, function=ACTOR, model=note.labels.get("model", ""),
                                       detail={"kind": note.kind, "alerts": note.alerts, "group": view.labels,
                                               "dedup_key": note.dedup_key, "title": note.title}))
        return 1


def _labels(rule: Rule, resource: str) -> dict[str, str]:
    labels = {**rule.labels, "alertname": rule.name, "severity": rule.severity}
    return {**labels, "resource": resource} if resource else labels


def _annotations(rule: Rule, value: float | None) -> dict[str, str]:
    split = "{" + ", ".join(f"{k}={v}" for k, v in rule.dimensions) + "}" if rule.dimensions else ""
    what = f"{rule.metric}{split} ({rule.aggregation})" if rule.kind == "metric" else "log query"
    shown = "no data" if value is None else f"{value:g}"
    notes = {"summary": f"{rule.name}: {what} = {shown} ({rule.operator} {rule.threshold:g})"}
    return {**notes, "runbook": rule.runbook} if rule.runbook else notes
