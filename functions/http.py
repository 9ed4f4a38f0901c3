"""JSON in and out for HTTP functions; errors as application/problem+json naming the field."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from core.errors import RequestError


def problem(status: int, title: str, detail: str = "", field: str = "") -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "field": field}
    return func.HttpResponse(json.dumps({k: v for k, v in body.items() if v != ""}), status_code=status,
                             mimetype="application/problem+json")


def ok(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")


def json_object(req: func.HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(req.get_body().decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError("body", f"is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, max_length: int = 500) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(name, "is required and must be a non-empty string")
    if len(value) > max_length:
        raise RequestError(name, f"is longer than {max_length} characters")
    return value.strip()


def caller(req: func.HttpRequest) -> str:
    """Who is calling: the Easy Auth principal when App Service authentication is on."""
    return req.headers.get("x-ms-client-principal-name") or "function-key"
