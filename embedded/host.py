"""The local Functions host: serves ``function_app.app`` on loopback as ``func start`` would.

    POST /runtime/webhooks/eventgrid?functionName=NAME   Event Grid deliveries (handshakes too)
    OPTIONS /runtime/webhooks/eventgrid                  CloudEvents abuse-protection handshake
    *    /api/<route>                                    HTTP functions, auth level enforced by key
    POST /admin/functions/NAME                           run a non-HTTP function by hand (master key)
    GET  /admin/host/ping, /admin/host/status            liveness / what is loaded
    POST /eventgrid/api/events                           the local custom topic (embedded/topic.py)

A malformed request gets 400 with a JSON problem body. A 500 means a function raised,
which the real host answers the same way (and Event Grid then retries).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequest

from core.admin.auth import KEY_NAME
from embedded.function_index import FunctionIndex, IndexedFunction
from embedded.keys import HostKeys

if TYPE_CHECKING:
    from embedded.topic import LocalTopic

MAX_BODY = 100 * 1024 * 1024  # the Functions host's default request size limit
CLOUDEVENTS_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json")
_log = logging.getLogger("reactor.host")


class Problem(Exception):
    """An HTTP error answered as application/problem+json."""

    def __init__(self, status: int, title: str, detail: str = "", field: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.detail, self.field = status, title, detail, field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.field:
            body["field"] = self.field
        return body


def decode_event(item: Any, index: int) -> Any:
    """Decode one event exactly as the Python worker does for an Event Grid trigger."""
    if not isinstance(item, dict):
        raise Problem(400, "Event is not a JSON object", f"item {index} of the delivery", f"[{index}]")
    try:
        return EventGridEventInConverter.decode(meta.Datum(json.dumps(item), "json"), trigger_metadata={})
    except (ValueError, TypeError) as exc:
        raise Problem(400, "Event cannot be decoded", f"item {index}: {exc}", f"[{index}]") from None
    except RecursionError:
        raise Problem(400, "Event nested too deeply", f"item {index}", f"[{index}]") from None


class LocalHost:
    def __init__(self, app: func.FunctionApp, keys: HostKeys, workers: int = 32,
                 topic: LocalTopic | None = None) -> None:
        self.index = FunctionIndex(app)
        self.keys = keys
        self.topic = topic  # our own events' custom topic, when LOCAL_TOPIC_KEY is set
        # The Event Grid extension starts one invocation per event of a delivery and awaits them
        # all; the Python worker runs them on its thread pool. So does this host.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invocation")

    # -- Event Grid -----------------------------------------------------------------------
    def eventgrid(self, function: str, event_type: str, content_type: str, body: bytes) -> dict[str, Any] | None:
        fn = self.index.functions.get(function)
        if fn is None or fn.kind != "eventGridTrigger":
            raise Problem(404, "No such Event Grid function", f"{function!r} is not an Event Grid function",
                          "functionName")
        items = _json_array(body)
        if event_type.lower() == "subscriptionvalidation":
            return _validation_response(items)
        if event_type.lower() != "notification" and not content_type.startswith(CLOUDEVENTS_TYPES):
            raise Problem(400, "Unknown aeg-event-type", f"got {event_type!r}; expected Notification or "
                          "SubscriptionValidation", "aeg-event-type")
        events = [decode_event(item, i) for i, item in enumerate(items)]
        if len(events) == 1:
            fn.call(**{fn.arg_name: events[0]})
            return None
        invocations = [self._pool.submit(fn.call, **{fn.arg_name: event}) for event in events]
        wait(invocations)
        for invocation in invocations:
            invocation.result()  # a function that raised fails the delivery, as on the real host
        return None

    # -- HTTP functions -------------------------------------------------------------------
    def http(self, method: str, path: str, url: str, headers: Mapping[str, str], query: Mapping[str, str],
             body: bytes) -> func.HttpResponse:
        # As in Azure, the path is percent-decoded before routes are matched: `diabetes%3A1` is
        # `diabetes:1`, and `%2F` becomes a segment separator (so `{id}` never holds a slash;
        # azure-functions-host#5619, #9290). Only `{*rest}` can carry one.
        path = unquote(path)
        route, params, path_known = self.index.find_route(method, path)
        if route is None:
            if path_known:
                raise Problem(405, "Method not allowed", f"{method} is not allowed on /api/{path}")
            raise Problem(404, "Not found", f"no function serves /api/{path}")
        presented = headers.get("x-functions-key") or query.get("code", "")
        if not self.keys.allows(route.auth_level, presented):
            raise Problem(401, "Unauthorized", f"/api/{path} needs a valid {route.auth_level} key")
        # The app learns which key was used only from the host, never from the caller: a
        # client-sent key-name header is dropped (roles of local keys: REACTOR_ROLE_MAP).
        named = {k: v for k, v in headers.items() if k.lower() != KEY_NAME}
        key_name = self.keys.identify(presented)
        if key_name:
            named[KEY_NAME] = key_name
        request = func.HttpRequest(method, url, headers=named, params=dict(query),
                                   route_params=params, body=body)
        response = route.function.call(**{route.function.arg_name: request})
        if not isinstance(response, func.HttpResponse):
            raise TypeError(f"{route.function.name} returned {type(response).__name__}, not HttpResponse")
        return response

    # -- admin ----------------------------------------------------------------------------
    def run_function(self, name: str, body: bytes) -> None:
        fn = self.index.functions.get(name)
        if fn is None:
            raise Problem(404, "No such function", f"{name!r} is not a function of this app")
        payload = _json_object(body) if body.strip() else {}
        given = payload.get("input", "")
        if fn.kind == "timerTrigger":
            fn.call(**{fn.arg_name: TimerRequest(past_due=False)})
        elif fn.kind == "eventGridTrigger":
            item = json.loads(given) if isinstance(given, str) and given else given
            fn.call(**{fn.arg_name: decode_event(item, 0)})
        else:
            raise Problem(400, "Not runnable by hand", f"{name} has a {fn.kind}; call its route instead")

    def status(self) -> dict[str, Any]:
        return {"state": "Running",
                "functions": {n: f.kind for n, f in sorted(self.index.functions.items())}}

    def timers(self) -> dict[str, IndexedFunction]:
        return self.index.of_kind("timerTrigger")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Problem(400, "Body is not UTF-8", str(exc), "body") from None
    except ValueError as exc:
        raise Problem(400, "Malformed JSON", str(exc), "body") from None
    except RecursionError:
        raise Problem(400, "JSON nested too deeply", "the body nests arrays or objects too deeply to read",
                      "body") from None


def _json_array(body: bytes) -> list[Any]:
    parsed = _json(body)
    return parsed if isinstance(parsed, list) else [parsed]


def _json_object(body: bytes) -> dict[str, Any]:
    parsed = _json(body)
    if not isinstance(parsed, dict):
        raise Problem(400, "Body must be a JSON object", field="body")
    return parsed


def _validation_response(items: list[Any]) -> dict[str, Any]:
    first = items[0] if items else None
    data = first.get("data") if isinstance(first, dict) else None
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code:
        raise Problem(400, "Validation event has no validationCode", field="[0].data.validationCode")
    return {"validationResponse": code}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; don't hold the body back
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") != "/runtime/webhooks/eventgrid":
            self._dispatch()
            return
        self._read_body()
        origin = self.headers.get("WebHook-Request-Origin", "")
        headers = {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"}
        self._send(200, b"", "text/plain", headers)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            status, payload, ctype, headers = self._route(body)
        except Problem as problem:
            status, payload, ctype, headers = problem.status, _dump(problem.body()), "application/problem+json", {}
        except Exception:
            _log.exception("function raised while serving %s %s", self.command, self.path)
            failed = Problem(500, "Function failed", "the function raised; see the host log")
            status, payload, ctype, headers = 500, _dump(failed.body()), "application/problem+json", {}
        self._send(status, payload, ctype, headers)

    def _route(self, body: bytes) -> tuple[int, bytes, str, dict[str, str]]:
        host: LocalHost = self.server.host
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        if path == "/runtime/webhooks/eventgrid" and self.command == "POST":
            answer = host.eventgrid(query.get("functionName", ""), self.headers.get("aeg-event-type", ""),
                                    self.headers.get("Content-Type", ""), body)
            return (200, _dump(answer), "application/json", {}) if answer else (202, b"", "text/plain", {})
        if host.topic is not None and path == host.topic.path and self.command == "POST":
            host.topic.publish({k.lower(): v for k, v in self.headers.items()}, query, body)
            return 200, b"", "application/json", {}  # Event Grid answers 200 with no body
        if path.startswith("/api/"):
            headers = {k.lower(): v for k, v in self.headers.items()}
            resp = host.http(self.command, path[len("/api/"):], f"http://{self.headers.get('Host', '')}{self.path}",
                             headers, query, body)
            out = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-type")}
            ctype = resp.headers.get("Content-Type") or resp.mimetype or "text/plain"
            return resp.status_code, resp.get_body() or b"", ctype, out
        return self._admin(host, path, query, body)

    def _admin(self, host: LocalHost, path: str, query: Mapping[str, str],
               body: bytes) -> tuple[int, bytes, str, dict[str, str]]:
        if path == "/admin/host/ping":
            return 200, b"", "text/plain", {}
        presented = self.headers.get("x-functions-key") or query.get("code", "")
        if path.startswith("/admin/"):
            if not host.keys.allows("admin", presented):
                raise Problem(401, "Unauthorized", "admin endpoints need the master key")
            if path == "/admin/host/status" and self.command == "GET":
                return 200, _dump(host.status()), "application/json", {}
            if path.startswith("/admin/functions/") and self.command == "POST":
                host.run_function(path[len("/admin/functions/"):], body)
                return 202, b"", "text/plain", {}
        raise Problem(404, "Not found", f"nothing is served at {path}")

    def _read_body(self) -> bytes:
        length_text = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise Problem(400, "Bad Content-Length", length_text, "Content-Length") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise Problem(413, "Request body too large", f"{length} bytes; at most {MAX_BODY}")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: bytes, ctype: str, headers: Mapping[str, str]) -> None:
        self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], host: LocalHost) -> None:
        super().__init__(address, _Handler)
        self.host = host


class HostServer:
    """Runs a LocalHost on a loopback port in a background thread."""

    def __init__(self, host: LocalHost, bind: str = "127.0.0.1", port: int = 7071) -> None:
        self.host = host
        self._server = _Server((bind, port), host)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-host", daemon=True)

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        return f"http://{address!s}:{port}"

    def start(self) -> HostServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
