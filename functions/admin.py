"""Admin HTTP API: status, audit lineage, dead letters and their replay, the OpenAPI document.

Thin: identify the caller (core.admin.auth), check the role, one call into core.admin, map
errors to problem+json naming the field. Storage being down is a 503, never a 500.
Each handler imports its core.admin module when called: they pull in the ledger, the intake
and the event types, which cold start (importing function_app) must not pay for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func

from core import bootstrap
from core.admin.auth import AuthConfig, AuthError, Principal, identify
from core.errors import RequestError, SettingsError
from functions.http import ok, problem

bp = func.Blueprint()
_log = logging.getLogger("reactor.admin")
Work = Callable[[Principal], func.HttpResponse]


def auth_config() -> AuthConfig:
    return bootstrap.services().settings.admin_auth


def guarded(req: func.HttpRequest, action: str, work: Work, role: str = "") -> func.HttpResponse:
    """Identify, authorize, run; every failure a problem+json with the field at fault."""
    try:
        who = identify(req.headers, auth_config())
        if role and not who.has(role):
            from core.admin import deadletters

            deadletters.denied(bootstrap.services().ledger, who, action, role)
            return problem(403, "Forbidden", f"{action} needs the role {role!r}", "role")
        return work(who)
    except AuthError as err:
        return problem(err.status, "Unauthorized" if err.status == 401 else "Malformed principal",
                       err.reason, err.field)
    except RequestError as err:
        return problem(400, f"Invalid {action} request", err.reason, err.field)
    except SettingsError as err:
        return problem(503, "Misconfigured", "; ".join(err.problems))
    except Exception as exc:  # storage or platform unreachable: the caller may retry
        _log.exception("%s failed", action)
        return problem(503, "Unavailable", f"{type(exc).__name__} while serving {action}")


@bp.function_name("admin_status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_status(req: func.HttpRequest) -> func.HttpResponse:
    from core.admin import status

    s = bootstrap.services
    return guarded(req, "status", lambda _: ok(status.status(s().ledger, s().retraining, s().platform, s().releases,
                                                             s().alerting, s().outbox, s().quality)))


@bp.function_name("admin_audit")
@bp.route(route="audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_audit(req: func.HttpRequest) -> func.HttpResponse:
    from core.admin import audit

    def work(_: Principal) -> func.HttpResponse:
        return ok({"records": audit.query(bootstrap.services().ledger, audit.AuditQuery.parse(req.params))})

    return guarded(req, "audit", work)


@bp.function_name("admin_deadletters")
@bp.route(route="deadletters", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_deadletters(req: func.HttpRequest) -> func.HttpResponse:
    from core.admin import deadletters

    def work(_: Principal) -> func.HttpResponse:
        letters = deadletters.listing(bootstrap.services().ledger, req.params)
        return ok({"dead_letters": letters, "count": len(letters)})

    return guarded(req, "deadletters", work)


@bp.function_name("admin_replay")
@bp.route(route="deadletters/{function}/{key}/replay", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def replay(req: func.HttpRequest) -> func.HttpResponse:
    from core.admin import deadletters

    def work(who: Principal) -> func.HttpResponse:
        letter = deadletters.letter_id(req.route_params.get("function", ""), req.route_params.get("key", ""))
        try:
            return ok(deadletters.replay(bootstrap.services().intake, letter, who))
        except KeyError:
            return problem(404, "Unknown dead letter", f"no dead letter {letter}", "id")

    return guarded(req, "replay", work, role="operator")


@bp.function_name("admin_openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    from core.admin import openapi

    return guarded(req, "openapi", lambda _: ok(openapi.document(bootstrap.services().settings.code_version)))
