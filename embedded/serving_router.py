"""An endpoint's router: its scoring URI on loopback, splitting requests between deployments.

It does what Azure ML's endpoint front end does for one endpoint: ``POST /score`` goes to one
deployment, chosen by the header ``azureml-model-deployment`` when the caller names one, else by
the traffic weights; a ``mirror`` share of requests is also copied to the mirror deployment in the
background, its answer discarded. The answer carries ``azureml-model-deployment`` naming the
deployment that served it, as Azure's does.

The split is a smooth weighted round robin (nginx's upstream algorithm) rather than a random draw:
over any 100 requests a 90/10 split is exactly 90/10, so a canary sees its share from the first
requests and a test can check it without statistics. The mirror share is counted the same way.

Every request a deployment served (live or mirrored) is recorded with its time, status and latency
for ``health`` and for the endpoint's metrics (``serving_metrics``); an error is a 5xx answer or a
failed connection (recorded as status 0). A fault set on a deployment (``serving_faults``) is applied
here, before forwarding, and recorded like any answer.

Each request has an id: the caller's ``x-request-id`` (or ``x-ms-client-request-id``) when it sends a
valid one, else a new UUID; the answer carries it in ``x-request-id`` (and echoes
``x-ms-client-request-id``), as Azure's endpoints do. With a ``Collector``, every live request a
deployment answered is handed to it (inputs, answer, model version, latency, status, request id) for
inference data collection (``serving_collect``); mirrored copies are not collected, because their
answers never reach a caller.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

from core.logs import get_logger, log
from embedded.serving_collect import Collector, Scored
from embedded.serving_faults import Fault

DEPLOYMENT_HEADER = "azureml-model-deployment"
REQUEST_ID_HEADERS = ("x-request-id", "x-ms-client-request-id")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_BODY = 16 * 1024 * 1024
REQUEST_TIMEOUT = 60.0  # seconds a deployment may take to answer (Azure's request_timeout_ms, raised)
MAX_SAMPLES = 200_000  # requests kept per deployment for health; older ones are dropped
MIRROR_WORKERS = 4
MIRROR_BACKLOG = 256  # mirrored requests waiting at most; beyond that a copy is dropped, never the live request
_log = get_logger("serving.router")


@dataclass(frozen=True)
class Routes:
    """What the router needs to know, replaced as a whole when anything changes (no partial reads)."""

    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror: Mapping[str, int] = field(default_factory=dict)
    upstreams: Mapping[str, int] = field(default_factory=dict)  # deployment -> port; 0 = not running
    models: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # deployment -> (model, version)


@dataclass(frozen=True)
class Health:
    requests: int
    errors: int
    p95_ms: float | None
    window_seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "p95_ms": self.p95_ms,
                "window_seconds": self.window_seconds}


class Metrics:
    """Per deployment: (time, status, latency in ms) of each request it served."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[datetime, int, float]]] = {}
        self._lock = threading.Lock()

    def record(self, deployment: str, status: int, latency_ms: float, at: datetime | None = None) -> None:
        """``at`` (default: now) must not go back in time: the window search relies on the order."""
        with self._lock:
            samples = self._samples.setdefault(deployment, deque(maxlen=MAX_SAMPLES))
            samples.append((at or datetime.now(UTC), status, latency_ms))

    def health(self, deployment: str, since: datetime) -> Health:
        with self._lock:
            window = [s for s in self._samples.get(deployment, ()) if s[0] >= since]
        errors = sum(1 for _, status, _ in window if status == 0 or status >= 500)
        latencies = sorted(latency for _, _, latency in window)
        seconds = max(0.0, (datetime.now(UTC) - since).total_seconds())
        return Health(len(window), errors, _p95(latencies), round(seconds, 3))

    def forget(self, deployment: str) -> None:
        with self._lock:
            self._samples.pop(deployment, None)

    def window(self, start: datetime, end: datetime) -> dict[str, list[tuple[datetime, int, float]]]:
        """Per deployment, the samples from ``start`` (inclusive) to ``end`` (exclusive). Samples are
        appended in time order, so the window is found by bisection, not by a scan of all of them."""
        with self._lock:
            found = {}
            for name, samples in self._samples.items():
                first = bisect.bisect_left(samples, start, key=lambda s: s[0])
                found[name] = [s for s in itertools.islice(samples, first, None) if s[0] < end]
            return found


