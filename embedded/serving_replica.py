"""One deployment's scoring process: ``python -m ml.serve`` on its model files, started in the background.

The serving control plane (``embedded/serving.py``) owns one ``Replica`` per running deployment.
Starting is asynchronous, as an Azure ML deployment's provisioning is: ``start`` returns at once with
the state ``creating``; a thread downloads the model files, starts the child and waits until it
answers liveness (``succeeded``) or fails (``failed``, with the last lines of its stderr, which is
where ``ml.serve`` puts the reason). The child's stdout and stderr go to files rather than pipes, so
a chatty child can never block on a pipe nobody reads.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

ReplicaState = Literal["creating", "succeeded", "failed", "stopped"]
START_TIMEOUT = 120.0  # seconds to load a model and listen; a 2-core machine starting several is slow
ERROR_LINES = 5
ERROR_CHARS = 1500
ROOT = Path(__file__).resolve().parent.parent  # where the ml package lives

# What a deployment's process inherits: the machine's environment without the reactor's own settings
# (an Azure deployment does not see the function app's storage connection, nor a fault set in the
# shell that started the stack), then the deployment's environment variables.
_PRIVATE_PREFIX = "REACTOR_"


class ReplicaFailed(Exception):
    """The scoring process could not start; the message is the deployment's error, fit for a person."""


class Replica:
    """A scoring child process for one deployment, started in the background."""

    def __init__(self, label: str, fetch: Callable[[Path], None], environment: Mapping[str, str], workdir: Path,
                 on_change: Callable[[Replica], None], python: str = sys.executable) -> None:
        self.label = label  # endpoint/deployment, for messages
        self._fetch = fetch  # writes the model files into the directory it is given
        self._environment = dict(environment)
        self._workdir = workdir
        self._on_change = on_change
        self._python = python
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self.state: ReplicaState = "creating"
        self.error = ""
        self.port = 0

    def start(self) -> Replica:
        threading.Thread(target=self._run, name=f"replica-{self.label}", daemon=True).start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (also while it starts); the replica ends ``stopped``."""
        with self._lock:
            self._stopping = True
            process, self._process = self._process, None
            self.state, self.port = "stopped", 0
        if process is not None:
            terminate(process, timeout)

    @property
    def alive(self) -> bool:
        with self._lock:
            return self._process is not None and self._process.poll() is None

    def _run(self) -> None:
        try:
            port = self._start_process()
        except ReplicaFailed as exc:
            self._settle("failed", str(exc))
        except Exception as exc:  # storage gone, disk full: the deployment fails with the cause
            self._settle("failed", f"{type(exc).__name__}: {exc}")
        else:
            self._settle("succeeded", "", port)

    def _settle(self, state: ReplicaState, error: str, port: int = 0) -> None:
        with self._lock:
            if self._stopping:
                return
            self.state, self.error, self.port = state, error, port
            failed, process = state == "failed", self._process
        if failed and process is not None:
            terminate(process, 5.0)
        self._on_change(self)

    def _start_process(self) -> int:
        if self._workdir.exists():
            shutil.rmtree(self._workdir, ignore_errors=True)  # a restart serves fresh files
        model_dir = self._workdir / "model"
        model_dir.mkdir(parents=True)
        self._fetch(model_dir)
        out, err = self._workdir / "serve.out", self._workdir / "serve.err"
        process = self._spawn(model_dir, out, err)
        deadline = time.monotonic() + START_TIMEOUT
        port = int(wait_for_line(out, "port", process, deadline, err))
        wait_live(port, process, deadline, err)
        return port

    def _spawn(self, model_dir: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
        command = [self._python, "-m", "ml.serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                   "--port", "0"]
        with self._lock:
            if self._stopping:
                raise ReplicaFailed("stopped while starting")
            with out.open("wb") as stdout, err.open("wb") as stderr:
                self._process = subprocess.Popen(command, cwd=self._workdir, env=self._child_env(),
                                                 stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
            return self._process

    def _child_env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith(_PRIVATE_PREFIX)}
        path = os.pathsep.join(filter(None, [str(ROOT), inherited.get("PYTHONPATH")]))
        return {**inherited, **self._environment, "PYTHONPATH": path}


def wait_for_line(out: Path, key: str, process: subprocess.Popen[bytes], deadline: float,
                  err: Path | None = None) -> Any:
    """The value of ``key`` in the first JSON line the child printed on stdout (its "I listen" line)."""
    while True:
        for line in _lines(out):
            found = _json_value(line, key)
            if found is not None:
                return found
        _check_running(process, err or out, deadline)
        time.sleep(0.05)


def wait_live(port: int, process: subprocess.Popen[bytes], deadline: float, err: Path) -> None:
    """Until ``GET /`` answers 200, as Azure's liveness probe asks."""
    while not _live(port):
        _check_running(process, err, deadline)
        time.sleep(0.05)


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = ERROR_LINES) -> str:
    """The last non-empty lines of a log file: where a Python child states why it ended."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-ERROR_CHARS:]


def _check_running(process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    code = process.poll()
    if code is not None:
        raise ReplicaFailed(f"the scoring process exited with {code}: {tail(log) or 'no output'}")
    if time.monotonic() > deadline:
        terminate(process, 5.0)
        raise ReplicaFailed(f"the scoring process did not answer within {START_TIMEOUT:g} s: {tail(log)}")


def _lines(path: Path) -> list[str]:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    return []


def _json_value(line: str, key: str) -> Any:
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed.get(key) if isinstance(parsed, dict) else None


def _live(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()

