"""``python -m embedded.stack`` as ``make dev`` runs it: refuses bad settings, stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from embedded.azurite import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_bad_settings_stop_the_start_with_every_problem() -> None:
    env = {**os.environ, "REACTOR_LOG_LEVEL": "LOUD", "REACTOR_CLAIM_LEASE_SECONDS": "-1"}
    out = subprocess.run([sys.executable, "-m", "embedded.stack", "--azurite", "external", "--port",
                          str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "REACTOR_LOG_LEVEL" in out.stderr and "REACTOR_CLAIM_LEASE_SECONDS" in out.stderr


def test_ctrl_c_stops_host_and_azurite() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "embedded.stack", "--azurite", "memory", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        connection = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()
        assert connection["status"] == "healthy"
        azurite_pids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert azurite_pids, "the stack runs Azurite as its child"
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in output
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "host port still open"
    for pid in azurite_pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"azurite {pid} still running"


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return re.split(r"\) ", f.read(), maxsplit=1)[1].startswith("Z")
