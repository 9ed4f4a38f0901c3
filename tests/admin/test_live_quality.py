"""Live quality in the operators' views: the status payload, ``reactor status`` and the dashboard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.admin import page, status, tables
from core.feedback.quality import LiveQuality
from tests.admin.sample_views import status as sample_status
from tests.admin.test_dashboard import chromium, needs_chromium, section
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore


class Down(MemoryStateStore):
    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("table storage unreachable")


def _quality(store: MemoryStateStore, clock: Clock) -> LiveQuality:
    return LiveQuality(store, MemoryBlobStore(), None, prefix="t", labels_container="labels",  # type: ignore[arg-type]
                       collect_container="c", lookback_hours=24, window_hours=6, clock=clock)


def test_status_shows_the_production_versions_live_quality_or_why_not():
    clock = Clock()
    store = MemoryStateStore()
    for i, error in enumerate((3.0, -4.0)):
        store.insert("tlivequality", f"diabetes:1:{clock.now:%Y%m%d}", f"prod|r{i}|0",
                     {"time": (clock.now - timedelta(minutes=5)).isoformat(), "error": error})
    quality = _quality(store, clock)
    row = {"production": {"version": "1"}, "champion": {"version": "2"}}
    assert status.live_quality_status("diabetes", row, quality) == {
        "version": "1", "window_hours": 6.0, "rmse": 3.5355, "mae": 3.5, "n": 2}
    assert status.live_quality_status("diabetes", {"production": {"version": ""}, "champion": {"version": "2"}},
                                      quality)["n"] == 0  # no production: the champion, not labelled yet
    assert status.live_quality_status("diabetes", {"champion": None}, quality) is None
    broken = status.live_quality_status("diabetes", row, _quality(Down(), clock))
    assert broken is not None and broken["error"] == "ConnectionError: table storage unreachable"


def _with_quality() -> dict[str, Any]:
    payload = sample_status()
    for m in payload["models"]:
        m["live_quality"] = ({"version": "1", "window_hours": 24.0, "rmse": 59.2712, "mae": 48.3, "n": 100}
                             if m["model"] == "diabetes" else None)
    return payload


def test_reactor_status_prints_live_rmse_and_mae():
    blocks = tables.status_text(_with_quality()).split("\n\n")
    assert blocks[2].splitlines()[0].split() == ["MODEL", "VERSION", "LIVE", "RMSE", "LIVE", "MAE", "LABELLED",
                                                 "WINDOW"]
    assert blocks[2].splitlines()[2].split() == ["diabetes", "v1", "59.27", "48.30", "100", "24.0", "h"]
    assert "LIVE RMSE" not in tables.status_text(sample_status()), "nothing joined yet: no table"


@needs_chromium
def test_the_dashboard_draws_live_quality(tmp_path):
    file = tmp_path / "page.html"
    file.write_text(page.render(_with_quality(), [], [], []), encoding="utf-8")
    models = section(chromium(tmp_path, "--dump-dom", file.as_uri()).stdout.decode(), "models")
    assert "Live quality" in models and "v1: RMSE 59.27, MAE 48.30 (n=100, 24 h)" in models
