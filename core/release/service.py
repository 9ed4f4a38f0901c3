"""The release state machine: one release per registered model version.

    pending -> qa_deploying -> smoke_testing -> awaiting_approval -> approved -> prod_deploying
            -> canary (mirror, then each traffic step, health-checked) -> promoted
    failures: qa_failed (deploy or smoke test), rejected, expired (approval), rolled_back
              (production deploy, health check, alert or operator), superseded (a newer
              version reached production first)

Why it is shaped like this:
- Every step is driven from outside (the ModelRegistered / ModelDeployed events and a timer),
  never by a function sleeping: a step does one thing, records it, and returns.
- A step's side effects (deploy, traffic) are idempotent: deployment names derive from the
  version and traffic is set to absolute weights. So a step repeated after a crash, or by a
  second instance, does no harm.
- Work on a release is serialised by a lease on its record (ETag-conditional). An instance
  killed mid-step leaves a lease that runs out; the next tick repeats the step.
- One release per model holds the production lock (on the model's facts row) from the
  production deploy to promotion or rollback, so two releases never shift one endpoint's
  traffic at once. Traffic only ever names deployments that exist and succeeded, and a
  deployment is deleted only once no traffic or mirror points at it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from core.errors import ConflictError, PreconditionFailed, RequestError
from core.events import Event, ModelDeployed, ModelRegistered
from core.ledger import AuditRecord, Ledger
from core.ml_platform import TAG_CORRELATION, TAG_REQUESTED_BY, DeploymentSpec, Endpoint, ServingPlatform
from core.ports import Clock
from core.release.checks import judge_health, judge_smoke, rows_of
from core.release.policy import ReleasePolicy
from core.release.store import ModelFacts, Release, ReleaseStore, split_id

_log = logging.getLogger(__name__)
ACTOR = "release"
TAG_RELEASE = "reactor_release"
DEPLOYMENT_ENV = "deployment_env"  # model property: JSON object of deployment environment variables
MAX_STEPS_PER_ADVANCE = 8  # steps taken at once when none has to wait (deploy, smoke, approve...)
Incident = Callable[[str, Mapping[str, str], bool, str], object]  # (alertname, labels, firing, summary)
# Incidents a release raises, by alert name, with their severity; a promotion resolves them all.
INCIDENTS = {"ReleaseFailed": "error", "ReleaseRolledBack": "critical", "ReleaseApprovalExpired": "warning"}


class Forbidden(Exception):
    """The caller lacks the role (or is the one person who may not approve this release)."""

    def __init__(self, message: str, role: str) -> None:
        super().__init__(message)
        self.role = role


class NotFound(KeyError):
    pass


class Conflict(Exception):
    """The release (or model) is not in a state that allows the action."""


def deployment_name(model: str, version: str) -> str:
    """Lower case (Azure lowercases it anyway), 3-32 letters/digits/hyphens, letter first."""
    stem = "".join(c if c.isalnum() else "-" for c in model.lower()).strip("-") or "model"
    if not stem[0].isalpha():
        stem = "m-" + stem
    suffix = "-v" + "".join(c if c.isalnum() else "-" for c in version.lower())
    return (stem[: 32 - len(suffix)].rstrip("-") + suffix)[:32]


class Releases:
    def __init__(self, store: ReleaseStore, ledger: Ledger, serving: ServingPlatform,
                 policies: Mapping[str, ReleasePolicy], *, clock: Clock, lease_seconds: int = 120,
                 incident: Incident | None = None) -> None:
        self.store = store
        self.policies = dict(policies)
        self._ledger = ledger
        self._serving = serving
        self._clock = clock
        self._lease = timedelta(seconds=lease_seconds)
        self._incident = incident

    # -- events -------------------------------------------------------------------------------
    def ignored(self, event: Event) -> Mapping[str, Any] | None:
        """The outcome of an event no release is concerned by, or None (the intake's triage: such an
        event is recorded in one write; the handlers below begin with the same answer)."""
        if isinstance(event, ModelRegistered):
            policy = self.policies.get(event.model_name)
            if policy is None:
                return {"action": "ignored", "reason": f"no release policy for model {event.model_name!r}"}
            if not policy.matches(event.tags):
                return {"action": "skipped", "model": event.model_name, "version": event.model_version,
                        "reason": f"tags do not match {dict(policy.match_tags)}"}
        if isinstance(event, ModelDeployed) and _release_of(event) is None:
            return _not_ours(event)
        return None

    def on_model_registered(self, event: Event, ctx: Any) -> Mapping[str, Any]:
        assert isinstance(event, ModelRegistered)
        skip = self.ignored(event)
        if skip is not None:
            return skip
        release, created = self._create(self.policies[event.model_name], event)
        if created:
            self._audit(release, "release.created", {"tags": dict(event.tags)})
        advanced = self.advance(release.model, release.version) or release
        return {"action": "release_created" if created else "release_exists", "release": release.id,
                "state": advanced.state}

    def on_model_deployed(self, event: Event, ctx: Any) -> Mapping[str, Any]:
        """Confirms a deployment this app started; ignores (and notes) the ones it did not."""
        assert isinstance(event, ModelDeployed)
        ids = _release_of(event)
        found = self.store.get(*ids) if ids else None
        if ids is None or found is None:  # the intake's audit record of this event carries the note
            return _not_ours(event)
        advanced = self.advance(*ids) or found.value
        return {"action": "deployment_confirmed", "release": event.tags[TAG_RELEASE], "state": advanced.state}

    # -- the timer ------------------------------------------------------------------------------
    def tick(self) -> list[Mapping[str, Any]]:
        """Advance every release in flight by what is due (a timer calls this)."""
        out: list[Mapping[str, Any]] = []
        for stored in list(self.store.active()):
            r = stored.value
            try:
                after = self.advance(r.model, r.version)
            except Exception as exc:  # one release's trouble must not stall the others
                _log.exception("release %s could not advance", r.id)
                out.append({"release": r.id, "error": f"{type(exc).__name__}: {exc}"})
                continue
            if after is not None and after.state != r.state:
                out.append({"release": r.id, "from": r.state, "to": after.state})
        return out

    def advance(self, model: str, version: str) -> Release | None:
        """Take the release's lease, run the steps that are due, record them. None when another
        instance holds the lease (it is working on this release now)."""
        leased = self._take_lease(model, version)
        if leased is None:
            stored = self.store.get(model, version)
            return stored.value if stored else None
        release, etag = leased
        policy = self.policies.get(model)
        for _ in range(MAX_STEPS_PER_ADVANCE):
            if policy is None or not release.active:
                break
            try:
                after = self._step(release, policy)
            except Exception as exc:  # a platform outage: keep the state, note it, try at the next tick
                _log.warning("release %s: step %s failed: %s", release.id, release.state, exc)
                self._audit(release, "release.step_error", {"state": release.state,
                                                             "error": f"{type(exc).__name__}: {exc}"[:500]})
                break
            if after is release:
                break  # waiting for something (a deployment, time, an approver)
            try:
                etag = self._save(after, etag, release)
            except PreconditionFailed:
                # The step outlasted the lease (a slow platform) and another advance took the release
                # over: it repeats the step, which is idempotent. Raising would dead-letter the event
                # that brought us here.
                _log.warning("release %s: lease lost during step %s; its new holder repeats it", release.id,
                             release.state)
                stored = self.store.get(model, version)
                return stored.value if stored else None
            release = after
        return self._release_lease(release, etag)

    # -- operators ------------------------------------------------------------------------------
    def approve(self, rid: str, actor: str, roles: Iterable[str], note: str = "") -> Release:
        return self._decide(rid, actor, set(roles), "approved", note or "approved")

    def reject(self, rid: str, actor: str, roles: Iterable[str], reason: str) -> Release:
        return self._decide(rid, actor, set(roles), "rejected", reason or "rejected")

    def rollback(self, model: str, actor: str, roles: Iterable[str] | None, reason: str) -> Mapping[str, Any]:
        """Shift the model's production traffic back to the previous deployment. ``roles`` None:
        the app itself asks (an alert action), which needs no role."""
        if roles is not None and not ({"operator", "approver"} & set(roles)):
            raise Forbidden("a rollback needs the role 'operator' or 'approver'", "operator")
        policy = self._policy(model)
        facts = self.store.facts(model)
        if facts.value.lock:
            r = self._rollback_release(facts.value.lock, f"{reason} (by {actor})", actor)
            return {"action": "rolled_back", "release": r.id, "state": r.state, "to": r.previous}
        return self._rollback_champion(policy, facts.value, facts.etag, reason, actor)

    def get(self, rid: str) -> Release:
        model, version = _split(rid)
        found = self.store.get(model, version)
        if found is None:
            raise NotFound(f"no release {rid!r}")
        return found.value

    def find(self, model: str | None = None, state: str | None = None) -> list[Release]:
        found = [r for r in self.store.of_model(model) if state is None or r.state == state]
        return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)

    def endpoints(self, model: str) -> dict[str, Any]:
        """The model's endpoints with their traffic split, as the platform reports them now."""
        policy = self.policies.get(model)
        if policy is None:
            return {}
        out: dict[str, Any] = {}
        for role, name in (("qa", policy.qa_endpoint), ("production", policy.prod_endpoint)):
            try:
                ep = self._serving.get_endpoint(name)
            except Exception as exc:  # status pages must render when the platform does not answer
                out[role] = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
                continue
            out[role] = ({"name": name, "state": "absent"} if ep is None else
                         {"name": name, "state": ep.state, "traffic": dict(ep.traffic), "mirror": dict(ep.mirror),
                          "scoring_uri": ep.scoring_uri})
        return out

    # -- creating -------------------------------------------------------------------------------
    def _create(self, policy: ReleasePolicy, event: ModelRegistered) -> tuple[Release, bool]:
        now = self._now()
        release = Release(event.model_name, event.model_version, qa_endpoint=policy.qa_endpoint,
                          prod_endpoint=policy.prod_endpoint,
                          deployment=deployment_name(event.model_name, event.model_version),
                          approval=policy.approval, requested_by=event.tags.get(TAG_REQUESTED_BY, ""),
                          correlation_id=event.tags.get(TAG_CORRELATION, "") or event.id,
                          environment=json.dumps(_environment(event.properties)), created_at=now)
        release = release.with_step(now, "pending", f"version {event.model_version} registered")
        try:
            self.store.insert(release)
        except ConflictError:  # a redelivery, or another instance: the release exists
            existing = self.store.get(release.model, release.version)
            assert existing is not None
            return existing.value, False
        return release, True

    # -- one step -------------------------------------------------------------------------------
    def _step(self, r: Release, p: ReleasePolicy) -> Release:
        """The release after one step; the same object when nothing is due yet."""
        steps: dict[str, Callable[[Release, ReleasePolicy], Release]] = {
            "pending": self._deploy_qa, "qa_deploying": self._wait_qa, "smoke_testing": self._smoke,
            "awaiting_approval": self._await_approval, "approved": self._deploy_prod,
            "prod_deploying": self._wait_prod, "canary": self._canary}
        return steps[r.state](r, p)

    def _deploy_qa(self, r: Release, p: ReleasePolicy) -> Release:
        self._serving.ensure_endpoint(p.qa_endpoint, {"reactor_model": r.model, "reactor_role": "qa"})
        self._serving.deploy(self._spec(r, p, p.qa_endpoint))
        return replace(r, step_started_at=self._now()).with_step(
            self._now(), "qa_deploying", f"deploying {r.deployment} to {p.qa_endpoint}")

    def _wait_qa(self, r: Release, p: ReleasePolicy) -> Release:
        d = self._serving.get_deployment(p.qa_endpoint, r.deployment)
        if d is None:  # lost (deleted by hand, or the create never arrived): ask again
            self._serving.deploy(self._spec(r, p, p.qa_endpoint))
            return r
        if d.state == "failed":
            return self._fail_qa(r, p, f"QA deployment failed: {d.error or 'no reason given'}")
        if d.state != "succeeded":
            if self._elapsed(r.step_started_at) > p.deploy_timeout_minutes * 60:
                return self._fail_qa(r, p, f"QA deployment not ready after {p.deploy_timeout_minutes} min")
            return r
        return r.with_step(self._now(), "smoke_testing", f"{r.deployment} is up on {p.qa_endpoint}")

    def _smoke(self, r: Release, p: ReleasePolicy) -> Release:
        body = (json.dumps(dict(p.smoke.sample)).encode() if p.smoke.sample is not None
                else self._serving.sample_request(r.model, r.version))
        if body is None or rows_of(body) == 0:
            return self._fail_qa(r, p, "no smoke-test input: the model has no usable sample_input.json and the "
                                 "policy sets no smoke.sample")
        results = [self._serving.score(p.qa_endpoint, body, r.deployment, p.smoke.timeout_seconds)
                   for _ in range(p.smoke.requests)]
        verdict = judge_smoke(results, rows_of(body), p.smoke)
        self._audit(r, "release.smoke", {"passed": verdict.passed, "reason": verdict.reason, **verdict.figures})
        if not verdict.passed:
            return self._fail_qa(r, p, verdict.reason, **verdict.figures)
        self._serving.set_traffic(p.qa_endpoint, {r.deployment: 100}, {})  # QA now serves the candidate
        self._clean_qa(r, p)
        now = self._now()
        passed = r.with_step(now, "smoke_testing", verdict.reason, **verdict.figures)
        if p.approval == "auto":
            return replace(passed, decided_by="policy:auto").with_step(now, "approved", "auto-approved by policy")
        deadline = (self._clock() + timedelta(minutes=p.approval_timeout_minutes)).isoformat()
        return replace(passed, approval_deadline=deadline).with_step(
            now, "awaiting_approval", f"waiting for an approver until {deadline}")

    def _fail_qa(self, r: Release, p: ReleasePolicy, reason: str, **figures: Any) -> Release:
        ep = self._serving.get_endpoint(p.qa_endpoint)
        if ep is not None and not ep.share(r.deployment) and not ep.mirror.get(r.deployment):
            self._serving.delete_deployment(p.qa_endpoint, r.deployment)  # no traffic: nothing depends on it
        return replace(r, reason=reason).with_step(self._now(), "qa_failed", reason, **figures)

    def _clean_qa(self, r: Release, p: ReleasePolicy) -> None:
        """Delete QA deployments nobody needs: no traffic, and their release is past QA."""
        in_qa = {x.deployment for x in self.store.of_model(r.model)
                 if x.state in ("pending", "qa_deploying", "smoke_testing")}
        for d in self._serving.list_deployments(p.qa_endpoint):
            if d.name not in in_qa and d.name != r.deployment.lower():
                self._serving.delete_deployment(p.qa_endpoint, d.name)

    def _await_approval(self, r: Release, p: ReleasePolicy) -> Release:
        if r.approval_deadline and self._clock() >= datetime.fromisoformat(r.approval_deadline):
            reason = f"no approval within {p.approval_timeout_minutes} min"
            return replace(r, reason=reason).with_step(self._now(), "expired", reason)
        return r

    def _deploy_prod(self, r: Release, p: ReleasePolicy) -> Release:
        facts = self.store.facts(r.model)
        f = facts.value
        if f.lock and f.lock != r.id:
            note = f"waiting: release {f.lock} holds production"
            return r if r.timeline and r.timeline[-1].get("note") == note else r.with_step(self._now(), r.state, note)
        if f.champion_version and _newer(f.champion_version, r.version):
            reason = f"version {f.champion_version} is already in production"
            return replace(r, reason=reason).with_step(self._now(), "superseded", reason)
        if f.lock != r.id:
            self.store.save_facts(replace(f, lock=r.id), facts.etag)  # PreconditionFailed: retried next tick
        self._serving.ensure_endpoint(p.prod_endpoint, {"reactor_model": r.model, "reactor_role": "production"})
        self._serving.deploy(self._spec(r, p, p.prod_endpoint))
        return replace(r, step_started_at=self._now()).with_step(
            self._now(), "prod_deploying", f"deploying {r.deployment} to {p.prod_endpoint}")

    def _wait_prod(self, r: Release, p: ReleasePolicy) -> Release:
        d = self._serving.get_deployment(p.prod_endpoint, r.deployment)
        if d is None:
            self._serving.deploy(self._spec(r, p, p.prod_endpoint))
            return r
        if d.state == "failed":
            return self._roll_back(r, p, f"production deployment failed: {d.error or 'no reason given'}")
        if d.state != "succeeded":
            if self._elapsed(r.step_started_at) > p.deploy_timeout_minutes * 60:
                return self._roll_back(r, p, f"production deployment not ready after {p.deploy_timeout_minutes} min")
            return r
        ep = self._serving.get_endpoint(p.prod_endpoint)
        previous = _previous(ep, r.deployment) if ep else ""
        r = replace(r, previous=previous)
        if p.canary.mirror_percent and previous:
            self._serving.set_traffic(p.prod_endpoint, {previous: 100}, {r.deployment: p.canary.mirror_percent})
            return replace(r, step=-1, step_started_at=self._now()).with_step(
                self._now(), "canary", f"mirroring {p.canary.mirror_percent}% of requests to {r.deployment}")
        return self._shift(r, p, 0 if previous else len(p.canary.steps) - 1)

    def _shift(self, r: Release, p: ReleasePolicy, step: int) -> Release:
        share = p.canary.steps[step]
        traffic = {r.deployment: share, **({r.previous: 100 - share} if r.previous and share < 100 else {})}
        self._serving.set_traffic(p.prod_endpoint, traffic, {})
        return replace(r, step=step, step_started_at=self._now()).with_step(
            self._now(), "canary", f"{share}% of production traffic to {r.deployment}", traffic=traffic)

    def _canary(self, r: Release, p: ReleasePolicy) -> Release:
        since = datetime.fromisoformat(r.step_started_at)
        seconds = p.canary.mirror_seconds if r.step < 0 else p.canary.step_seconds
        health = self._serving.deployment_health(p.prod_endpoint, r.deployment, since)
        verdict = judge_health(health, p.canary, self._elapsed(r.step_started_at), seconds)
        if verdict.outcome == "wait":
            return r
        self._audit(r, "release.health", {"step": r.step, "outcome": verdict.outcome, "reason": verdict.reason,
                                          **verdict.figures})
        if verdict.outcome == "bad":
            return self._roll_back(r, p, f"health check failed at step {r.step + 1}: {verdict.reason}",
                                   **verdict.figures)
        r = r.with_step(self._now(), "canary", f"health check passed: {verdict.reason}", **verdict.figures)
        if r.step + 1 < len(p.canary.steps):
            return self._shift(r, p, r.step + 1)
        return self._promote(r, p)

    def _promote(self, r: Release, p: ReleasePolicy) -> Release:
        self._serving.set_traffic(p.prod_endpoint, {r.deployment: 100}, {})
        facts = self.store.facts(r.model)
        kept = replace(facts.value, champion_version=r.version, champion_deployment=r.deployment,
                       previous_version=_version_of(facts.value, r.previous), previous_deployment=r.previous,
                       lock="")
        self.store.save_facts(kept, facts.etag)
        # Housekeeping after the fact: an endpoint still Updating from the traffic change may refuse
        # it for a while; the release is promoted either way and the next promotion tidies up.
        if r.previous:
            self._best_effort(r, "scale down the previous deployment",
                              lambda: self._serving.scale(p.prod_endpoint, r.previous, 1))  # kept for a rollback
        deleted: list[str] = []
        self._best_effort(r, "delete old deployments", lambda: deleted.extend(self._retire(r, p)))
        for name in INCIDENTS:
            self._raise(name, r.model, False, f"{r.id} promoted")
        return r.with_step(self._now(), "promoted", f"{r.deployment} serves 100% of {p.prod_endpoint}",
                           deleted=deleted)

    def _retire(self, r: Release, p: ReleasePolicy) -> list[str]:
        """Delete production deployments beyond retention: no traffic, not in a release in flight."""
        busy = {x.deployment for x in self.store.of_model(r.model) if x.active and x.id != r.id}
        ep = self._serving.get_endpoint(p.prod_endpoint)
        olds = [d for d in self._serving.list_deployments(p.prod_endpoint)
                if d.name not in {r.deployment, r.previous} and d.name not in busy
                and not (ep and (ep.share(d.name) or ep.mirror.get(d.name)))]
        olds.sort(key=lambda d: _numeric(d.model_version), reverse=True)
        doomed = olds[max(0, p.retention - (1 if r.previous else 0)):]
        for d in doomed:
            self._serving.delete_deployment(p.prod_endpoint, d.name)
        return [d.name for d in doomed]

    # -- rolling back ---------------------------------------------------------------------------
    def _roll_back(self, r: Release, p: ReleasePolicy, reason: str, **figures: Any) -> Release:
        target = r.previous or self.store.facts(r.model).value.champion_deployment
        prev = self._serving.get_deployment(p.prod_endpoint, target) if target and target != r.deployment else None
        if prev is not None and prev.state == "succeeded":
            # Traffic first: a rollback is urgent, and scaling back up can wait for the endpoint.
            self._serving.set_traffic(p.prod_endpoint, {prev.name: 100}, {})
            self._best_effort(r, "scale the previous deployment back up",
                              lambda: self._serving.scale(p.prod_endpoint, prev.name, p.instance_count))
            where = f"traffic back to {prev.name}"
        else:
            ep = self._serving.get_endpoint(p.prod_endpoint)
            if ep is not None and (ep.share(r.deployment) or ep.mirror.get(r.deployment)):
                self._serving.set_traffic(p.prod_endpoint, {}, {})
            where = "no previous deployment: the endpoint serves nothing"
        self._unlock(r)
        self._raise("ReleaseRolledBack", r.model, True, f"{r.id} rolled back: {reason}")
        return replace(r, reason=reason).with_step(self._now(), "rolled_back", f"{reason}; {where}", **figures)

    def _rollback_release(self, rid: str, reason: str, actor: str) -> Release:
        model, version = _split(rid)
        leased = self._take_lease(model, version, wait=True)
        if leased is None:
            raise Conflict(f"release {rid} is busy; try again in a moment")
        r, etag = leased
        if r.state not in ("approved", "prod_deploying", "canary"):
            self._release_lease(r, etag)
            raise Conflict(f"release {rid} is {r.state}: nothing to roll back")
        try:
            after = self._roll_back(r, self._policy(model), reason)
        except BaseException:
            self._release_lease(r, etag)  # the platform failed: let the next try (or the timer) go at once
            raise
        self._audit(after, "release.rollback_requested", {"reason": reason}, actor=actor)
        return self._saved(replace(after, lease_until=""), etag, r, actor=actor)

    def _rollback_champion(self, p: ReleasePolicy, f: ModelFacts, etag: str, reason: str,
                           actor: str) -> Mapping[str, Any]:
        if not f.previous_deployment:
            raise Conflict(f"model {p.model} has no previous production deployment to roll back to")
        prev = self._serving.get_deployment(p.prod_endpoint, f.previous_deployment)
        if prev is None or prev.state != "succeeded":
            raise Conflict(f"the previous deployment {f.previous_deployment} is gone or not healthy")
        self._serving.set_traffic(p.prod_endpoint, {prev.name: 100}, {})
        self._best_effort(None, "scale the previous deployment back up",
                          lambda: self._serving.scale(p.prod_endpoint, prev.name, p.instance_count))
        try:
            self.store.save_facts(replace(f, champion_version=f.previous_version, champion_deployment=prev.name,
                                          previous_version="", previous_deployment=""), etag)
        except PreconditionFailed:
            raise Conflict("the model changed while rolling back; look at its status and try again") from None
        old = self.store.get(p.model, f.champion_version) if f.champion_version else None
        if old is not None:
            rolled = replace(old.value, reason=reason).with_step(self._now(), "rolled_back",
                                                                 f"{reason}; traffic back to {prev.name}")
            self._saved(rolled, old.etag, old.value, actor=actor)
        return {"action": "rolled_back", "model": p.model, "to": prev.name, "version": f.previous_version}

    def _best_effort(self, r: Release | None, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # noted for people; the release's outcome does not depend on it
            _log.warning("release %s: could not %s: %s", r.id if r else "-", what, exc)
            if r is not None:
                error = f"{type(exc).__name__}: {exc}"[:300]
                self._audit(r, "release.housekeeping_failed", {"what": what, "error": error})

    def _unlock(self, r: Release) -> None:
        facts = self.store.facts(r.model)
        if facts.value.lock == r.id:
            self.store.save_facts(replace(facts.value, lock=""), facts.etag)

    # -- approvals ------------------------------------------------------------------------------
    def _decide(self, rid: str, actor: str, roles: set[str], state: str, note: str) -> Release:
        if "approver" not in roles:
            raise Forbidden(f"to {state[:-1] if state.endswith('d') else state} a release needs the role "
                            "'approver'", "approver")
        model, version = _split(rid)
        policy = self._policy(model)
        for _ in range(5):  # the timer may write the record between our read and write
            found = self.store.get(model, version)
            if found is None:
                raise NotFound(f"no release {rid!r}")
            r = found.value
            if r.state != "awaiting_approval":
                raise Conflict(f"release {rid} is {r.state}, not awaiting approval")
            if policy.separation_of_duties and r.requested_by and r.requested_by == actor:
                raise Forbidden(f"{actor} requested this model and may not approve or reject its release "
                                "(separation of duties)", "approver")
            decided = replace(r, decided_by=actor, reason="" if state == "approved" else note)
            decided = decided.with_step(self._now(), state, f"{note} (by {actor})")
            try:
                self._saved(decided, found.etag, r, actor=actor)
            except PreconditionFailed:
                continue
            if state == "approved":
                return self.advance(model, version) or decided
            return decided
        raise Conflict(f"release {rid} kept changing; try again")

    # -- records --------------------------------------------------------------------------------
    def _take_lease(self, model: str, version: str, wait: bool = False) -> tuple[Release, str] | None:
        for _ in range(50 if wait else 1):
            found = self.store.get(model, version)
            if found is None:
                return None
            r = found.value
            if not r.lease_until or datetime.fromisoformat(r.lease_until) <= self._clock():
                leased = replace(r, lease_until=(self._clock() + self._lease).isoformat())
                try:
                    return leased, self.store.update(leased, found.etag)
                except PreconditionFailed:
                    pass
            if wait:
                time.sleep(0.2)
        return None

    def _release_lease(self, r: Release, etag: str) -> Release:
        free = replace(r, lease_until="")
        if etag:
            try:
                self.store.update(free, etag)
            except PreconditionFailed:  # our lease ran out and someone else took over: theirs now
                _log.warning("release %s: lease lost before it was released", r.id)
        return free

    def _save(self, after: Release, etag: str, before: Release) -> str:
        new_etag = self.store.update(after, etag)  # PreconditionFailed: lease lost, the step is repeated
        self._record_transition(before, after, "system")
        return new_etag

    def _saved(self, after: Release, etag: str, before: Release, actor: str = "system") -> Release:
        self.store.update(after, etag)
        self._record_transition(before, after, actor)
        return after

    def _record_transition(self, before: Release, after: Release, actor: str) -> None:
        new = [e for e in after.timeline if e not in before.timeline]
        for entry in new:
            action = "release.waiting" if entry["note"].startswith("waiting") else f"release.{entry['state']}"
            self._audit(after, action, {"note": entry["note"], **entry.get("figures", {})}, actor=actor)
        if after.state == "expired":
            self._raise("ReleaseApprovalExpired", after.model, True, f"{after.id}: {after.reason}")
        if after.state == "qa_failed":
            self._raise("ReleaseFailed", after.model, True, f"{after.id} failed QA: {after.reason}")

    def _raise(self, name: str, model: str, firing: bool, summary: str) -> None:
        """An incident through alerting (grouped, deduplicated, routed); never stops the release."""
        if self._incident is None:
            return
        try:
            policy = self.policies.get(model)
            endpoint = {"endpoint": policy.prod_endpoint} if policy else {}  # grouped with the endpoint's alerts
            self._incident(name, {"model": model, **endpoint, "severity": INCIDENTS[name]}, firing, summary)
        except Exception:
            _log.exception("incident %s for %s could not be recorded", name, model)

    def _audit(self, r: Release, action: str, detail: Mapping[str, Any], actor: str = "system") -> None:
        self._ledger.audit(AuditRecord(action, r.correlation_id or r.id, function=ACTOR, model=r.model,
                                       version=r.version, actor=actor, detail={"release": r.id, **detail}))

    # -- small things ---------------------------------------------------------------------------
    def _spec(self, r: Release, p: ReleasePolicy, endpoint: str) -> DeploymentSpec:
        return DeploymentSpec(endpoint, r.deployment, r.model, r.version, p.instance_type, p.instance_count,
                              environment=json.loads(r.environment or "{}"),
                              tags={TAG_RELEASE: r.id, TAG_CORRELATION: r.correlation_id})

    def _policy(self, model: str) -> ReleasePolicy:
        policy = self.policies.get(model)
        if policy is None:
            raise NotFound(f"no release policy for model {model!r}")
        return policy

    def _now(self) -> str:
        return self._clock().isoformat()

    def _elapsed(self, since: str) -> float:
        return (self._clock() - datetime.fromisoformat(since)).total_seconds() if since else 0.0


def _environment(properties: Mapping[str, str]) -> dict[str, str]:
    """A model version may name the environment variables its deployment needs, as the JSON
    object in its ``deployment_env`` property (Azure ML properties are text). Anything else there
    is ignored: a property cannot be allowed to break the release."""
    try:
        env = json.loads(properties.get(DEPLOYMENT_ENV, "") or "{}")
    except ValueError:
        return {}
    if not isinstance(env, dict):
        return {}
    return {str(k): str(v) for k, v in env.items() if isinstance(k, str) and k.isidentifier()}


def _split(rid: str) -> tuple[str, str]:
    try:
        return split_id(rid)
    except ValueError as exc:
        raise RequestError("release", str(exc)) from None


def _release_of(event: ModelDeployed) -> tuple[str, str] | None:
    """(model, version) of the release a deployment's tag names, or None when it names none."""
    try:
        return split_id(event.tags.get(TAG_RELEASE, ""))
    except ValueError:
        return None


def _not_ours(event: ModelDeployed) -> dict[str, Any]:
    return {"action": "ignored", "reason": "deployment not started by a release of this app",
            "endpoint": event.service_name, "models": [f"{n}:{v}" for n, v in event.model_ids]}


def _previous(ep: Endpoint, new: str) -> str:
    """The deployment serving most of production now (not the new one): what a rollback returns to."""
    others = [(share, name) for name, share in ep.traffic.items() if name != new.lower() and share > 0]
    return max(others)[1] if others else ""


def _version_of(f: ModelFacts, deployment: str) -> str:
    return f.champion_version if deployment and deployment == f.champion_deployment else ""


def _numeric(version: str) -> float:
    return float(version) if version.replace(".", "", 1).isdigit() else -1.0


def _newer(a: str, b: str) -> bool:
    """Is version ``a`` newer than ``b``? Numeric when both are numbers (Azure's are)."""
    return _numeric(a) > _numeric(b) if _numeric(a) >= 0 and _numeric(b) >= 0 else False
