"""GET /api/health: anonymous liveness and readiness for probes and post-deploy checks."""

from __future__ import annotations

import json

import azure.functions as func

from core import bootstrap, health

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    ok, body = health.check(bootstrap.services)
    return func.HttpResponse(json.dumps(body), status_code=200 if ok else 503, mimetype="application/json")
