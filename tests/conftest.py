"""Shared fixtures: Azurite on free loopback ports (one per test session), settings and
services bound to it, and the local host as a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from core import bootstrap
from core.settings import Settings
from embedded.azurite import Azurite, free_port
from embedded.local_settings import SAMPLE, read_values

ROOT = Path(__file__).resolve().parent.parent


def base_env(connection: str, prefix: str) -> dict[str, str]:
    env = read_values(SAMPLE)
    # Intake tests run without retraining, release or drift policies: nothing they send starts a job or a release.
    env.update(REACTOR_STORAGE_CONNECTION=connection, REACTOR_TABLE_PREFIX=prefix, REACTOR_RETRAIN_POLICIES="",
               REACTOR_RELEASE_POLICIES="", REACTOR_DRIFT_MONITORS="")
    return env


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite.on_free_ports().start()
    yield server
    server.stop()


def memory_or_azurite(request: pytest.FixtureRequest) -> tuple[Any, Any, str]:
    """(state store, blob store, table prefix) for a test parametrised over ``memory`` (the
    in-memory fakes) and ``azurite`` (real Table and Blob Storage, tables of the test's own)."""
    from core.adapters.blob_store import AzureBlobStore
    from core.adapters.table_store import TableStateStore
    from tests.fakes import MemoryBlobStore, MemoryStateStore

    if request.param == "memory":
        return MemoryStateStore(), MemoryBlobStore(), "t"
    env = request.getfixturevalue("env")
    connection = env["REACTOR_STORAGE_CONNECTION"]
    return (TableStateStore.from_connection(connection), AzureBlobStore.from_connection(connection),
            env["REACTOR_TABLE_PREFIX"])


@pytest.fixture
def env(azurite: Azurite) -> dict[str, str]:
    """Sample settings pointed at the session's Azurite, with tables of this test's own."""
    return base_env(azurite.connection_string, unique_prefix())


@pytest.fixture
def services(env: dict[str, str]) -> Iterator[bootstrap.Services]:
    built = bootstrap.build(Settings.from_env(env))
    bootstrap.install(built)
    yield built
    bootstrap.install(None)


class HostProcess:
    """``python -m embedded.stack`` against the session's Azurite, as ``make dev`` runs it."""

    def __init__(self, env: dict[str, str], watch: bool = False, timers: bool = True, serving: bool = False,
                 root: Path = ROOT) -> None:
        self.env = env  # root: the checkout whose code the host runs (bench/intake.py --baseline)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "embedded.stack", "--azurite", "external", "--port", str(self.port)]
        if not watch:
            args.append("--no-watch")
        if not timers:
            args.append("--no-timers")
        if not serving:  # the online endpoints' control plane: only for the tests that release models
            args.append("--no-serving")
        self.log = ROOT / ".pytest_cache" / f"host-{self.port}.log"
        self.log.parent.mkdir(exist_ok=True)
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(args, cwd=root, env={**os.environ, **env}, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"host exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/admin/host/ping", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise TimeoutError("the local host did not start")

    def logs(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        leaked = leaked_secrets(self.log.read_text(errors="replace"), self.env)
        assert not leaked, f"the host's log ({self.log}) shows the value of {', '.join(leaked)}"


SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CONNECTION", re.IGNORECASE)
SECRET_PART = re.compile(r"(?:AccountKey|SharedAccessKey|sig)=([^;&\s]{8,})", re.IGNORECASE)


def leaked_secrets(text: str, env: Mapping[str, str]) -> list[str]:
    """The secret settings (by name) whose values, or whose key parts in a connection string, appear
    in ``text``. Every host a test starts is checked when it stops (issue 8: secrets never in logs)."""
    found = []
    for name, value in env.items():
        if not SECRET_NAME.search(name) or not value:
            continue
        parts = SECRET_PART.findall(value) or _values(value)
        if any(len(part) >= 8 and part in text for part in parts):
            found.append(name)
    return found


def _values(setting: str) -> list[str]:
    """A URL is a secret as a whole (a webhook's path is its credential); a ``name:key,...`` list
    (LOCAL_FUNCTION_KEYS) is secret in its keys."""
    if "://" in setting:
        return [setting]
    return [item.partition(":")[2] or item for item in setting.split(",")]


@pytest.fixture(scope="module")
def host_env(azurite: Azurite) -> dict[str, str]:
    return base_env(azurite.connection_string, unique_prefix())


@pytest.fixture(scope="module")
def host(host_env: dict[str, str]) -> Iterator[HostProcess]:
    proc = HostProcess(host_env)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def host_services(host_env: dict[str, str]) -> bootstrap.Services:
    """Services on the same tables as the host process, to read what it recorded."""
    return bootstrap.build(Settings.from_env(host_env))
