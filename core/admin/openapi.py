"""The OpenAPI 3.0 description of every HTTP route of the app, served at /api/openapi.json.

Written by hand, route by route, so each carries its meaning; a test holds it against the
routes the app actually registers, so a new route without a description fails the build.
"""

from __future__ import annotations

from typing import Any

PROBLEM = {"description": "Problem (application/problem+json): title, detail and the offending field",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
JSON_OK = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
KEYED: list[dict[str, list[str]]] = [{"functionKeyHeader": []}, {"functionKeyQuery": []}]


def _param(name: str, where: str, description: str, *, required: bool = False, kind: str = "string") -> dict:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": {"type": kind}}


def _op(summary: str, *, secured: bool = True, params: list[dict] | None = None, body: dict | None = None,
        ok: dict | None = None, extra: dict | None = None) -> dict[str, Any]:
    responses = {"200": ok or JSON_OK, "400": PROBLEM, **(extra or {})}
    if secured:
        responses |= {"401": PROBLEM}
    op: dict[str, Any] = {"summary": summary, "parameters": params or [], "responses": responses,
                          "security": KEYED if secured else []}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


_AUDIT_PARAMS = [_param("model", "query", "model name"), _param("version", "query", "model version (with model): "
                 "its lineage, data events -> decision -> registration"), _param("event_id", "query", "event id"),
                 _param("correlation_id", "query", "correlation id"),
                 _param("from", "query", "ISO 8601 time, inclusive"), _param("to", "query", "ISO 8601 time, inclusive"),
                 _param("limit", "query", "most recent N records (1..1000, default 100)", kind="integer")]
_RETRAIN_BODY = {"type": "object", "required": ["model", "reason"],
                 "properties": {"model": {"type": "string"}, "reason": {"type": "string"}}}
_SILENCE_BODY = {"type": "object", "required": ["matchers", "duration", "comment"], "properties": {
    "matchers": {"type": "array", "items": {"type": "string"}, "description": "label=value, !=, =~ regex, !~"},
    "duration": {"type": "string", "description": "seconds or text such as 2h"},
    "comment": {"type": "string"}}}
_RELEASE = [_param("id", "path", "MODEL:VERSION, e.g. diabetes:3", required=True)]
_REASON_BODY = {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}
_DECIDED = {"403": PROBLEM, "404": PROBLEM, "409": PROBLEM}
_LETTER = [_param("function", "path", "the Event Grid function (first part of the id)", required=True),
           _param("key", "path", "the event key (second part of the id)", required=True)]

PATHS: dict[str, dict[str, Any]] = {
    "/health": {"get": _op("Liveness and readiness", secured=False, extra={"503": JSON_OK})},
    "/retrain": {"post": _op("Retrain a model now", body=_RETRAIN_BODY, extra={"202": JSON_OK, "404": PROBLEM})},
    "/status": {"get": _op("Per model: champion, versions, retraining state; the dead-letter backlog")},
    "/audit": {"get": _op("The audit trail, oldest first", params=_AUDIT_PARAMS)},
    "/deadletters": {"get": _op("Dead letters", params=[_param("function", "query", "only this function"),
                                                        _param("status", "query", "pending | replayed")])},
    "/deadletters/{function}/{key}/replay": {"post": _op(
        "Replay a dead letter (role operator)", params=_LETTER, extra={"403": PROBLEM, "404": PROBLEM})},
    "/alerts/azure-monitor": {"post": _op(
        "An Azure Monitor alert (common alert schema: metric, log search, activity log; Fired/Resolved)",
        body={"type": "object", "required": ["schemaId", "data"]})},
    "/silences": {
        "get": _op("Alert silences", params=[_param("expired", "query", "true: include expired ones")]),
        "post": _op("Silence alerts (role operator)", body=_SILENCE_BODY, extra={"201": JSON_OK, "403": PROBLEM})},
    "/silences/{id}": {"delete": _op("Expire a silence now (role operator)",
                                     params=[_param("id", "path", "the silence id", required=True)],
                                     extra={"403": PROBLEM, "404": PROBLEM})},
    "/releases": {"get": _op("Releases, newest first: state, step timeline with figures", params=[
        _param("model", "query", "only this model"), _param("state", "query", "only releases in this state")])},
    "/releases/{id}": {"get": _op("One release with its timeline", params=_RELEASE, extra={"404": PROBLEM})},
    "/releases/{id}/approve": {"post": _op(
        "Approve a release awaiting approval (role approver; not by whoever requested the model)", params=_RELEASE,
        body={"type": "object", "properties": {"comment": {"type": "string"}}}, extra=_DECIDED)},
    "/releases/{id}/reject": {"post": _op("Reject a release awaiting approval (role approver)", params=_RELEASE,
                                          body=_REASON_BODY, extra=_DECIDED)},
    "/models/{name}/rollback": {"post": _op(
        "Roll the model's production traffic back: the release in its canary, else the champion to the previous "
        "deployment (role operator or approver)", params=[_param("name", "path", "model name", required=True)],
        body=_REASON_BODY, extra=_DECIDED)},
    "/openapi.json": {"get": _op("This document")},
    "/dashboard": {"get": _op("The status page (HTML; a browser passes the key as ?code=)",
                              ok={"description": "HTML page", "content": {"text/html": {}}})},
}


def document(version: str) -> dict[str, Any]:
    problem = {"type": "object", "properties": {k: {"type": "string"} for k in ("type", "title", "detail", "field")}
               | {"status": {"type": "integer"}}}
    return {"openapi": "3.0.3", "info": {"title": "mlops-reactor", "version": version},
            "servers": [{"url": "/api"}], "paths": PATHS,
            "components": {"schemas": {"Problem": problem}, "securitySchemes": {
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"}}}}
