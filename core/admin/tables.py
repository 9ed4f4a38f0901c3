"""Plain-text tables of admin answers for `reactor` in a terminal (`--json` is for scripts)."""

from __future__ import annotations

from typing import Any

MAX_CELL = 60


def render(rows: list[list[str]]) -> str:
    """First row is the header; columns padded to their widest cell, long cells clipped."""
    if len(rows) <= 1:
        return "\n".join(["  ".join(rows[0]) if rows else "", "(none)"])
    cells = [[_clip(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _clip(value: Any) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def status_rows(payload: dict[str, Any]) -> list[list[str]]:
    rows = [["MODEL", "CHAMPION", "VERSIONS", "PENDING", "IN-FLIGHT JOB", "LAST JOB", "OUTCOME"]]
    for m in payload["models"]:
        s, champion = m["retrain"], m.get("champion") or {}
        rows.append([m["model"], champion.get("version", m.get("error", "-")), str(len(m["versions"])),
                     str(s["pending_files"]), s["in_flight_job"] or "-", s["last_job"] or "-",
                     s["last_outcome"] or "-"])
    backlog = payload["dead_letters"]
    rows.append([f"dead letters pending: {backlog['pending']}", "", "", "", "", "", ""])
    return rows


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
