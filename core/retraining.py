"""Retraining: new data and drift become one well-formed job per model, never one per file.

Each model has one state entity in ``{prefix}retrain`` (PK model, RK "state"), changed only by
ETag-conditional read-modify-write, so two host instances never both start a job:

    new CSV under the model's prefix -> joins the open window (opened by the first file)
    window expired + thresholds met  -> start            (the timer closes windows)
    drift / manual request           -> start at once     (no window, no data threshold)
    a job already in flight          -> queued: the next job starts when it finishes
    within the cooldown              -> deferred (manual requests are not)

A start is recorded (the slot taken, the pending triggers moved into the decision) *before*
the job is submitted; the job's name derives from the decision, and submit is get-or-create,
so a crash between the two is repaired by the timer resubmitting the same name.

A job that fails or is canceled raises an incident (``RetrainingJobFailed``, labelled with the
model, job and status) through alerting *before* its slot is released, so a crash in between
raises it again on redelivery (alerting deduplicates it); the model's next completed job resolves
every incident its failed jobs raised, which the state entity lists until then.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.coalesce import Coalescer, Pending
from core.errors import ConflictError, PreconditionFailed, StoreError
from core.events import BlobCreated, DatasetDriftDetected, Event, RunCompleted, RunEvent, RunStatusChanged
from core.ledger import AuditRecord, Ledger
from core.logs import get_logger, log
from core.ml_platform import (
    TAG_DECISION,
    TAG_MODEL,
    TAG_REQUESTED_BY,
    BlobFolder,
    DataRef,
    Job,
    MLPlatform,
    RetrainRequest,
)
from core.ports import Clock, Entity, StateStore
from core.retrain_policy import RetrainPolicy

ROW = "state"
MAX_LINEAGE = 50  # trigger ids kept on the state entity; the audit trail keeps every one
INCIDENT = "RetrainingJobFailed"
INCIDENT_SEVERITY = {"failed": "error", "canceled": "warning"}
FINAL_STATUSES = ("completed", "failed", "canceled", "cancelled")
Incident = Callable[[str, Mapping[str, str], bool, str], object]  # (alertname, labels, firing, summary)
_log = get_logger("retraining")


@dataclass(frozen=True)
class Decision:
    action: str  # started | coalesced | queued | deferred | skipped | completed | failed | ignored | idle
    model: str = ""
    reason: str = ""
    job: str = ""
    decision_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    audit: bool = True

    def outcome(self) -> dict[str, Any]:
        out = {"action": self.action, "model": self.model, "reason": self.reason, "job": self.job,
               "decision_id": self.decision_id, **self.detail}
        return {k: v for k, v in out.items() if v not in ("", None)}


_UNCHANGED = object()
# A change of a model's state, a pure function of it (safe to apply again after a lost race):
# it edits the state in place and returns its Decision, or _UNCHANGED.
Change = Callable[[dict[str, Any]], Any]


class Retraining:
    def __init__(self, store: StateStore, ledger: Ledger, platform: MLPlatform | None,
                 policies: Mapping[str, RetrainPolicy], *, prefix: str, clock: Clock,
                 code_version: str = "dev", incident: Incident | None = None) -> None:
        self._code_version = code_version
        self._incident = incident
        self._store = store
        self._ledger = ledger
        self._platform = platform
        self.policies = dict(policies)
        self._table = f"{prefix}retrain"
        self._clock = clock
        self._changes: Coalescer[Change] = Coalescer(self._apply)
        self._known: dict[Hashable, Entity] = {}  # each model's state as last read or written here

    # -- triggers ---------------------------------------------------------------------------
    def ignored(self, event: Event) -> Mapping[str, Any] | None:
        """The outcome of an event retraining has nothing to do for, or None (the intake's triage:
        such an event is recorded in one write; the handlers below begin with the same answer)."""
        if isinstance(event, BlobCreated):
            return None if self._fed_by(event) else _not_fed(event)
        if isinstance(event, DatasetDriftDetected) or (isinstance(event, RunStatusChanged) and event.is_monitor_breach):
            return None if self._watcher(event) else _not_watched(event)
        if isinstance(event, RunEvent):
            if event.tags.get(TAG_MODEL, "") not in self.policies:
                return {"action": "ignored", "reason": "not a retraining job of this app"}
            if _run_status(event).lower() not in FINAL_STATUSES:
                return {"action": "ignored", "reason": f"run status {_run_status(event)!r} is not final"}
        return None

    def on_blob_created(self, event: Event, ctx: Any) -> Mapping[str, Any]:
        assert isinstance(event, BlobCreated)
        policy = self._fed_by(event)
        if policy is None:
            return _not_fed(event)
        ref = {"url": event.url, "etag": event.etag, "size": event.content_length, "event_id": event.id}
        return self._try_start(policy, add=lambda s: self._add_data(policy, s, ref)).outcome()

    def on_drift(self, event: Event, ctx: Any) -> Mapping[str, Any]:
        policy = self._watcher(event)
        if policy is None:
            return _not_watched(event)
        return self._try_start(policy, add=lambda s: self._add_trigger(policy, s, "drift", event.id, "")).outcome()

    def _fed_by(self, event: BlobCreated) -> RetrainPolicy | None:
        return next((p for p in self.policies.values() if p.feeds(event.container, event.blob_name)), None)

    def _watcher(self, event: Event) -> RetrainPolicy | None:
        monitor = _monitor(event)
        return next((p for p in self.policies.values() if monitor in p.monitors), None)

    def request(self, model: str, reason: str, actor: str) -> Mapping[str, Any]:
        """A manual retrain (admin API, ``reactor retrain``): no window, no threshold, no cooldown."""
        policy = self.policies.get(model)
        if policy is None:
            raise KeyError(f"no retraining policy for model {model!r}")
        note = f"{actor}: {reason}"[:500]
        return self._try_start(policy, add=lambda s: self._add_trigger(policy, s, "manual", "", note)).outcome()

    def on_run_event(self, event: Event, ctx: Any) -> Mapping[str, Any]:
        assert isinstance(event, RunEvent)
        if isinstance(event, RunStatusChanged) and event.is_monitor_breach:
            return self.on_drift(event, ctx)
        skip = self.ignored(event)
        if skip is not None:
            return skip
        model, status = event.tags[TAG_MODEL], _run_status(event).lower()
        # Where a person reads what happened: the studio link in Azure, the job log locally.
        link = event.properties.get("reactor_log", "") or event.properties.get("studio_url", "")
        error = event.properties.get("reactor_error", "")[:2000]
        return self.finish_job(model, event.run_id, "canceled" if status == "cancelled" else status,
                               {**event.tags, "reactor_job_url": link, "reactor_error": error}).outcome()

    # -- the timer --------------------------------------------------------------------------
    def tick(self) -> list[Mapping[str, Any]]:
        """Close expired windows, repair lost submits and lost outcomes. Runs on a timer."""
        outcomes: list[Mapping[str, Any]] = []
        for policy in self.policies.values():
            self._reconcile(policy)
            decision = self._try_start(policy)
            if decision.action != "idle":
                outcomes.append(decision.outcome())
        return outcomes

    def state(self, model: str) -> dict[str, Any]:
        entity = self._store.get(self._table, model, ROW)
        return _defaults() | (dict(entity.props) if entity else {})

    # -- state changes (each returns a Decision or _UNCHANGED) -----------------------------
    def _add_data(self, policy: RetrainPolicy, s: dict[str, Any], ref: dict[str, Any]) -> Any:
        self._open_window(s)
        s["pending_files"] += 1
        s["pending_bytes"] += int(ref["size"])
        s["pending_total"] += 1
        s["pending_data"] = _capped(s["pending_data"], ref)
        return Decision("coalesced", policy.model, decision_id=s["window_id"],
                        detail={"pending_files": s["pending_files"], "trigger": ref["event_id"]}, audit=False)

    def _add_trigger(self, policy: RetrainPolicy, s: dict[str, Any], kind: str, event_id: str, note: str) -> Any:
        self._open_window(s)
        s[kind] = note or event_id or "yes"
        s["pending_total"] += 1
        if event_id:
            s["pending_data"] = _capped(s["pending_data"], {"event_id": event_id, "kind": kind})
        return Decision("coalesced", policy.model, reason=kind, decision_id=s["window_id"], audit=False)

    def _open_window(self, s: dict[str, Any]) -> None:
        if not s["window_id"]:
            s["window_id"] = uuid.uuid4().hex
            s["window_opened_at"] = self._clock().isoformat()
            s["noted"] = ""

    def _decide(self, policy: RetrainPolicy, s: dict[str, Any], now: datetime) -> Any:
        if not s["window_id"]:
            return _UNCHANGED
        if s["in_flight_job"]:
            return self._note(s, "queued", Decision("queued", policy.model, "a job is in flight",
                                                    job=s["in_flight_job"], decision_id=s["window_id"]))
        if not (s["manual"] or s["drift"]):
            if now < _parse(s["window_opened_at"]) + timedelta(seconds=policy.window_seconds):
                return _UNCHANGED  # still coalescing
            if s["pending_files"] < policy.min_new_files or s["pending_bytes"] < policy.min_new_bytes:
                return self._note(s, "skipped", Decision(
                    "skipped", policy.model, "below the data threshold", decision_id=s["window_id"],
                    detail={"pending_files": s["pending_files"], "pending_bytes": s["pending_bytes"]}))
        cooldown_ends = _parse(s["last_started_at"]) + timedelta(seconds=policy.cooldown_seconds)
        if not s["manual"] and now < cooldown_ends:
            return self._note(s, "deferred", Decision("deferred", policy.model, "cooldown",
                                                      decision_id=s["window_id"],
                                                      detail={"until": cooldown_ends.isoformat()}))
        return self._claim_slot(policy, s, now)

    def _note(self, s: dict[str, Any], kind: str, decision: Decision) -> Any:
        """Audit a waiting decision once per window, not at every trigger and tick."""
        if s["noted"] == kind:
            return _UNCHANGED
        s["noted"] = kind
        return decision

    def _claim_slot(self, policy: RetrainPolicy, s: dict[str, Any], now: datetime) -> Decision:
        reason = "manual" if s["manual"] else "drift" if s["drift"] else "data"
        decision_id = s["window_id"]
        job = f"retrain-{policy.model.lower().replace('_', '-').replace('.', '-')}-{decision_id[:12]}"
        request = self._request(policy, job, decision_id, reason, json.loads(s["pending_data"]),
                                requested_by=s["manual"].partition(":")[0] if s["manual"] else "")
        detail = {"triggers": [d["event_id"] for d in json.loads(s["pending_data"]) if d.get("event_id")],
                  "trigger_count": s["pending_total"], "files": s["pending_files"], "bytes": s["pending_bytes"],
                  "drift": s["drift"], "manual": s["manual"]}
        s.update(in_flight_job=job, in_flight_since=now.isoformat(), in_flight_request=request.to_json(),
                 submitted=False, last_started_at=now.isoformat(), started_decision=decision_id, started_job=job,
                 **_empty_window())
        return Decision("started", policy.model, reason, job=job, decision_id=decision_id, detail=detail)

    def _request(self, policy: RetrainPolicy, job: str, decision_id: str, reason: str,
                 pending: list[dict[str, Any]], requested_by: str = "") -> RetrainRequest:
        data = tuple(DataRef(d["url"], d.get("etag", ""), int(d.get("size", 0)), d["event_id"])
                     for d in pending if d.get("url"))
        return RetrainRequest(job, policy.model, BlobFolder(policy.container, policy.prefix), policy.test_container,
                              policy.test_blob, policy.metric, policy.min_improvement, reason,
                              correlation_id=decision_id, decision_id=decision_id, new_data=data,
                              tags={"reactor_code_version": self._code_version,
                                    # who asked, so that person cannot approve the release (separation of duties)
                                    **({TAG_REQUESTED_BY: requested_by} if requested_by else {})})

    # -- starting, finishing, repairing ---------------------------------------------------
    def _try_start(self, policy: RetrainPolicy, add: Change | None = None) -> Decision:
        """Add a trigger (``add``) and decide whether its window starts a job, in one read-modify-write
        of the model's state: one round trip, and nobody can start the window between the two."""
        now = self._clock()

        def change(s: dict[str, Any]) -> Any:
            trigger = add(s) if add is not None else _UNCHANGED
            decided = self._decide(policy, s, now)
            return _UNCHANGED if trigger is _UNCHANGED and decided is _UNCHANGED else (trigger, decided)

        result, state = self._changes.run(policy.model, change)
        trigger, decided = (_UNCHANGED, _UNCHANGED) if result is _UNCHANGED else result
        if decided is _UNCHANGED and trigger is not _UNCHANGED:
            return _started_later(trigger, state) or trigger
        if decided is _UNCHANGED:
            return Decision("idle", policy.model, audit=False)
        self._audit(decided)
        if decided.action == "started":
            self._submit(policy.model)
        return decided

    def _submit(self, model: str) -> None:
        s = self.state(model)
        if not s["in_flight_job"] or s["submitted"] or self._platform is None:
            return
        request = RetrainRequest.from_json(s["in_flight_request"])
        try:
            job = self._platform.submit_retraining(request)
        except Exception as exc:  # platform down: the timer resubmits the same job name later
            self._audit(Decision("submit_failed", model, f"{type(exc).__name__}: {exc}", job=request.job_name,
                                 decision_id=request.decision_id))
            _log.error("retraining job %s could not be submitted: %s", request.job_name, exc)
            return
        self._change(model, lambda st: _mark_submitted(st, job))

    def finish_job(self, model: str, job: str, status: str, tags: Mapping[str, str]) -> Decision:
        before = self.state(model)
        incidents = self._incidents(model, job, status, tags, before) if before["in_flight_job"] == job else {}
        decided = self._change(model, lambda s: _release_slot(s, job, status))
        if decided is None:
            return Decision("ignored", model, "the job is not in flight (already finished)", job=job, audit=False)
        detail = {k: v for k, v in tags.items() if k.startswith("reactor_") and k != TAG_MODEL}
        outcome = Decision(decided, model, job=job, decision_id=tags.get(TAG_DECISION, ""),
                           detail={**detail, **incidents})
        self._audit(outcome)
        if decided != "completed":
            log(_log, logging.ERROR, f"retraining job {decided}", model=model, job=job,
                url=tags.get("reactor_job_url", ""))
        self._try_start(self.policies[model])
        return outcome

    def _incidents(self, model: str, job: str, status: str, tags: Mapping[str, str],
                   s: Mapping[str, Any]) -> dict[str, Any]:
        """Raise the failed job's incident, or resolve the earlier failures' on success; never raises."""
        if self._incident is None:
            return {}
        if status in INCIDENT_SEVERITY:
            error = tags.get("reactor_error", "") or "no error text"
            link = tags.get("reactor_job_url", "")
            summary = f"retraining job {job} of {model} {status}: {error[:300]}" + (f" ({link})" if link else "")
            raised = self._call_incident(_incident_labels(model, job, status), True, summary)
            return {"incident": "raised" if raised else "failed to raise"}
        opened = json.loads(s.get("failed_jobs") or "[]")
        resolved = sum(self._call_incident(_incident_labels(model, f["job"], f["status"]), False,
                                           f"{job} of {model} completed") for f in opened)
        return {"incidents_resolved": resolved} if opened else {}

    def _call_incident(self, labels: Mapping[str, str], firing: bool, summary: str) -> bool:
        assert self._incident is not None
        try:
            self._incident(INCIDENT, labels, firing, summary)
        except Exception:
            _log.exception("incident %s for %s could not be recorded", INCIDENT, labels.get("model"))
            return False
        return True

    def _reconcile(self, policy: RetrainPolicy) -> None:
        s = self.state(policy.model)
        if not s["in_flight_job"] or self._platform is None:
            return
        try:
            job = self._platform.get_job(s["in_flight_job"])
        except Exception as exc:  # the platform is down: the next tick looks again; the other models go on
            self._audit(Decision("reconcile_failed", policy.model, f"{type(exc).__name__}: {exc}"[:500],
                                 job=s["in_flight_job"], decision_id=s["started_decision"]))
            return
        if job is None:
            self._change(policy.model, lambda st: _unmark_submitted(st, s["in_flight_job"]))
            self._submit(policy.model)
        elif job.finished:
            self.finish_job(policy.model, job.name, job.status, {**job.tags, "reactor_job_url": job.url})

    # -- plumbing ---------------------------------------------------------------------------
    def _change(self, model: str, change: Change) -> Any:
        """Read-modify-write of a model's state under its ETag; None when nothing changed.
        Concurrent changes to one model are applied together in a single write (a burst of
        files costs one round trip per batch, not per file)."""
        result, _ = self._changes.run(model, change)
        return None if result is _UNCHANGED else result

    def _apply(self, model: Hashable, batch: list[Pending[Change]]) -> None:
        # The state as this process last read or wrote it stands in for a read: the write is conditional
        # on its ETag, so if anyone changed it since, the write fails and the state is read again. A batch
        # that would write nothing is never decided on that copy: nothing would confirm it is current
        # (the timer's repairs must see what another instance did).
        known = self._known.pop(model, None)
        for attempt in range(50):
            entity = known if known is not None else self._store.get(self._table, str(model), ROW)
            state = _defaults() | (dict(entity.props) if entity else {})
            results = [p.item(state) for p in batch]  # pure functions of the state: safe to re-apply
            if all(r is _UNCHANGED for r in results):
                if known is not None:
                    known = None
                    continue
                if entity is not None:
                    self._known[model] = entity
                break
            try:
                etag = self._write_state(str(model), state, entity)
            except (PreconditionFailed, ConflictError):
                if known is None:
                    time.sleep(0.005 * (attempt + 1))  # another instance changed it: read again, apply again
                known = None
                continue
            self._known[model] = Entity(str(model), ROW, dict(state), etag)
            break
        else:
            raise StoreError(f"retraining state of {model} kept changing; gave up after 50 attempts")
        for p, r in zip(batch, results, strict=True):
            p.result = (r, state)  # the state as written: what the changes after this one made of it
            p.settle()

    def _write_state(self, model: str, state: dict[str, Any], entity: Entity | None) -> str:
        if entity is None:
            return self._store.insert(self._table, model, ROW, state)
        # A merge needs only what changed: in a long window that leaves out the capped lineage (~10 KB).
        changed = {k: v for k, v in state.items() if k not in entity.props or entity.props[k] != v}
        return self._store.update(self._table, model, ROW, changed, entity.etag)

    def _audit(self, d: Decision) -> None:
        if not d.audit:
            return
        self._ledger.audit(AuditRecord(f"retrain.{d.action}", d.decision_id or d.job or d.model, model=d.model,
                                       detail=d.outcome()))
        log(_log, logging.INFO, f"retrain {d.action}", model=d.model, job=d.job, reason=d.reason,
            decision_id=d.decision_id)


