"""Releases: the timer that advances them, and the operator routes (list, show, approve, reject,
roll back a model).

Thin: the caller is identified by ``functions.admin.guarded``; ``core.release.service`` checks
roles (approver, operator) and separation of duties itself, so every entry point is held to the
same rules, and audits each decision with its caller.
"""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from core import bootstrap
from core.admin.auth import Principal
from core.errors import RequestError
from functions.admin import guarded
from functions.http import json_object, ok, problem, text_field

bp = func.Blueprint()
STATES = ("pending", "qa_deploying", "smoke_testing", "awaiting_approval", "approved", "prod_deploying", "canary",
          "promoted", "qa_failed", "rejected", "expired", "rolled_back", "superseded")


@bp.function_name("release_tick")
@bp.timer_trigger(schedule="%REACTOR_RELEASE_TICK_SCHEDULE%", arg_name="timer", run_on_startup=False)
def release_tick(timer: func.TimerRequest) -> None:
    bootstrap.services().releases.tick()


@bp.function_name("releases_list")
@bp.route(route="releases", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_releases(req: func.HttpRequest) -> func.HttpResponse:
    model, state = req.params.get("model") or None, req.params.get("state") or None

    def work(_: Principal) -> func.HttpResponse:
        if state is not None and state not in STATES:
            raise RequestError("state", f"must be one of {', '.join(STATES)}")
        found = bootstrap.services().releases.find(model, state)
        return ok({"releases": [r.view() for r in found], "count": len(found)})

    return guarded(req, "releases", work)


@bp.function_name("releases_get")
@bp.route(route="releases/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_release(req: func.HttpRequest) -> func.HttpResponse:
    rid = req.route_params.get("id", "")
    return guarded(req, "release",
                   lambda who: _decided(who, "release", lambda: bootstrap.services().releases.get(rid).view()))


@bp.function_name("releases_approve")
@bp.route(route="releases/{id}/approve", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def approve(req: func.HttpRequest) -> func.HttpResponse:
    rid = req.route_params.get("id", "")

    def work(who: Principal) -> func.HttpResponse:
        note = _optional_text(req, "comment")
        return _decided(who, "approve", lambda: bootstrap.services().releases.approve(rid, who.actor, who.roles,
                                                                                      note).view())

    return guarded(req, "approve", work)


@bp.function_name("releases_reject")
@bp.route(route="releases/{id}/reject", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def reject(req: func.HttpRequest) -> func.HttpResponse:
    rid = req.route_params.get("id", "")

    def work(who: Principal) -> func.HttpResponse:
        reason = text_field(json_object(req), "reason")
        return _decided(who, "reject", lambda: bootstrap.services().releases.reject(rid, who.actor, who.roles,
                                                                                    reason).view())

    return guarded(req, "reject", work)


@bp.function_name("models_rollback")
@bp.route(route="models/{name}/rollback", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def rollback(req: func.HttpRequest) -> func.HttpResponse:
    model = req.route_params.get("name", "")

    def work(who: Principal) -> func.HttpResponse:
        reason = text_field(json_object(req), "reason")
        return _decided(who, "rollback",
                        lambda: dict(bootstrap.services().releases.rollback(model, who.actor, who.roles, reason)))

    return guarded(req, "rollback", work)


def _decided(who: Principal, name: str, action: Callable[[], object]) -> func.HttpResponse:
    """Run a release action; its refusals become 403 (audited), 404 and 409 with the reason."""
    from core.admin import deadletters
    from core.release.service import Conflict, Forbidden, NotFound

    try:
        return ok(action())
    except Forbidden as err:
        deadletters.denied(bootstrap.services().ledger, who, name, err.role)
        return problem(403, "Forbidden", str(err), "role")
    except NotFound as err:
        return problem(404, "Not found", str(err.args[0]), "id")
    except Conflict as err:
        return problem(409, "Conflict", str(err), "state")


def _optional_text(req: func.HttpRequest, name: str) -> str:
    if not req.get_body():
        return ""
    body = json_object(req)
    return text_field(body, name) if name in body else ""
