"""The demo scenario end to end, as ``make demo`` runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from embedded.azurite import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_shows_the_upload_recorded_once() -> None:
    env = {**os.environ, "REACTOR_DEMO_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "embedded.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BlobCreated arrived at on_blob_created and was recorded" in out.stdout
    assert "recorded once: 1 processed, 1 duplicate(s) skipped" in out.stdout
    assert "stopped the host and Azurite" in out.stdout