def _defaults() -> dict[str, Any]:
    return {**_empty_window(), "in_flight_job": "", "in_flight_since": "", "in_flight_request": "",
            "submitted": False, "job_url": "", "last_started_at": "1970-01-01T00:00:00+00:00", "last_job": "",
            "last_outcome": "", "noted": "", "started_decision": "", "started_job": "", "failed_jobs": "[]"}


def _empty_window() -> dict[str, Any]:
    return {"window_id": "", "window_opened_at": "", "pending_files": 0, "pending_bytes": 0, "pending_total": 0,
            "pending_data": "[]", "drift": "", "manual": "", "noted": ""}


def _capped(encoded: str, item: dict[str, Any]) -> str:
    items = json.loads(encoded)
    return json.dumps([*items, item]) if len(items) < MAX_LINEAGE else encoded


def _started_later(trigger: Decision, state: Mapping[str, Any]) -> Decision | None:
    """A trigger's window started by a change applied after it in the same write (a manual request
    joining a burst of files, say): then the trigger's answer is that job, not 'coalesced'."""
    if not trigger.decision_id or state["started_decision"] != trigger.decision_id:
        return None
    return Decision("started", trigger.model, trigger.reason, job=state["started_job"],
                    decision_id=trigger.decision_id, detail={"started_by": "a trigger that came with it"},
                    audit=False)


