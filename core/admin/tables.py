"""Plain-text tables of admin answers for `reactor` in a terminal (`--json` is for scripts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_CELL = 60
NOTE_CELL = 90  # a timeline note is the story of the step: clipped later than other cells


def render(rows: list[list[str]], max_cell: int = MAX_CELL) -> str:
    """First row is the header; columns padded to their widest cell, long cells clipped."""
    if len(rows) <= 1:
        return "\n".join(["  ".join(rows[0]) if rows else "", "(none)"])
    cells = [[_clip(c, max_cell) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _clip(value: Any, limit: int = MAX_CELL) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def when(iso: str | None) -> str:
    """``2026-11-22T03:59:37.364231+00:00`` -> ``2026-11-22 03:59:37Z``: seconds are enough to read."""
    if not iso:
        return "-"
    text = str(iso)
    utc = text.endswith(("+00:00", "Z"))
    return text[:19].replace("T", " ") + ("Z" if utc else "")


def split(traffic: Mapping[str, Any] | None) -> str:
    """``{"diabetes-v2": 10, "diabetes-v1": 90}`` -> ``diabetes-v2 10% / diabetes-v1 90%``."""
    shares = [(name, pct) for name, pct in (traffic or {}).items() if pct]
    return " / ".join(f"{name} {pct}%" for name, pct in shares) or "no traffic"


def figures(values: Mapping[str, Any] | None) -> str:
    """A step's figures on one line: ``requests=20 failed=0 p95_ms=41.2``."""
    out = []
    for k, v in (values or {}).items():
        if isinstance(v, Mapping):
            shown = split(v)
        elif isinstance(v, list | tuple):
            shown = ",".join(map(str, v)) or "-"
        elif isinstance(v, float):
            shown = f"{v:.4g}"
        else:
            shown = str(v)
        out.append(f"{k}={shown}")
    return " ".join(out)


# -- status ---------------------------------------------------------------------------------------
def status_text(payload: dict[str, Any]) -> str:
    """Retraining per model, then production and releases per model, then the backlogs."""
    blocks = [render(status_rows(payload))]
    if any("production" in m for m in payload["models"]):  # older hosts answer without releases
        blocks.append(render(production_rows(payload)))
    if any(m.get("live_quality") for m in payload["models"]):  # labels joined to predictions
        blocks.append(render(live_quality_rows(payload)))
    return "\n\n".join([*blocks, backlog_line(payload)])


def status_rows(payload: dict[str, Any]) -> list[list[str]]:
    rows = [["MODEL", "CHAMPION", "VERSIONS", "PENDING", "IN-FLIGHT JOB", "LAST JOB", "OUTCOME"]]
    for m in payload["models"]:
        s, champion = m["retrain"], m.get("champion") or {}
        rows.append([m["model"], champion.get("version", m.get("error", "-")), str(len(m["versions"])),
                     str(s["pending_files"]), s["in_flight_job"] or "-", s["last_job"] or "-",
                     s["last_outcome"] or "-"])
    return rows


def production_rows(payload: dict[str, Any]) -> list[list[str]]:
    rows = [["MODEL", "PRODUCTION", "RELEASE IN FLIGHT", "PRODUCTION TRAFFIC", "ALERTS FIRING"]]
    for m in payload["models"]:
        prod = m.get("production") or {}
        flight = ", ".join(f"{r['id']} {r['state']}" for r in m.get("releases_in_flight") or []) or "-"
        rows.append([m["model"], f"v{prod['version']}" if prod.get("version") else "-", flight,
                     endpoint_traffic((m.get("endpoints") or {}).get("production")),
                     str(len(m.get("alerts_firing") or []))])
    return rows


def live_quality_rows(payload: dict[str, Any]) -> list[list[str]]:
    rows = [["MODEL", "VERSION", "LIVE RMSE", "LIVE MAE", "LABELLED", "WINDOW"]]
    for m in payload["models"]:
        q = m.get("live_quality") or {}
        if q:
            shown = ([q["error"][:60], "-"] if q.get("error") else
                     ["-" if q.get(k) is None else f"{q[k]:.2f}" for k in ("rmse", "mae")])
            rows.append([m["model"], f"v{q.get('version', '?')}", *shown, str(q.get("n", 0)),
                         f"{q.get('window_hours', '?')} h"])
    return rows


