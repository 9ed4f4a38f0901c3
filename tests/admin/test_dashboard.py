"""The status page: served as one self-contained HTML page, and drawn by a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from tests.admin.conftest import KEYS, MODEL

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"


def test_the_page_is_self_contained_and_carries_the_data(admin_host) -> None:
    resp = admin_host.call("GET", "dashboard", KEYS["default"])
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    html = resp.text
    assert MODEL in html and 'id="data"' in html and "setInterval(refresh" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external assets"
    assert "</script>" not in html.split('id="data">', 1)[1].split("</script>", 1)[0]


def test_a_browser_opens_it_with_code(admin_host) -> None:
    resp = admin_host.call("GET", f"dashboard?code={KEYS['default']}")
    assert resp.status_code == 200
    assert admin_host.call("GET", "dashboard?code=wrong").status_code == 401


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_screenshot_in_headless_chromium(admin_host, tmp_path) -> None:
    png = tmp_path / "dashboard.png"
    url = f"{admin_host.url}/api/dashboard?code={KEYS['default']}"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
            f"--screenshot={png}", "--window-size=1280,900", url]
    done = subprocess.run(args, capture_output=True, timeout=120)
    assert png.exists(), done.stderr.decode(errors="replace")[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert len(data) > 20_000, "a blank page compresses to almost nothing"