def _mark_submitted(s: dict[str, Any], job: Job) -> Any:
    if s["in_flight_job"] != job.name:
        return _UNCHANGED
    s.update(submitted=True, job_url=job.url)
    return True


def _unmark_submitted(s: dict[str, Any], job: str) -> Any:
    if s["in_flight_job"] != job or not s["submitted"]:
        return _UNCHANGED
    s["submitted"] = False
    return True


def _release_slot(s: dict[str, Any], job: str, status: str) -> Any:
    if s["in_flight_job"] != job:
        return _UNCHANGED
    failed = json.loads(s["failed_jobs"] or "[]")
    if status in INCIDENT_SEVERITY:  # its incident stays open until a job of the model completes
        failed = [*failed, {"job": job, "status": status}][-MAX_LINEAGE:]
    elif status == "completed":
        failed = []
    s.update(in_flight_job="", in_flight_since="", in_flight_request="", submitted=False, last_job=job,
             last_outcome=status, failed_jobs=json.dumps(failed))
    return status


def _incident_labels(model: str, job: str, status: str) -> dict[str, str]:
    return {"model": model, "job": job, "status": status, "severity": INCIDENT_SEVERITY.get(status, "error")}


def _not_fed(event: BlobCreated) -> dict[str, Any]:
    return {"action": "ignored", "reason": f"no model is fed by {event.container}/{event.blob_name}"}


def _not_watched(event: Event) -> dict[str, Any]:
    return {"action": "ignored", "reason": f"no model is watched by monitor {_monitor(event)!r}"}


def _monitor(event: Event) -> str:
    """The monitor a drift signal names: v1 DatasetDriftDetected, or a model-monitoring v2 run."""
    return event.drift_name if isinstance(event, DatasetDriftDetected) else getattr(event, "experiment_name", "")


def _run_status(event: RunEvent) -> str:
    return "Completed" if isinstance(event, RunCompleted) else getattr(event, "run_status", "")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)

