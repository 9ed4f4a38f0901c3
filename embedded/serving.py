"""The local ML platform's serving control plane: Azure ML online endpoints, on loopback, for real.

    python -m embedded.serving [--port 0] [--workdir DIR]

It stands in for Azure ML's online-endpoint control plane. Each endpoint is a router (its scoring
URI, ``http://127.0.0.1:P/score``, see ``serving_router``) splitting requests between deployments by
the traffic weights; each deployment is an ``ml.serve`` child process serving one registered model
version, with the deployment's environment variables (``serving_replica``). Deploying returns
``creating`` at once; once the child answers liveness the deployment is ``succeeded`` and a
``Microsoft.MachineLearningServices.ModelDeployed`` event in Azure's schema goes to the Functions
host (``REACTOR_LOCAL_EVENTGRID_URL``), as Azure ML's Event Grid topic would send it.

Settings come from the environment as the app reads them (``core.settings``): the storage
(``REACTOR_STORAGE_CONNECTION``) holds the model files (``{prefix}-models``) and the desired state
(``{prefix}mlserving``, see ``serving_store``), so a restarted control plane restores its endpoints
on the same ports and restarts their deployments. Every scoring request is collected as Azure ML's data
collector would (``serving_collect``) into ``REACTOR_COLLECT_CONTAINER``; stopping flushes what is
buffered. When listening it prints ``{"url": ...}`` as one JSON line on stdout. SIGTERM or Ctrl-C
stops the children it started.

HTTP API (JSON; errors are ``{"error": "..."}`` with a 4xx status, never a 500 for bad input):

    GET    /                                          {"status": "ok", "endpoints": n, "collector": counts}
    GET    /endpoints                                 {"value": [endpoint, ...]}
    PUT    /endpoints/{e}                             {"tags": {}}  get-or-create (201 when created)
    GET    /endpoints/{e}                             endpoint | 404
    PUT    /endpoints/{e}/traffic                     {"traffic": {d: pct}, "mirror": {d: pct}?} -> endpoint
    GET    /endpoints/{e}/deployments                 {"value": [deployment, ...]}
    PUT    /endpoints/{e}/deployments/{d}             {"model_name", "model_version", "instance_type"?,
                                                       "instance_count"?, "environment"?, "tags"?}
                                                      get-or-create (201 when created, state "creating")
    GET    /endpoints/{e}/deployments/{d}             deployment | 404
    PATCH  /endpoints/{e}/deployments/{d}             {"instance_count": n}  scale (0 stops the process)
    DELETE /endpoints/{e}/deployments/{d}             204; 409 while it has traffic or mirror traffic
    GET    /endpoints/{e}/deployments/{d}/health?since=ISO   {"requests", "errors", "p95_ms", "window_seconds"}
    PUT    /endpoints/{e}/deployments/{d}/fault       {"fault": "error" | "error-percent:N" | "slow:MS" | ""}
                                                      local only: inject errors or latency (serving_faults)
    PUT    /outage                                    {"mode": "error" | "timeout" | "", "seconds"?, "hang_seconds"?}
    GET    /outage                                    {"outage": {...} | null, "failed_requests": n}
                                                      local only: the ML platform fails for a period, the
                                                      /endpoints routes (but /fault) too (core.adapters.local_outage)
    POST   /metrics/query                             {"queries": [{"endpoint", "metric", "aggregation", "start",
                                                       "end", "dimensions"?}]} -> {"values": [v | null],
                                                       "errors": [text | null]}: the endpoints' Azure Monitor
                                                      metrics over each window (serving_metrics)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from embedded.serving_api import ApiError, ControlPlane, ModelFiles, parse_since
from embedded.serving_collect import Collector
from embedded.serving_replica import terminate, wait_for_line
from embedded.serving_store import ServingStore
from ml.serve import exit_with_parent

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY = 1024 * 1024  # a control request is a few hundred bytes
# Seconds a thread may hold the GIL while another waits for it (CPython's default is 5 ms). The
# routers' request threads share this process with the collector's writer, whose storage uploads
# hold the GIL for a few ms each inside the SDK; at 5 ms a scoring request that comes back from I/O
# then waits up to 5 ms, several times per request (bench/collect.py: p99 +8 ms; +5 ms at 1 ms alone,
# +2 ms with the writer's slices too). Every thread here is I/O-bound, so switching more often costs
# nothing measurable.
SWITCH_INTERVAL = 0.001
_log = logging.getLogger("reactor.serving")


@dataclass(frozen=True)
class Call:
    plane: ControlPlane
    params: list[str]  # the path's {e} and {d}
    body: Mapping[str, Any]
    query: Mapping[str, list[str]]


Handler = Callable[[Call], tuple[int, Any]]


# -- the HTTP API ------------------------------------------------------------------------------------
def _put_endpoint(c: Call) -> tuple[int, Any]:
    created, endpoint = c.plane.ensure_endpoint(c.params[0], c.body.get("tags", {}))
    return (201 if created else 200), endpoint


def _put_traffic(c: Call) -> tuple[int, Any]:
    if "traffic" not in c.body or set(c.body) - {"traffic", "mirror"}:
        raise ApiError(400, 'body must be {"traffic": {deployment: percent}, "mirror": {...}}; mirror is optional')
    return 200, c.plane.set_traffic(c.params[0], c.body["traffic"], c.body.get("mirror"))


def _put_deployment(c: Call) -> tuple[int, Any]:
    created, deployment = c.plane.deploy(c.params[0], c.params[1], c.body)
    return (201 if created else 200), deployment


def _patch_deployment(c: Call) -> tuple[int, Any]:
    if set(c.body) != {"instance_count"}:
        raise ApiError(400, 'body must be {"instance_count": n}: only the instance count of a deployment changes')
    return 200, c.plane.scale(c.params[0], c.params[1], c.body["instance_count"])


def _delete_deployment(c: Call) -> tuple[int, Any]:
    c.plane.delete_deployment(c.params[0], c.params[1])
    return 204, None


def _health(c: Call) -> tuple[int, Any]:
    return 200, c.plane.health(c.params[0], c.params[1], parse_since(c.query.get("since", [""])[-1]))


def _put_fault(c: Call) -> tuple[int, Any]:
    return 200, c.plane.set_fault(c.params[0], c.params[1], c.body)


_SEGMENT = "([^/]+)"
_TABLE: list[tuple[str, str, Handler]] = [
    ("GET", "/", lambda c: (200, {"status": "ok", "endpoints": len(c.plane.list_endpoints()),
                                  "collector": c.plane.collector.snapshot() if c.plane.collector else None})),
    ("GET", "/endpoints", lambda c: (200, {"value": c.plane.list_endpoints()})),
    ("PUT", "/endpoints/{}", _put_endpoint),
    ("GET", "/endpoints/{}", lambda c: (200, c.plane.get_endpoint(c.params[0]))),
    ("PUT", "/endpoints/{}/traffic", _put_traffic),
    ("GET", "/endpoints/{}/deployments", lambda c: (200, {"value": c.plane.list_deployments(c.params[0])})),
    ("PUT", "/endpoints/{}/deployments/{}", _put_deployment),
    ("GET", "/endpoints/{}/deployments/{}", lambda c: (200, c.plane.get_deployment(*c.params))),
    ("PATCH", "/endpoints/{}/deployments/{}", _patch_deployment),
    ("DELETE", "/endpoints/{}/deployments/{}", _delete_deployment),
    ("GET", "/endpoints/{}/deployments/{}/health", _health),
    ("PUT", "/endpoints/{}/deployments/{}/fault", _put_fault),
    ("POST", "/metrics/query", lambda c: (200, c.plane.query_metrics(c.body))),
    ("PUT", "/outage", lambda c: (200, c.plane.set_outage(c.body))),
    ("GET", "/outage", lambda c: (200, c.plane.outage_json())),
]
ROUTES = [(method, re.compile(f"^{path.replace('{}', _SEGMENT)}$"), handler) for method, path, handler in _TABLE]


def route(method: str, path: str) -> tuple[Handler, list[str]]:
    """The handler of a request and its path parameters; 404 or 405 as ApiError."""
    allowed = []
    for candidate, pattern, handler in ROUTES:
        found = pattern.match(path)
        if found and candidate == method:
            return handler, [unquote(g) for g in found.groups()]
        if found:
            allowed.append(candidate)
    if allowed:
        raise ApiError(405, f"{method} is not allowed on {path} (allowed: {', '.join(sorted(allowed))})")
    raise ApiError(404, f"no route {method} {path}")


class _ControlHandler(BaseHTTPRequestHandler):
    server_version = "reactor-serving/1"
    # headers and body leave in two writes; with Nagle on, the body waits for the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True
    plane: ControlPlane  # set on the subclass the server builds

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        outage = None
        try:
            handler, params = route(self.command, path)
            call = Call(self.plane, params, self._json_body(), parse_qs(parts.query))
            outage = self.plane.outage_now() if _fails_in_outage(path) else None
            if outage is not None and outage.mode == "error":
                raise ApiError(500, "the serving control plane is unavailable (a local outage)")
            status, answer = handler(call)
        except ApiError as exc:
            status, answer = exc.status, {"error": exc.message}
        except Exception as exc:  # storage down, a bug: say so, and keep serving other requests
            _log.exception("control request failed: %s %s", self.command, parts.path)
            status, answer = 503, {"error": f"the serving control plane failed: {type(exc).__name__}: {exc}"}
        if outage is not None and outage.mode == "timeout":
            time.sleep(outage.hang_seconds)  # the request was carried out; its answer comes too late
        try:
            self._send(status, answer)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (an outage's timeout)
            _log.info("the client left before the answer: %s %s", self.command, parts.path)

    def _json_body(self) -> Mapping[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if length > MAX_BODY or length < 0:
            raise ApiError(413, f"a control request body is at most {MAX_BODY} bytes")
        if not length:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as exc:
            raise ApiError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    def _send(self, status: int, answer: Any) -> None:
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)


def _fails_in_outage(path: str) -> bool:
    """Azure ML's control plane: the endpoint routes; not the fault hook, the status or the metrics."""
    return path.startswith("/endpoints") and not path.endswith("/fault")


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, plane: ControlPlane, port: int = 0) -> None:
        handler = type("ControlHandler", (_ControlHandler,), {"plane": plane})
        super().__init__(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


# -- the process -------------------------------------------------------------------------------------
def build(env: Mapping[str, str], workdir: Path) -> ControlPlane:
    """The control plane on the storage and event destination the app's settings name."""
    from core.adapters.blob_store import AzureBlobStore
    from core.adapters.local_eventgrid import EventGridEmulator
    from core.adapters.local_ml import ML_TOPIC, models_container
    from core.adapters.local_outage import OutageSwitch
    from core.adapters.table_store import TableStateStore
    from core.settings import Settings

    settings = Settings.from_env(env)
    store = TableStateStore.from_connection(settings.storage_connection, settings.storage_account)
    blobs = AzureBlobStore.from_connection(settings.storage_connection, settings.storage_account)
    files = ModelFiles(blobs, models_container(settings.table_prefix))
    collector = Collector(blobs, settings.collect_container, workspace=ML_TOPIC, features=files.features,
                          batch=settings.local_collect_batch, flush_seconds=settings.local_collect_flush_seconds,
                          buffer=settings.local_collect_buffer)
    return ControlPlane(ServingStore(store, settings.table_prefix), files,
                        EventGridEmulator(settings.local_eventgrid_url).publish, workdir, collector=collector,
                        outage=OutageSwitch(store, settings.table_prefix))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m embedded.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="control API port on 127.0.0.1; 0 takes a free one")
    parser.add_argument("--workdir", type=Path, help="where deployments' model files and logs go (default: a "
                                                      "temporary directory, removed on exit)")
    return parser


