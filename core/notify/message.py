"""The words every receiver shows, built once so Teams, Slack, PagerDuty and Opsgenie agree.

A person should see, without clicking: what fired, for which model/version/endpoint, the
values against their thresholds, and where to go next (run, dashboard, runbook).
"""

from __future__ import annotations

from core.notify.model import Notification

CONTEXT_LABELS = ("model", "version", "endpoint", "deployment")
STATE = {"firing": "FIRING", "resolved": "RESOLVED", "info": "INFO"}


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, marking a cut with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def headline(n: Notification) -> str:
    """``[FIRING:3] title (model 4 @ endpoint)``: the one line that fits everywhere."""
    count = f":{n.alerts}" if n.alerts > 1 else ""
    where = context(n)
    return f"[{STATE[n.kind]}{count}] {n.title}" + (f" ({where})" if where else "")


def context(n: Notification) -> str:
    model, version = n.labels.get("model", ""), n.labels.get("version", "")
    endpoint = n.labels.get("endpoint", "")
    text = f"{model} {version}".strip() if model else ""
    return f"{text} @ {endpoint}" if text and endpoint else text or endpoint


def facts(n: Notification) -> list[tuple[str, str]]:
    """Context labels first, then the measured values, then every other label."""
    first = [(k, n.labels[k]) for k in CONTEXT_LABELS if n.labels.get(k)]
    rest = [(k, v) for k, v in sorted(n.labels.items()) if k not in CONTEXT_LABELS]
    return [("severity", n.severity), *first, *sorted(n.fields.items()), *rest]


def links(n: Notification) -> list[tuple[str, str]]:
    """Links, the runbook first: it says what to do."""
    return sorted(n.links.items(), key=lambda item: (item[0] != "runbook", item[0]))


def plain(n: Notification) -> str:
    """A plain-text body: summary, facts, links."""
    lines = [n.summary, "", *(f"{k}: {v}" for k, v in facts(n)), "", *(f"{k}: {u}" for k, u in links(n))]
    return "\n".join(lines).strip()