def endpoint_traffic(ep: Mapping[str, Any] | None) -> str:
    """What an endpoint serves, or why that is not known."""
    if not ep:
        return "-"
    if ep.get("error"):
        return f"unknown ({ep['error']})"
    if ep.get("state") == "absent":
        return f"{ep['name']} does not exist yet"
    mirror = ", ".join(f"{d} {p}%" for d, p in (ep.get("mirror") or {}).items() if p)
    return split(ep.get("traffic")) + (f" (mirror {mirror})" if mirror else "")


def backlog_line(payload: dict[str, Any]) -> str:
    line = f"dead letters pending: {payload['dead_letters']['pending']}"
    outbox = payload.get("outbox") or {}
    return line + (f"   notifications pending: {outbox['pending']}" if "pending" in outbox else "")


# -- releases -------------------------------------------------------------------------------------
def release_rows(payload: dict[str, Any]) -> list[list[str]]:
    rows = [["ID", "STATE", "STEP/TRAFFIC", "UPDATED", "REASON"]]
    for r in payload["releases"]:
        rows.append([r["id"], r["state"], progress(r), when(r.get("updated_at")), r.get("reason") or "-"])
    return rows


def progress(r: Mapping[str, Any]) -> str:
    """Where a release stands in production: the canary step and its traffic split."""
    if r["state"] == "promoted":
        return f"{r['deployment']} 100%"
    if r["state"] != "canary":
        return "-"
    if int(r.get("step", -1)) < 0:
        return "mirror"
    traffic = next((e["figures"]["traffic"] for e in reversed(r.get("timeline") or [])
                    if isinstance(e.get("figures", {}).get("traffic"), Mapping)), None)
    return f"step {int(r['step']) + 1}: {split(traffic)}" if traffic else f"step {int(r['step']) + 1}"


RELEASE_FIELDS = [("release", "id"), ("state", "state"), ("reason", "reason"), ("deployment", "deployment"),
                  ("previous", "previous"), ("qa endpoint", "qa_endpoint"), ("prod endpoint", "prod_endpoint"),
                  ("approval", "approval"), ("deadline", "approval_deadline"), ("requested by", "requested_by"),
                  ("decided by", "decided_by"), ("correlation", "correlation_id")]


def release_text(r: dict[str, Any]) -> str:
    """One release: its facts (the empty ones left out), then its timeline, oldest first."""
    facts = [f"{label:<14} {r[key]}" for label, key in RELEASE_FIELDS if r.get(key) not in (None, "")]
    if r["state"] in ("canary", "promoted"):
        facts.insert(2, f"{'in production':<14} {progress(r)}")
    rows = [["AT", "STATE", "NOTE", "FIGURES"],
            *([when(e.get("at")), e.get("state", ""), e.get("note", ""), figures(e.get("figures"))]
              for e in r.get("timeline") or [])]
    return "\n".join(facts) + "\n\n" + render(rows, NOTE_CELL)


# -- audit, dead letters, silences ----------------------------------------------------------------
def audit_rows(payload: dict[str, Any]) -> list[list[str]]:
    head = ["AT", "ACTION", "MODEL", "VERSION", "EVENT", "ACTOR", "CORRELATION"]
    return [head, *([r["at"], r["action"], r["model"], r["version"], r["event_id"], r["actor"],
                     r["correlation_id"]] for r in payload["records"])]


def letter_rows(payload: dict[str, Any]) -> list[list[str]]:
    head = ["ID", "STATUS", "RECEIVED", "FIELD", "REASON"]
    return [head, *([d["id"], d["status"], d["received_at"], d["field"], d["reason"]]
                    for d in payload["dead_letters"])]


def replay_rows(payload: dict[str, Any]) -> list[list[str]]:
    return [["ID", "RESULT", "EVENT", "CORRELATION"],
            [payload["id"], payload["result"], payload["event_id"], payload["correlation_id"]]]


def silence_rows(payload: dict[str, Any]) -> list[list[str]]:
    rows = [["ID", "MATCHERS", "ENDS", "BY", "COMMENT"]]
    for s in payload["silences"]:
        rows.append([s["id"], ", ".join(s["matchers"]), s["ends_at"], s["created_by"], s["comment"]])
    return rows