def tune_interpreter() -> None:
    """The serving process's interpreter settings (bench/collect.py applies them to its own, too)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tune_interpreter()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-serving-"))
    try:
        plane = build(os.environ, workdir)
        plane.restore()
        server = ControlServer(plane, args.port)
    except Exception as exc:  # settings, storage, a taken port: one clear line, non-zero exit
        print(f"the serving control plane cannot start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    _stop_on_signals(server)
    exit_with_parent(server.shutdown)  # a stack killed outright must not leave endpoints serving
    print(json.dumps({"url": server.url}), flush=True)
    _log.info("serving control plane on %s (work files in %s)", server.url, workdir)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        plane.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _stop_on_signals(server: ControlServer) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it cannot run on the thread that serves
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


# -- starting it from Python ---------------------------------------------------------------------------
class ServingProcess:
    """``python -m embedded.serving`` as a child process (the stack and the tests start it like Azurite)."""

    def __init__(self, env: Mapping[str, str], port: int = 0, log_path: Path | None = None) -> None:
        self.env = dict(env)
        self.port = port
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="reactor-serving-log-")) / "serving.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServingProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "embedded.serving", "--port", str(self.port)]
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **self.env}, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self.url = str(wait_for_line(self.log_path, "url", self.process, time.monotonic() + timeout))
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"the serving control plane did not start: {exc}") from exc
        return self

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout)


if __name__ == "__main__":
    sys.exit(main())
