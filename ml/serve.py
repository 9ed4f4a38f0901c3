"""A local inference server for ``ml/score.py``, with the contract of Azure ML's inference server.

    python -m ml.serve --model-dir DIR [--host 127.0.0.1] [--port 0]

Azure ML runs a scoring script in ``azureml-inference-server-http``: it sets AZUREML_MODEL_DIR,
calls ``init()`` once, answers ``GET /`` with 200 "Healthy" (liveness) and ``POST /score`` with
``run(body)``. This module does the same with the standard library instead of using that package,
because the package binds 0.0.0.0 (every interface, where only loopback is wanted) and pulls in
Flask, gunicorn and the Azure ML SDK for what is one route here. It serves ``score.score`` so each
answer carries its real status: 200 with predictions, 400 for a request the model cannot score,
500 when scoring fails.

Once listening it prints one JSON line on stdout, ``{"port": N}`` (``--port 0`` takes a free port),
so the process that started it knows where to send requests; everything else goes to stderr. A
model that cannot be loaded ends the process with exit status 1 and the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

MAX_BODY = 16 * 1024 * 1024  # bytes; a scoring request larger than this is a client mistake
_log = logging.getLogger("ml.serve")


class ScoringHandler(BaseHTTPRequestHandler):
    # keep-alive: the endpoint router reuses its connections, which saves a connect per request
    protocol_version = "HTTP/1.1"
    server_version = "reactor-inference/1"
    # headers and body leave in two writes; with Nagle on, the body waits for the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/":
            self._send(200, b"Healthy", "text/plain; charset=utf-8")
        else:
            self._json(404, {"error": f"no route GET {self.path.split('?', 1)[0]}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/score":
            self._discard_body()
            self._json(404, {"error": f"no route POST {self.path.split('?', 1)[0]}"})
            return
        body = self._body()
        if body is None:
            return
        assert isinstance(self.server, ScoringServer)
        status, answer = self.server.scorer(body)
        self._json(status, answer)

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the unread body would be taken for the next request
            self._json(413 if length > MAX_BODY else 400,
                       {"error": f"Content-Length must be a number of bytes up to {MAX_BODY}"})
            return None
        return self.rfile.read(length)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would flood the deployment log; errors are logged by score


Scorer = Callable[[bytes], tuple[int, dict[str, Any]]]


class ScoringServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow request must not hold the process open at shutdown

    def __init__(self, address: tuple[str, int], scorer: Scorer) -> None:
        super().__init__(address, ScoringHandler)
        self.scorer = scorer


def load_model(model_dir: Path) -> Scorer:
    """Load the model as Azure does (AZUREML_MODEL_DIR, then ``init()``) and return what scores a request."""
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    from ml import score  # here, not at the top: importing this module must stay cheap (see exit_with_parent)

    score.init()
    return score.score


def serve(model_dir: Path, host: str, port: int) -> ScoringServer:
    return ScoringServer((host, port), load_model(model_dir))


def exit_with_parent(stop: Callable[[], None], interval: float = 1.0) -> None:
    """Call ``stop`` once the process that started this one is gone: a parent killed without the
    chance to stop its children must not leave them serving (POSIX; a no-op where the parent id
    never changes, as on Windows)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        stop()

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="the model's files (AZUREML_MODEL_DIR)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 takes a free one")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = serve(args.model_dir, args.host, args.port)
    except Exception as exc:  # the parent reads the last stderr lines as the deployment's failure reason
        print(f"cannot start the scoring server: loading the model failed: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        return 1
    _stop_on_sigterm(server)
    exit_with_parent(server.shutdown)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    _log.info("serving %s on http://%s:%s", args.model_dir, args.host, server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop_on_sigterm(server: ScoringServer) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it cannot run on the thread serving
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
