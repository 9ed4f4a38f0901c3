"""Silences: list, create (operator) and expire (operator) alert silences.

Thin: the caller is identified and authorized by ``functions.admin.guarded``; the body is
checked here only for shape; ``core.alerting.silences`` validates matchers and durations
and audits every change with its author.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.functions as func

from core import bootstrap
from core.admin.auth import Principal
from core.errors import RequestError
from functions.admin import guarded
from functions.http import json_object, ok, problem, text_field

bp = func.Blueprint()


@bp.function_name("silences_list")
@bp.route(route="silences", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_silences(req: func.HttpRequest) -> func.HttpResponse:
    expired = req.params.get("expired", "false").lower()
    if expired not in ("true", "false"):
        return problem(400, "Invalid silences request", "must be true or false", "expired")

    def work(_: Principal) -> func.HttpResponse:
        found = bootstrap.services().alerting.silences.list(include_expired=expired == "true")
        return ok({"silences": [s.as_dict() for s in found], "count": len(found)})

    return guarded(req, "silences", work)


@bp.function_name("silences_create")
@bp.route(route="silences", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def create_silence(req: func.HttpRequest) -> func.HttpResponse:
    def work(who: Principal) -> func.HttpResponse:
        body = json_object(req)
        matchers = _matchers(body.get("matchers"))
        silence = bootstrap.services().alerting.silences.create(
            matchers, _duration(body.get("duration")), who.actor, text_field(body, "comment"))
        return ok(silence.as_dict(), status=201)

    return guarded(req, "silence", work, role="operator")


@bp.function_name("silences_expire")
@bp.route(route="silences/{id}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
def expire_silence(req: func.HttpRequest) -> func.HttpResponse:
    silence_id = req.route_params.get("id", "")

    def work(who: Principal) -> func.HttpResponse:
        try:
            return ok(bootstrap.services().alerting.silences.expire(silence_id, who.actor).as_dict())
        except KeyError:
            return problem(404, "Unknown silence", f"no silence {silence_id}", "id")

    return guarded(req, "silence", work, role="operator")


def _matchers(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) and m for m in raw):
        raise RequestError("matchers", "must be a non-empty list of matchers such as 'endpoint=diabetes-prod'")
    return raw


def _duration(raw: Any) -> timedelta:
    from core.alerting.rules import parse_duration  # on call: cold start must not pay for alerting

    seconds = parse_duration(raw)
    if seconds is None:
        raise RequestError("duration", "must be seconds or text such as '2h' or '90m'")
    return timedelta(seconds=seconds)
