"""A local stand-in for Teams, Slack, PagerDuty and Opsgenie (and a plain webhook).

It listens on 127.0.0.1, checks each request against the receiver's documented format
(required fields, limits, types) and answers as the real service does (400 with the problems
otherwise), keeps what it accepted in memory and prints one line per message: what a person
would see. It can be told to fail for a while (500, or 429 with ``Retry-After``) so tests
and the demo can watch the outbox retry. Paths (anything after the first segment is the
"secret" part of a webhook URL and is never printed):

    POST /teams/<any>          POST /slack/<any>          POST /webhook/<any>
    POST /pagerduty/v2/enqueue POST /opsgenie/v2/alerts   POST /opsgenie/v2/alerts/<alias>/close
    OPTIONS|POST /cloudevents/<any>   a subscriber of our own events (the local topic delivers there):
                                      the abuse-protection handshake, then CloudEvents 1.0 (structured)

    python -m embedded.receiver --port 8099
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TEAMS_MAX_BYTES = 28 * 1024
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class Received:
    kind: str
    path: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]
    size: int
    line: str


@dataclass
class _Failure:
    status: int
    remaining: int | None  # requests still to fail; None = until ``until``
    until: float  # time.monotonic() deadline; inf = until ``remaining`` runs out
    retry_after: str = ""


# -- format checks --------------------------------------------------------------------------
def _text(problems: list[str], where: str, value: Any, limit: int, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        problems.append(f"{where} must be a non-empty string")
    elif len(value) > limit:
        problems.append(f"{where} is {len(value)} characters (limit {limit})")


def check_teams(body: Mapping[str, Any], size: int, headers: Mapping[str, str], path: str) -> list[str]:
    problems = [] if size <= TEAMS_MAX_BYTES else [f"message is {size} bytes (limit {TEAMS_MAX_BYTES})"]
    attachments = body.get("attachments")
    if body.get("type") != "message" or not isinstance(attachments, list) or not attachments:
        return [*problems, "type must be 'message' with a non-empty attachments list"]
    for i, att in enumerate(attachments):
        card = att.get("content") if isinstance(att, Mapping) else None
        if att.get("contentType") != "application/vnd.microsoft.card.adaptive" or not isinstance(card, Mapping):
            problems.append(f"attachments[{i}] must be an Adaptive Card attachment")
            continue
        version = tuple(int(p) for p in str(card.get("version", "0")).split(".") if p.isdigit())
        if card.get("type") != "AdaptiveCard" or version < (1, 4):
            problems.append(f"attachments[{i}].content must be an AdaptiveCard of version 1.4 or later")
        if not isinstance(card.get("body"), list) or not card["body"]:
            problems.append(f"attachments[{i}].content.body must be a non-empty list")
    return problems


def check_slack(body: Mapping[str, Any], size: int, headers: Mapping[str, str], path: str) -> list[str]:
    problems: list[str] = []
    _text(problems, "text", body.get("text"), 40_000)
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return [*problems, "blocks must be a list of at most 50 blocks"]
    for i, block in enumerate(blocks):
        problems += _slack_block(f"blocks[{i}]", block)
    return problems


def _slack_block(where: str, block: Any) -> list[str]:
    problems: list[str] = []
    kind = block.get("type") if isinstance(block, Mapping) else None
    if kind == "header":
        _text(problems, f"{where}.text.text", block.get("text", {}).get("text"), 150)
    elif kind == "section":
        if "text" in block:
            _text(problems, f"{where}.text.text", block["text"].get("text"), 3000)
        fields = block.get("fields", [])
        if len(fields) > 10:
            problems.append(f"{where}.fields has {len(fields)} items (limit 10)")
        for j, f in enumerate(fields):
            _text(problems, f"{where}.fields[{j}].text", f.get("text"), 2000)
    elif kind == "context":
        if not 0 < len(block.get("elements", [])) <= 10:
            problems.append(f"{where}.elements must hold 1 to 10 elements")
    else:
        problems.append(f"{where}.type {kind!r} is not a block this receiver knows")
    return problems


def check_pagerduty(body: Mapping[str, Any], size: int, headers: Mapping[str, str], path: str) -> list[str]:
    problems: list[str] = []
    _text(problems, "routing_key", body.get("routing_key"), 64)
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append("event_action must be trigger, acknowledge or resolve")
    _text(problems, "dedup_key", body.get("dedup_key"), 255, required=action != "trigger")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, Mapping):
            return [*problems, "payload is required to trigger"]
        _text(problems, "payload.summary", payload.get("summary"), 1024)
        _text(problems, "payload.source", payload.get("source"), 255)
        if payload.get("severity") not in SEVERITIES:
            problems.append(f"payload.severity must be one of {', '.join(SEVERITIES)}")
    links = body.get("links", [])
    if not isinstance(links, list) or any(not isinstance(li, Mapping) or "href" not in li for li in links):
        problems.append("links must be a list of objects with href")
    return problems


def check_opsgenie(body: Mapping[str, Any], size: int, headers: Mapping[str, str], path: str) -> list[str]:
    problems = [] if headers.get("authorization", "").startswith("GenieKey ") else [
        "Authorization: GenieKey <key> is required"]
    parts = urlsplit(path)
    if parts.path.rstrip("/").endswith("/close"):
        if parse_qs(parts.query).get("identifierType") != ["alias"]:
            problems.append("close must say identifierType=alias")
        return problems
    _text(problems, "message", body.get("message"), 130)
    _text(problems, "alias", body.get("alias"), 512, required=False)
    _text(problems, "description", body.get("description"), 15_000, required=False)
    if body.get("priority", "P3") not in ("P1", "P2", "P3", "P4", "P5"):
        problems.append("priority must be P1 to P5")
    tags = body.get("tags", [])
    if len(tags) > 20 or any(not isinstance(t, str) or len(t) > 50 for t in tags):
        problems.append("tags: at most 20 strings of at most 50 characters")
    if not all(isinstance(v, str) for v in body.get("details", {}).values()):
        problems.append("details must map keys to strings")
    return problems


def check_webhook(body: Mapping[str, Any], size: int, headers: Mapping[str, str], path: str) -> list[str]:
    return [f"{k} is required" for k in ("version", "id", "kind", "severity", "title") if not body.get(k)]


def check_cloudevent(body: Mapping[str, Any], size: int, headers: Mapping[str, str], path: str) -> list[str]:
    from core.publish.cloudevent import problems

    media = headers.get("content-type", "").split(";")[0].strip()
    return [*([] if media == "application/cloudevents+json" else [f"Content-Type {media!r} is not "
                                                                  "application/cloudevents+json"]), *problems(body)]


Check = Callable[[Mapping[str, Any], int, Mapping[str, str], str], list[str]]
CHECKS: dict[str, Check] = {"teams": check_teams, "slack": check_slack, "pagerduty": check_pagerduty,
                            "opsgenie": check_opsgenie, "webhook": check_webhook, "cloudevents": check_cloudevent}


# -- what a person sees ------------------------------------------------------------------------
def describe(kind: str, body: Mapping[str, Any], path: str) -> str:
    if kind == "teams":
        first = body["attachments"][0]["content"]["body"][0]
        return f"[teams] {first.get('text', '')}"
    if kind == "slack":
        return f"[slack] {str(body['text']).splitlines()[0]}"
    if kind == "pagerduty":
        summary = body.get("payload", {}).get("summary", "")
        return f"[pagerduty] {body['event_action']} {body['dedup_key']} {summary}".rstrip()
    if kind == "opsgenie" and path.split("?")[0].endswith("/close"):
        return f"[opsgenie] close {path.split('/')[-2]}"
    if kind == "opsgenie":
        return f"[opsgenie] {body.get('priority', 'P3')} {body['message']}"
    if kind == "cloudevents":
        return f"[cloudevents] {body['type']} {body.get('subject', '')} (id {body['id']})"
    return f"[webhook] {body.get('headline') or body.get('title')}"


def answer(kind: str, body: Mapping[str, Any]) -> tuple[int, Any]:
    if kind == "slack":
        return 200, "ok"
    if kind == "pagerduty":
        return 202, {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")}
    if kind == "opsgenie":
        return 202, {"result": "Request will be processed", "took": 0.01, "requestId": str(uuid.uuid4())}
    return 202 if kind == "teams" else 200, {"status": "accepted"}


# -- the server ---------------------------------------------------------------------------------
class LocalReceiver:
    def __init__(self, port: int = 0, echo: Callable[[str], None] = print) -> None:
        self.received: list[Received] = []
        self.attempts: dict[str, int] = {}  # requests seen per kind, failed ones included
        self._failures: dict[str, _Failure] = {}
        self._lock = threading.Lock()
        self._echo = echo
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(self, kind: str, status: int = 500, *, times: int | None = None, seconds: float | None = None,
             retry_after: str = "") -> None:
        """Answer ``status`` to the next ``times`` requests of this kind, or for ``seconds``."""
        until = time.monotonic() + seconds if seconds is not None else float("inf")
        with self._lock:
            self._failures[kind] = _Failure(status, times, until, retry_after)

    def recover(self, kind: str) -> None:
        with self._lock:
            self._failures.pop(kind, None)

    def of(self, kind: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.kind == kind]

    def _failure(self, kind: str) -> _Failure | None:
        with self._lock:
            self.attempts[kind] = self.attempts.get(kind, 0) + 1
            failure = self._failures.get(kind)
            if failure is None or time.monotonic() >= failure.until or failure.remaining == 0:
                self._failures.pop(kind, None)
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
            return failure

    def handle(self, kind: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any, str]:
        """(status, response body, Retry-After) for one request."""
        failure = self._failure(kind)
        if failure is not None:
            return failure.status, {"error": "told to fail"}, failure.retry_after
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"errors": ["body is not JSON"]}, ""
        problems = CHECKS[kind](body, len(raw), headers, path) if isinstance(body, dict) else ["not an object"]
        if problems:
            return 400, {"errors": problems}, ""
        line = describe(kind, body, path)
        with self._lock:
            self.received.append(Received(kind, path, dict(headers), body, len(raw), line))
        self._echo(line)
        return (*answer(kind, body), "")


def _handler(receiver: LocalReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            kind = self.path.strip("/").split("/")[0]
            if kind not in CHECKS:
                self._reply(404, {"errors": [f"no receiver at /{kind}"]}, "")
                return
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(*receiver.handle(kind, self.path, headers, raw))

        def do_OPTIONS(self) -> None:
            """CloudEvents webhook abuse protection: allow the origin that asks (Event Grid's)."""
            if self.path.strip("/").split("/")[0] != "cloudevents":
                self._reply(404, {"errors": ["only /cloudevents answers the handshake"]}, "")
                return
            self.send_response(200)
            self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", ""))
            self.send_header("WebHook-Allowed-Rate", "*")
            self.send_header("Allow", "POST, OPTIONS")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _reply(self, status: int, body: Any, retry_after: str) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # the path may hold a secret: say nothing
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Teams/Slack/PagerDuty/Opsgenie receiver")
    parser.add_argument("--port", type=int, default=8099)
    receiver = LocalReceiver(parser.parse_args().port)
    print(f"listening on {receiver.url}", flush=True)
    with receiver:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", flush=True)


if __name__ == "__main__":
    main()
