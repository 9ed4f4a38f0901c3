"""Which receivers get a notification: receivers and routes from ``REACTOR_NOTIFY_ROUTES``.

    {"default": "ml-teams",
     "receivers": {"ml-teams": {"type": "teams"},
                   "oncall":   {"type": "pagerduty"},
                   "ops":      {"type": "opsgenie", "url": "https://api.eu.opsgenie.com"}},
     "routes": [{"receiver": "oncall", "severity": ["critical", "error"], "continue": true},
                {"receiver": "ops", "match": {"team": "ml"}, "match_re": {"model": "diab.*"}}]}

Routes are tried in order; the first that matches wins unless it says ``"continue": true``;
when none matched, the ``default`` receiver gets it (Alertmanager's routing tree, one level
deep). ``match`` compares labels for equality, ``match_re`` with a fully anchored regex;
``severity`` and ``kind`` can be matched like labels. Secrets never live in this JSON: each
receiver's URL or key is the setting ``REACTOR_NOTIFY_SECRET_<NAME>`` (a Key Vault reference
in Azure). Every problem is reported with its JSON path and never with a secret's value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.notify.model import SEVERITIES, Notification
from core.notify.receivers import BUILDERS, URL_SECRETS
from core.notify.request import Target

SETTING = "REACTOR_NOTIFY_ROUTES"
SECRET_PREFIX = "REACTOR_NOTIFY_SECRET_"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_ROUTE_KEYS = ("receiver", "severity", "match", "match_re", "continue")


@dataclass(frozen=True)
class Route:
    receiver: str
    severities: tuple[str, ...] = ()
    match: Mapping[str, str] = field(default_factory=dict)
    match_re: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    continue_: bool = False

    def matches(self, n: Notification) -> bool:
        labels = {**n.labels, "severity": n.severity, "kind": n.kind}
        return ((not self.severities or n.severity in self.severities)
                and all(labels.get(k) == v for k, v in self.match.items())
                and all(p.fullmatch(labels.get(k, "")) for k, p in self.match_re.items()))


@dataclass(frozen=True)
class Routes:
    receivers: Mapping[str, Target] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    default: str = ""

    def targets(self, n: Notification) -> list[Target]:
        """The receivers for this notification, each once, in route order."""
        names: list[str] = []
        for route in self.routes:
            if route.matches(n):
                names.append(route.receiver)
                if not route.continue_:
                    break
        if not names and self.default:
            names.append(self.default)
        return [self.receivers[name] for name in dict.fromkeys(names)]


def secret_setting(receiver: str) -> str:
    return SECRET_PREFIX + re.sub(r"[^A-Z0-9]", "_", receiver.upper())


def parse_routes(text: str, env: Mapping[str, str]) -> tuple[Routes, list[str]]:
    """(routes, problems). Empty text or ``{}``: no receivers, notifications are stored and go nowhere."""
    if not text.strip():
        return Routes(), []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return Routes(), [f"{SETTING} is not valid JSON: {exc}"]
    if not isinstance(doc, Mapping):
        return Routes(), [f"{SETTING} must be a JSON object with receivers, routes and default"]
    if not doc:  # {} is how an empty Bicep object parameter arrives: the same as no setting
        return Routes(), []
    problems = [f"{SETTING}.{k}: unknown key" for k in doc if k not in ("receivers", "routes", "default")]
    receivers = _receivers(doc.get("receivers"), env, problems)
    routes = _routes(doc.get("routes", []), receivers, problems)
    default = doc.get("default", "")
    if default and default not in receivers:
        problems.append(f"{SETTING}.default: {default!r} is not a receiver")
    return Routes(receivers, routes, str(default or "")), problems


def _receivers(raw: Any, env: Mapping[str, str], problems: list[str]) -> dict[str, Target]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"{SETTING}.receivers must be a non-empty object of name -> receiver")
        return {}
    found = {}
    for name, spec in raw.items():
        target = _receiver(str(name), spec, env, problems)
        if target is not None:
            found[target.name] = target
    return found


def _receiver(name: str, spec: Any, env: Mapping[str, str], problems: list[str]) -> Target | None:
    where = f"{SETTING}.receivers.{name}"
    before = len(problems)
    if not _NAME.match(name):
        problems.append(f"{where}: not a valid receiver name (letters, digits, '_' and '-')")
    if not isinstance(spec, Mapping):
        problems.append(f"{where} must be an object")
        return None
    problems += [f"{where}.{k}: unknown key" for k in spec if k not in ("type", "url")]
    kind, url = spec.get("type"), spec.get("url", "")
    if kind not in BUILDERS:
        problems.append(f"{where}.type must be one of {', '.join(sorted(BUILDERS))}")
    if url and kind in URL_SECRETS:
        problems.append(f"{where}.url: a {kind} URL is a secret; put it in {secret_setting(name)}")
    elif url and (not isinstance(url, str) or not _URL.match(url)):
        problems.append(f"{where}.url must be an http(s)://host/... API URL")
    secret = env.get(secret_setting(name), "").strip()
    if not secret:
        problems.append(f"{where}: its secret setting {secret_setting(name)} is empty")
    elif kind in URL_SECRETS and not _URL.match(secret):
        problems.append(f"{where}: {secret_setting(name)} must hold the webhook URL (value not shown)")
    if len(problems) > before:
        return None
    return Target(name, str(kind), secret, str(url))


def _routes(raw: Any, receivers: Mapping[str, Target], problems: list[str]) -> tuple[Route, ...]:
    if not isinstance(raw, list):
        problems.append(f"{SETTING}.routes must be a list")
        return ()
    routes = [_route(f"{SETTING}.routes[{i}]", spec, receivers, problems) for i, spec in enumerate(raw)]
    return tuple(r for r in routes if r is not None)


def _route(where: str, spec: Any, receivers: Mapping[str, Target], problems: list[str]) -> Route | None:
    if not isinstance(spec, Mapping):
        problems.append(f"{where} must be an object")
        return None
    before = len(problems)
    problems += [f"{where}.{k}: unknown key" for k in spec if k not in _ROUTE_KEYS]
    receiver = spec.get("receiver")
    if receiver not in receivers:
        problems.append(f"{where}.receiver: {receiver!r} is not a receiver")
    severities = _severities(where, spec.get("severity", []), problems)
    match = _labels(f"{where}.match", spec.get("match", {}), problems)
    patterns = {k: p for k, p in ((k, _regex(f"{where}.match_re.{k}", v, problems))
                                  for k, v in _labels(f"{where}.match_re", spec.get("match_re", {}), problems).items())
                if p is not None}
    if not isinstance(spec.get("continue", False), bool):
        problems.append(f"{where}.continue must be true or false")
    if len(problems) > before:
        return None
    return Route(str(receiver), severities, match, patterns, bool(spec.get("continue", False)))


def _severities(where: str, raw: Any, problems: list[str]) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or any(s not in SEVERITIES for s in items):
        problems.append(f"{where}.severity must be a list of {', '.join(SEVERITIES)}")
        return ()
    return tuple(items)


def _labels(where: str, raw: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        problems.append(f"{where} must be an object of label -> string")
        return {}
    return {str(k): v for k, v in raw.items()}


def _regex(where: str, text: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error as exc:
        problems.append(f"{where}: not a valid regular expression ({exc})")
        return None
