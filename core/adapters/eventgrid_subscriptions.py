"""Event Grid subscriptions, read from ``infra/event-subscriptions.json``, and the router that
applies their filters the way Event Grid does: included event types, subject begins/ends
with (case-insensitive), and advanced filters on envelope and ``data.*`` keys.
The Bicep loads the same file, so local routing and Azure cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import ML, STORAGE

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTIONS_FILE = ROOT / "infra" / "event-subscriptions.json"

_Op = Callable[[Any, Sequence[Any]], bool]


def _text(v: Any) -> str:
    return str(v).lower()


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


OPERATORS: dict[str, _Op] = {
    "StringIn": lambda v, vals: v is not None and _text(v) in {_text(x) for x in vals},
    "StringNotIn": lambda v, vals: v is None or _text(v) not in {_text(x) for x in vals},
    "StringBeginsWith": lambda v, vals: v is not None and any(_text(v).startswith(_text(x)) for x in vals),
    "StringNotBeginsWith": lambda v, vals: v is None or not any(_text(v).startswith(_text(x)) for x in vals),
    "StringEndsWith": lambda v, vals: v is not None and any(_text(v).endswith(_text(x)) for x in vals),
    "StringNotEndsWith": lambda v, vals: v is None or not any(_text(v).endswith(_text(x)) for x in vals),
    "StringContains": lambda v, vals: v is not None and any(_text(x) in _text(v) for x in vals),
    "StringNotContains": lambda v, vals: v is None or not any(_text(x) in _text(v) for x in vals),
    "NumberIn": lambda v, vals: _number(v) is not None and _number(v) in {float(x) for x in vals},
    "NumberNotIn": lambda v, vals: _number(v) is None or _number(v) not in {float(x) for x in vals},
    "BoolEquals": lambda v, vals: isinstance(v, bool) and v is bool(vals[0]),
    "IsNotNull": lambda v, vals: v is not None,
    "IsNullOrUndefined": lambda v, vals: v is None,
}


@dataclass(frozen=True)
class AdvancedFilter:
    operator: str
    key: str
    values: tuple[Any, ...]

    def matches(self, event: Mapping[str, Any]) -> bool:
        return OPERATORS[self.operator](_lookup(event, self.key), self.values)


@dataclass(frozen=True)
class Subscription:
    name: str
    function: str
    topic: str  # "storage" | "ml"
    event_types: tuple[str, ...]
    subject_begins_with: str
    subject_ends_with: str
    advanced_filters: tuple[AdvancedFilter, ...]

    def matches(self, event: Mapping[str, Any]) -> bool:
        if topic_kind(event) != self.topic:
            return False
        if _text(event_type(event)) not in {_text(t) for t in self.event_types}:
            return False
        subject = _text(event.get("subject") or "")
        if not subject.startswith(_text(self.subject_begins_with)):
            return False
        if not subject.endswith(_text(self.subject_ends_with)):
            return False
        return all(f.matches(event) for f in self.advanced_filters)


def event_type(event: Mapping[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


def topic_kind(event: Mapping[str, Any]) -> str:
    """Which system topic publishes this event: the storage account or the ML workspace."""
    kind = event_type(event)
    return "storage" if kind.startswith(STORAGE) else "ml" if kind.startswith(ML) else ""


def _lookup(event: Mapping[str, Any], key: str) -> Any:
    aliases = {"eventtype": ("eventType", "type"), "type": ("type", "eventType"),
               "topic": ("topic", "source"), "source": ("source", "topic")}
    head, _, rest = key.partition(".")
    if head.lower() != "data":
        for name in aliases.get(key.lower(), (key,)):
            if name in event:
                return event[name]
        return None
    value: Any = event.get("data")
    for part in rest.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def load(path: Path = SUBSCRIPTIONS_FILE) -> list[Subscription]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [_subscription(item, path) for item in doc["subscriptions"]]


def _subscription(item: Mapping[str, Any], path: Path) -> Subscription:
    filters = []
    for f in item.get("advancedFilters", []):
        if f["operatorType"] not in OPERATORS:
            raise ValueError(f"{path}: subscription {item['name']}: unknown operatorType {f['operatorType']!r}")
        values = f.get("values", [f.get("value")])
        filters.append(AdvancedFilter(f["operatorType"], f["key"], tuple(values)))
    if item["topic"] not in ("storage", "ml"):
        raise ValueError(f"{path}: subscription {item['name']}: topic must be 'storage' or 'ml'")
    return Subscription(item["name"], item["function"], item["topic"], tuple(item["includedEventTypes"]),
                        item.get("subjectBeginsWith", ""), item.get("subjectEndsWith", ""), tuple(filters))


def route(subscriptions: Sequence[Subscription], events: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """function name -> the events its subscriptions select, in order."""
    routed: dict[str, list[Any]] = {}
    for event in events:
        for sub in subscriptions:
            if sub.matches(event):
                routed.setdefault(sub.function, []).append(event)
    return routed
