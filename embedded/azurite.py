"""Azurite, the storage emulator, as a child process on loopback (npm package, pinned)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The emulator's well-known development account; public by design, not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def account_key() -> str:
    """The key Azurite checks: the development account's in ``AZURITE_ACCOUNTS`` (Azurite's own
    setting, ``name:key``, inherited by the child process), else the well-known one."""
    name, _, keys = os.environ.get("AZURITE_ACCOUNTS", "").split(";")[0].partition(":")
    return keys.split(":")[0] if name == ACCOUNT and keys else ACCOUNT_KEY


def connection_string(blob: int, queue: int, table: int) -> str:
    base = f"http://127.0.0.1:{{}}/{ACCOUNT}"
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={account_key()};"
            f"BlobEndpoint={base.format(blob)};QueueEndpoint={base.format(queue)};"
            f"TableEndpoint={base.format(table)};")


def executable() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        raise FileNotFoundError("azurite is not installed: run 'npm ci' (make does it for you)")
    return found


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    location: Path | None = None  # None = in memory
    process: subprocess.Popen[bytes] | None = None
    free_ports: bool = False  # ports picked as free: others may be taken first, so pick again

    @classmethod
    def on_free_ports(cls, location: Path | None = None) -> Azurite:
        return cls(free_port(), free_port(), free_port(), location, free_ports=True)

    @classmethod
    def default_ports(cls, location: Path | None = None) -> Azurite:
        return cls(10000, 10001, 10002, location)

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    def start(self, timeout: float = 30.0) -> Azurite:
        """Start and wait until all three services listen. A free port can be taken by another
        process between being picked and being bound; then new ones are picked (three tries)."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                if not self.free_ports or "EADDRINUSE" not in str(exc) or attempt == 2:
                    raise
                self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Azurite:
        args = [executable(), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
                "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
                "--blobPort", str(self.blob_port), "--queuePort", str(self.queue_port),
                "--tablePort", str(self.table_port)]
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait(timeout)
        return self

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            while not _listening(port):
                if self.process is not None and self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise RuntimeError(f"azurite exited with {self.process.returncode}: {err.strip()[-500:]}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"azurite did not listen on 127.0.0.1:{port} within {timeout} s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
