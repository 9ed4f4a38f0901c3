"""The status page: served as one self-contained HTML page, and drawn by a real headless Chromium.

Chromium's ``--dump-dom`` gives the document after the page's script ran; with a virtual time
budget past the refresh interval, after one refresh too (fetched with the ?code= key)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from core.admin import page
from tests.admin.conftest import KEYS, MODEL, PENDING
from tests.admin.sample_views import canary_release, failed_release, promoted_releases, status

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                    reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
PAST_REFRESH = f"--virtual-time-budget={(page.REFRESH_SECONDS + 5) * 1000}"


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"]
    return subprocess.run([*flags, *args], capture_output=True, timeout=120)


def section(dom: str, ident: str) -> str:
    """The markup of the element with this id, up to the next section heading."""
    found = re.search(rf'id="{ident}"(.*?)(<h2>|<script)', dom, re.S)
    assert found, f"no #{ident} in the page"
    return found.group(1)


@pytest.mark.integration
def test_the_page_is_self_contained_and_carries_the_data(admin_host, pending_release) -> None:
    resp = admin_host.call("GET", "dashboard", KEYS["default"])
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    html = resp.text
    assert MODEL in html and 'id="data"' in html and "setInterval(refresh" in html
    assert PENDING in html, "the releases are embedded with the page"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external assets"
    assert "</script>" not in html.split('id="data">', 1)[1].split("</script>", 1)[0]


@pytest.mark.integration
def test_a_browser_opens_it_with_code(admin_host) -> None:
    resp = admin_host.call("GET", f"dashboard?code={KEYS['default']}")
    assert resp.status_code == 200
    assert admin_host.call("GET", "dashboard?code=wrong").status_code == 401


@pytest.mark.integration
@needs_chromium
def test_screenshot_in_headless_chromium(admin_host, pending_release, tmp_path) -> None:
    png = tmp_path / "dashboard.png"
    url = f"{admin_host.url}/api/dashboard?code={KEYS['default']}"
    done = chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,900", url)
    assert png.exists(), done.stderr.decode(errors="replace")[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert len(data) > 20_000, "a blank page compresses to almost nothing"


@pytest.mark.integration
@needs_chromium
def test_every_section_is_drawn_after_a_refresh(admin_host, pending_release, tmp_path) -> None:
    done = chromium(tmp_path, PAST_REFRESH, "--dump-dom", f"{admin_host.url}/api/dashboard?code={KEYS['default']}")
    dom = done.stdout.decode()
    assert re.search(r'id="note" class="muted">updated ', dom), section(dom, "note")  # refreshed, not failed
    assert f"{PENDING} pending" in section(dom, "models")
    endpoints = section(dom, "endpoints")
    assert "diabetes-prod" in endpoints and "ConnectionError" in endpoints  # no platform answers: said so
    releases = section(dom, "releases")
    assert re.search(rf"<details open=\"\"><summary><span>{PENDING}</span><span class=\"run\">pending</span>",
                     releases)
    assert "version 7 registered" in releases
    assert "none" in section(dom, "alerts")
    assert 'id="outbox" class="ok">0 pending' in dom and 'id="backlog"' in dom
    assert "<th>Action</th>" in section(dom, "audit")


@needs_chromium
def test_a_canary_in_flight_is_drawn_with_its_traffic_split(tmp_path) -> None:
    releases = [canary_release(), failed_release(), *promoted_releases(3)]
    file = tmp_path / "page.html"
    file.write_text(page.render(status(), [], [], releases), encoding="utf-8")
    dom = chromium(tmp_path, PAST_REFRESH, "--dump-dom", file.as_uri()).stdout.decode()
    # The refresh ran (the timer fires within the budget) and failed: a file has no API to fetch from.
    assert 'id="note" class="bad">refresh failed' in dom
    models = section(dom, "models")
    assert "diabetes:2 canary" in models and '<span class="bad">1 firing</span>' in models
    endpoints = section(dom, "endpoints")
    segments = re.findall(r'class="seg"[^>]*style="width: (\d+)%[^"]*">([^<]+)<', endpoints)
    assert ("10", "diabetes-v2 10%") in segments and ("90", "diabetes-v1 90%") in segments
    assert "diabetes-v2 10% / diabetes-v1 90%" in endpoints and "not created yet" in endpoints
    assert "ConnectionError: unreachable" in endpoints
    drawn = section(dom, "releases")
    assert drawn.count("<details open") == page.EXPANDED and drawn.count("<details") == len(releases)
    assert "step 1: diabetes-v2 10% / diabetes-v1 90%" in drawn
    assert "requests=20 failed=0 p95_ms=41.2" in drawn and "p95_ms=0.8123" in drawn
    assert '<span class="bad">qa_failed</span>' in drawn
    assert "diabetes-p95-latency" in section(dom, "alerts")
    assert 'id="outbox" class="bad">3 pending' in dom and 'id="backlog" class="bad">1 pending' in dom
