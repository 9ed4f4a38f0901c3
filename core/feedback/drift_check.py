"""The drift check on the embedded default: a timer compares each production model's recent
inputs with the training baseline of the version serving production, and signals drift as
Azure ML would (``drift_signal``), so retraining's drift path runs unchanged. In Azure, Azure ML
model monitoring does this and the check is off (``REACTOR_DRIFT_CHECK=off``).

Per model, one state entity in ``{prefix}drift`` (PK model, RK "state"), changed only under
its ETag:

    checked_until        end of the last window checked: each window is checked once
    pending              the signal of a drifted window, until it is delivered
    signalled_version, signalled_at   the last signal, for ``repeat_seconds``

A window is claimed (its end and its signal written) before the signal is published, and
published again on later ticks until delivered (later windows wait for it), with the same id: at-least-once, and one
event per model per window for the app's ledger. Two instances ticking at once check a
window once (the loser's ETag write fails). A window in which another version took
production is skipped: its inputs went partly to a model with a different baseline.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.errors import ConflictError, PreconditionFailed
from core.feedback.drift import BaselineError, DriftReport, compare, feature_names
from core.feedback.drift_policy import DriftMonitor
from core.feedback.drift_signal import build_signal
from core.ledger import AuditRecord, Ledger
from core.logs import get_logger, log
from core.ports import Clock, StateStore
from core.release.store import ReleaseStore

ROW = "state"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_log = get_logger("drift")


class RecentInputs(Protocol):
    """Production inputs an endpoint scored in [since, until): rows with one value per name of
    ``features`` (the baseline's), in that order."""

    def inputs(self, endpoint: str, since: datetime, until: datetime, features: Sequence[str]) -> list[list[float]]:
        ...


class Baselines(Protocol):
    """``baseline.json`` of a registered model version, or None when it has none."""

    def baseline(self, model: str, version: str) -> Mapping[str, Any] | None: ...


# Publishes events (Event Grid schema); True once every subscriber took them.
Publish = Callable[[Sequence[Mapping[str, Any]]], bool]


class DriftCheck:
    def __init__(self, store: StateStore, ledger: Ledger, releases: ReleaseStore, baselines: Baselines,
                 inputs: RecentInputs | None, publish: Publish, monitors: Mapping[str, DriftMonitor], *,
                 endpoints: Mapping[str, str], prefix: str, topic: str, clock: Clock, enabled: bool = True) -> None:
        self._store, self._ledger, self._releases = store, ledger, releases
        self._baselines, self._inputs, self._publish = baselines, inputs, publish
        self.monitors, self._endpoints = dict(monitors), dict(endpoints)
        self._table, self._topic, self._clock = f"{prefix}drift", topic, clock
        self.enabled = enabled
        self._warned = False

    def with_inputs(self, inputs: RecentInputs) -> DriftCheck:
        """The same check reading production inputs from ``inputs``."""
        other = copy.copy(self)
        other._inputs = inputs
        return other

    # -- the timer ------------------------------------------------------------------------------
    def tick(self) -> list[Mapping[str, Any]]:
        if not self.enabled:
            return []
        if self._inputs is None:
            if not self._warned and self.monitors:
                self._warned = True
                log(_log, logging.WARNING, "drift check idle: no source of production inputs is wired")
            return []
        out: list[Mapping[str, Any]] = []
        for monitor in self.monitors.values():
            try:
                outcome = self._check(monitor)
            except Exception as exc:  # one model's trouble must not stall the others
                _log.exception("drift check of %s failed", monitor.model)
                outcome = {"model": monitor.model, "action": "error", "reason": f"{type(exc).__name__}: {exc}"}
            if outcome:
                out.append(outcome)
        return out

    def state(self, model: str) -> dict[str, Any]:
        entity = self._store.get(self._table, model, ROW)
        return _defaults() | (dict(entity.props) if entity else {})

    # -- one model ----------------------------------------------------------------------------
    def _check(self, m: DriftMonitor) -> Mapping[str, Any] | None:
        if not self._deliver_pending(m.model):
            # checking on could replace the undelivered signal with a newer one: deliver it first
            return {"model": m.model, "action": "waiting", "reason": "the last drift signal is not delivered yet"}
        now = self._clock()
        until = _window_end(now - timedelta(seconds=m.delay_seconds), m.window_seconds)
        since = until - timedelta(seconds=m.window_seconds)
        entity = self._store.get(self._table, m.model, ROW)
        state = _defaults() | (dict(entity.props) if entity else {})
        if _parse(state["checked_until"]) >= until:
            return None  # this window was checked already
        version, endpoint, serving_since = self._serving(m.model)
        report, outcome = None, ""
        if not version or not endpoint:
            outcome = "no production version"
        elif serving_since is not None and serving_since > since:
            outcome = f"version {version} took production during the window"
        else:
            report, outcome = self._compare(m, version, endpoint, since, until)
        signal = None
        if report is not None and report.drifted and not _repeating(state, version, now, m.repeat_seconds):
            signal = build_signal(m, report, topic=self._topic, version=version, endpoint=endpoint,
                                  since=since, until=until, now=now)
        claimed = {"checked_until": until.isoformat(), "last_outcome": outcome[:500], "last_version": version}
        if signal is not None:
            claimed.update(pending=json.dumps(signal), signalled_version=version, signalled_at=now.isoformat())
        if not self._save(m.model, entity, claimed):
            return {"model": m.model, "action": "skipped", "reason": "another instance checked this window"}
        result = {"model": m.model, "version": version, "window_end": until.isoformat(), "outcome": outcome}
        if report is not None and report.samples >= m.min_samples:
            self._audit_check(m, version, endpoint, since, until, report, signal)
        if signal is not None:
            self._deliver_pending(m.model)
            result["signal"] = signal["id"]
        return result

    def _compare(self, m: DriftMonitor, version: str, endpoint: str, since: datetime,
                 until: datetime) -> tuple[DriftReport | None, str]:
        baseline = self._baselines.baseline(m.model, version)
        if baseline is None:
            return None, f"{m.model}:{version} has no training baseline"
        assert self._inputs is not None
        try:
            names = feature_names(baseline)
            report = compare(baseline, self._inputs.inputs(endpoint, since, until, names), m.thresholds)
        except BaselineError as exc:
            return None, f"{m.model}:{version}: unusable baseline ({exc})"
        if report.samples < m.min_samples:
            return report, report.reason
        return report, ("drifted: " if report.drifted else "no drift: ") + report.reason

    def _serving(self, model: str) -> tuple[str, str, datetime | None]:
        """(version in production, production endpoint, when it took production if known)."""
        version = self._releases.facts(model).value.champion_version
        endpoint = self._endpoints.get(model, "")
        if not version:
            return "", endpoint, None
        found = self._releases.get(model, version)
        steps = [s for s in found.value.timeline if s.get("state") == "promoted"] if found else []
        return version, endpoint, _parse(str(steps[-1]["at"])) if steps else None

    # -- delivering ---------------------------------------------------------------------------
    def _deliver_pending(self, model: str) -> bool:
        """Publish the model's undelivered signal, if any; False while it stays undelivered."""
        entity = self._store.get(self._table, model, ROW)
        pending = str(entity.props.get("pending", "")) if entity else ""
        if not entity or not pending:
            return True
        event = json.loads(pending)
        try:
            delivered = self._publish([event])
        except Exception as exc:  # the host is down: kept, published again at the next tick
            delivered = False
            log(_log, logging.ERROR, "drift signal not published", model=model, event_id=event["id"],
                error=f"{type(exc).__name__}: {exc}")
        if not delivered:
            return False
        if self._save(model, entity, {"pending": ""}):
            self._ledger.audit(AuditRecord("drift.signalled", event["id"], event_id=event["id"],
                                           event_type=event["eventType"], model=model,
                                           detail={"action": "signalled", "subject": event["subject"]}))
        return True  # delivered (by us, or by another instance that cleared it first)

    # -- plumbing -----------------------------------------------------------------------------
    def _save(self, model: str, entity: Any, props: Mapping[str, Any]) -> bool:
        try:
            if entity is None:
                self._store.insert(self._table, model, ROW, {**_defaults(), **props})
            else:
                self._store.update(self._table, model, ROW, props, entity.etag)
        except (PreconditionFailed, ConflictError):
            return False
        return True

    def _audit_check(self, m: DriftMonitor, version: str, endpoint: str, since: datetime, until: datetime,
                     report: DriftReport, signal: Mapping[str, Any] | None) -> None:
        detail = {"action": "drifted" if report.drifted else "clear", "reason": report.reason,
                  "monitor": m.monitor, "endpoint": endpoint, "window": f"{since.isoformat()}/{until.isoformat()}",
                  "samples": report.samples, "rejected": report.rejected, "features": report.figures(),
                  "signal": signal["id"] if signal else "",
                  "thresholds": {"psi": m.psi_threshold, "ks_p_value": m.ks_p_value,
                                 "min_samples": m.min_samples, "min_features": m.min_features}}
        self._ledger.audit(AuditRecord("drift.checked", signal["id"] if signal else f"{m.model}/{until.isoformat()}",
                                       model=m.model, version=version, detail=detail))
        log(_log, logging.INFO, f"drift check: {detail['action']}", model=m.model, version=version,
            reason=report.reason)


def _repeating(state: Mapping[str, Any], version: str, now: datetime, repeat_seconds: int) -> bool:
    """A signal for this version went out less than ``repeat_seconds`` ago."""
    if state["signalled_version"] != version or not state["signalled_at"]:
        return False
    return now < _parse(state["signalled_at"]) + timedelta(seconds=repeat_seconds)


def _window_end(at: datetime, seconds: int) -> datetime:
    """The latest window boundary at or before ``at``; windows are aligned to the epoch."""
    elapsed = int((at - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


def _defaults() -> dict[str, Any]:
    return {"checked_until": _EPOCH.isoformat(), "pending": "", "signalled_version": "", "signalled_at": "",
            "last_outcome": "", "last_version": ""}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text) if text else _EPOCH
