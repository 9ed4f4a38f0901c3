"""The CLI's tables of status and releases, from answers shaped as the admin API gives them."""

from __future__ import annotations

from core.admin import tables
from tests.admin.sample_views import canary_release, failed_release, status


def test_status_shows_production_release_traffic_alerts_and_backlogs() -> None:
    text = tables.status_text(status())
    blocks = text.split("\n\n")
    assert blocks[0].splitlines()[0].split()[:2] == ["MODEL", "CHAMPION"]
    production = {line.split()[0]: line for line in blocks[1].splitlines()[2:]}
    assert production["diabetes"].split()[:4] == ["diabetes", "v1", "diabetes:2", "canary"]
    assert "diabetes-v2 10% / diabetes-v1 90%" in production["diabetes"] and production["diabetes"].endswith("1")
    assert "unknown (ConnectionError: unreachable)" in production["churn"]
    assert blocks[2] == "dead letters pending: 1   notifications pending: 3"


def test_status_from_a_host_without_releases_keeps_one_table() -> None:
    old = status()
    for m in old["models"]:
        for key in ("production", "releases_in_flight", "last_release", "endpoints", "alerts_firing"):
            del m[key]
    del old["outbox"]
    assert tables.status_text(old).split("\n\n")[1] == "dead letters pending: 1"


def test_endpoint_traffic_names_mirror_and_absence() -> None:
    assert tables.endpoint_traffic({"name": "e", "traffic": {"a": 100, "b": 0}, "mirror": {"b": 20}}) \
        == "a 100% (mirror b 20%)"
    assert tables.endpoint_traffic({"name": "e", "state": "absent"}) == "e does not exist yet"
    assert tables.endpoint_traffic({"name": "e", "traffic": {}}) == "no traffic"
    assert tables.endpoint_traffic(None) == "-"


def test_release_rows_show_the_canary_step_and_its_split() -> None:
    rows = tables.release_rows({"releases": [canary_release(), failed_release()]})
    assert rows[0] == ["ID", "STATE", "STEP/TRAFFIC", "UPDATED", "REASON"]
    assert rows[1] == ["diabetes:2", "canary", "step 1: diabetes-v2 10% / diabetes-v1 90%", "2026-11-22 10:13:00Z",
                       "-"]
    assert rows[2][:3] == ["diabetes:1", "qa_failed", "-"] and rows[2][4].startswith("1 of 20 smoke requests")


def test_a_release_with_its_timeline_and_compact_figures() -> None:
    text = tables.release_text(canary_release())
    facts, timeline = text.split("\n\n")
    assert facts.splitlines()[:3] == ["release        diabetes:2", "state          canary",
                                      "in production  step 1: diabetes-v2 10% / diabetes-v1 90%"]
    assert "decided by     ana@contoso.com" in facts and "reason" not in facts  # empty facts are left out
    lines = timeline.splitlines()
    assert lines[0].split() == ["AT", "STATE", "NOTE", "FIGURES"] and len(lines) == 2 + 8
    assert lines[5].endswith("requests=20 failed=0 p95_ms=41.2")
    assert lines[-1].endswith("traffic=diabetes-v2 10% / diabetes-v1 90%")
    assert tables.figures({"p95_ms": 0.812345, "deleted": [], "errors": 0}) == "p95_ms=0.8123 deleted=- errors=0"
