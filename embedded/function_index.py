"""What the local host serves, read from the ``FunctionApp`` object itself (never a second list).

``app.get_functions()`` indexes the app once (a second call raises on duplicate names),
and each function tells its trigger: Event Grid, HTTP (route, methods, auth level) or
timer (NCRONTAB schedule, run on start-up).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    kind: str  # eventGridTrigger | httpTrigger | timerTrigger | other binding name
    arg_name: str
    call: Callable[..., Any]
    trigger: Any


@dataclass(frozen=True)
class HttpRoute:
    function: IndexedFunction
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str  # anonymous | function | admin

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else {k: v for k, v in found.groupdict().items() if v is not None}


_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}")


def route_pattern(template: str) -> re.Pattern[str]:
    """Functions route templates: ``releases/{id}``, ``items/{id:int}``, ``x/{opt?}``, ``{*rest}``."""
    out, pos = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        catch_all, name, optional = m.group(1), m.group(2), m.group(3)
        body = f"(?P<{name}>.+)" if catch_all else f"(?P<{name}>[^/]+)"
        if optional and out and out[-1].endswith("/"):
            out[-1] = out[-1][:-1]
            body = f"(?:/{body})?"
        elif optional:
            body += "?"
        out.append(body)
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out), re.IGNORECASE)


class FunctionIndex:
    def __init__(self, app: func.FunctionApp) -> None:
        self.functions: dict[str, IndexedFunction] = {}
        self.routes: list[HttpRoute] = []
        for fn in app.get_functions():
            trigger = fn.get_trigger()
            if trigger is None:
                raise ValueError(f"function {fn.get_function_name()} has no trigger")
            indexed = IndexedFunction(str(fn.get_function_name()), trigger.get_binding_name(), trigger.name,
                                      fn.get_user_function(), trigger)
            self.functions[indexed.name] = indexed
            if indexed.kind == "httpTrigger":
                self.routes.append(_http_route(indexed))

    def of_kind(self, kind: str) -> dict[str, IndexedFunction]:
        return {n: f for n, f in self.functions.items() if f.kind == kind}

    def find_route(self, method: str, path: str) -> tuple[HttpRoute | None, dict[str, str], bool]:
        """(route, route params, path matched some route with another method)."""
        path_matched = False
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if method in route.methods:
                return route, params, True
            path_matched = True
        return None, {}, path_matched


def _http_route(fn: IndexedFunction) -> HttpRoute:
    template = (fn.trigger.route or fn.name).strip("/")
    methods = frozenset(str(getattr(m, "value", m)).upper() for m in (fn.trigger.methods or ["GET", "POST"]))
    level = str(getattr(fn.trigger.auth_level, "value", fn.trigger.auth_level) or "function").lower()
    return HttpRoute(fn, template, route_pattern(template), methods, level)