def _p95(latencies: list[float]) -> float | None:
    """Nearest-rank 95th percentile: the value 95 % of requests were at or below."""
    if not latencies:
        return None
    rank = max(1, -(-95 * len(latencies) // 100))  # ceil(0.95 n)
    return round(latencies[rank - 1], 3)


class _Shares:
    """Smooth weighted round robin over named weights (nginx): exact shares, evenly interleaved."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}
        self._weights: dict[str, int] = {}
        self._mirror_credit = 0
        self._lock = threading.Lock()

    def pick(self, weights: Mapping[str, int]) -> str | None:
        live = {name: weight for name, weight in weights.items() if weight > 0}
        if not live:
            return None
        with self._lock:
            if live != self._weights:  # new split: start over, as nginx does on a reload
                self._weights, self._current = live, {}
            total = sum(live.values())
            for name, weight in live.items():
                self._current[name] = self._current.get(name, 0) + weight
            chosen = max(live, key=lambda name: (self._current[name], name))
            self._current[chosen] -= total
            return chosen

    def mirror_now(self, percent: int) -> bool:
        """True for exactly ``percent`` of the calls, spread evenly."""
        with self._lock:
            self._mirror_credit += percent
            if self._mirror_credit >= 100:
                self._mirror_credit -= 100
                return True
            return False


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    deployment: str = ""
    content_type: str = "application/json"
    upstream: bool = False  # the deployment itself answered (not the router on its behalf)
    latency_ms: float = 0.0


class Router:
    """One endpoint's scoring URI: a threaded HTTP server on 127.0.0.1."""

    def __init__(self, endpoint: str, port: int = 0, collector: Collector | None = None) -> None:
        self.endpoint = endpoint
        self.collector = collector
        self.metrics = Metrics()
        self._routes = Routes()
        self._faults: dict[str, Fault] = {}
        self._shares = _Shares()
        self._http = urllib3.PoolManager(num_pools=32, maxsize=16, retries=False)
        self._mirrors = ThreadPoolExecutor(MIRROR_WORKERS, thread_name_prefix=f"mirror-{endpoint}")
        self._mirror_backlog = threading.BoundedSemaphore(MIRROR_BACKLOG)
        self._server = _bind(self, port)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"router-{endpoint}", daemon=True)

    @property
    def scoring_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/score"

    def start(self) -> Router:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self._server.shutdown()
        self._server.server_close()
        self._mirrors.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    def update(self, routes: Routes) -> None:
        self._routes = routes  # one reference swap: a request sees the old routes or the new ones

    def set_fault(self, deployment: str, fault: Fault | None) -> None:
        faults = {k: v for k, v in self._faults.items() if k != deployment}
        self._faults = {**faults, deployment: fault} if fault is not None else faults  # one swap, as routes

    # -- one request ---------------------------------------------------------------------------
    def score(self, body: bytes, content_type: str, named: str, request_id: str = "") -> Answer:
        routes = self._routes
        when = datetime.now(UTC)
        target = named.strip().lower() if named else self._shares.pick(routes.traffic)
        if target is None:
            return _error(503, f"endpoint {self.endpoint} has no traffic: no deployment receives requests")
        if target not in routes.upstreams:
            return _error(404, f"endpoint {self.endpoint} has no deployment named {target!r}")
        if not named:
            self._mirror(routes, body, content_type)
        answer = self._forward(target, routes.upstreams[target], body, content_type)
        if self.collector is not None and answer.upstream:
            model, version = routes.models.get(target, ("", ""))
            self.collector.record(Scored(request_id or str(uuid.uuid4()), self.endpoint, target, model, version,
                                         when, body, answer.status, answer.body, answer.latency_ms))
        return answer

    def _mirror(self, routes: Routes, body: bytes, content_type: str) -> None:
        for name, percent in routes.mirror.items():
            if percent > 0 and self._shares.mirror_now(percent) and self._mirror_backlog.acquire(blocking=False):
                port = routes.upstreams.get(name, 0)
                try:
                    self._mirrors.submit(self._mirror_one, name, port, body, content_type)
                except RuntimeError:  # shutting down
                    self._mirror_backlog.release()

    def _mirror_one(self, name: str, port: int, body: bytes, content_type: str) -> None:
        try:
            self._forward(name, port, body, content_type)
        finally:
            self._mirror_backlog.release()

    def _forward(self, name: str, port: int, body: bytes, content_type: str) -> Answer:
        if not port:
            self.metrics.record(name, 0, 0.0)
            return _error(503, f"deployment {name} of endpoint {self.endpoint} is not running", name)
        started = time.perf_counter()
        fault = self._faults.get(name)
        if fault is not None:
            time.sleep(fault.slow_ms / 1000)
            if fault.fails_now():
                self.metrics.record(name, 500, _ms_since(started))
                return _error(500, f"injected fault on deployment {name}: {fault.text}", name)
        try:
            response = self._http.request("POST", f"http://127.0.0.1:{port}/score", body=body,
                                          headers={"Content-Type": content_type or "application/json"},
                                          timeout=urllib3.Timeout(connect=5.0, read=REQUEST_TIMEOUT))
        except urllib3.exceptions.TimeoutError:
            self.metrics.record(name, 504, _ms_since(started))
            return _error(504, f"deployment {name} did not answer within {REQUEST_TIMEOUT:g} s", name)
        except urllib3.exceptions.HTTPError as exc:
            self.metrics.record(name, 0, _ms_since(started))
            return _error(502, f"deployment {name} could not be reached: {type(exc).__name__}", name)
        latency = _ms_since(started)
        self.metrics.record(name, response.status, latency)
        return Answer(response.status, response.data, name,
                      response.headers.get("Content-Type", "application/json"), True, latency)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _error(status: int, message: str, deployment: str = "") -> Answer:
    return Answer(status, json.dumps({"error": message}).encode(), deployment)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "reactor-endpoint/1"
    # headers and body leave in two writes; with Nagle on, the body waits for the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True
    router: Router  # set on the subclass each router builds
    _request_id = ""

    def do_POST(self) -> None:
        self._request_id, problem = request_id(self.headers)
        length = _length(self.headers.get("Content-Length"))
        if self.path.split("?", 1)[0] != "/score" or length is None:
            self.close_connection = True  # the body is left unread
            status = 404 if length is not None else 413
            self._send(_error(status, "POST /score with a Content-Length up to 16 MiB is the only route"))
            return
        body = self.rfile.read(length)
        if problem:
            self._send(_error(400, problem))
            return
        answer = self.router.score(body, self.headers.get("Content-Type", ""), self.headers.get(DEPLOYMENT_HEADER, ""),
                                   self._request_id)
        self._send(answer)

    def do_GET(self) -> None:
        self._request_id = ""
        self._send(_error(404, "POST /score is the only route") if self.path.split("?", 1)[0] != "/"
                   else Answer(200, json.dumps({"endpoint": self.router.endpoint}).encode()))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if answer.deployment:
            self.send_header(DEPLOYMENT_HEADER, answer.deployment)
        if self._request_id:
            self.send_header("x-request-id", self._request_id)
        client_id = self.headers.get("x-ms-client-request-id", "")
        if client_id and _REQUEST_ID.match(client_id):
            self.send_header("x-ms-client-request-id", client_id)
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request counts live in Metrics; one log line per scoring request would be noise


def request_id(headers: Message) -> tuple[str, str]:
    """(the request's id, "") -- the caller's when valid, else a new one; or ("", why it is refused)."""
    for name in REQUEST_ID_HEADERS:
        given = headers.get(name)
        if given is not None:
            if not _REQUEST_ID.match(given):
                return "", f"{name} must be 1-128 letters, digits or . _ : - (got {given[:40]!r})"
            return given, ""
    return str(uuid.uuid4()), ""


def _length(header: str | None) -> int | None:
    try:
        length = int(header or 0)
    except ValueError:
        return None
    return length if 0 <= length <= MAX_BODY else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _bind(router: Router, port: int) -> _Server:
    """Bind the port asked for (a restarted control plane keeps its scoring URIs), else a free one."""
    handler = type("EndpointHandler", (_Handler,), {"router": router})
    if port:
        try:
            return _Server(("127.0.0.1", port), handler)
        except OSError as exc:
            log(_log, logging.WARNING, "router port taken; the endpoint moves", endpoint=router.endpoint,
                port=port, error=str(exc))
    return _Server(("127.0.0.1", 0), handler)
