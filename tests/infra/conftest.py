"""Fixtures of the infrastructure tests: the app's function index and the parsed main template."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import bicep


@pytest.fixture(scope="session")
def app_functions() -> dict[str, Any]:
    """Function name -> the indexed function (``get_trigger()``, ``get_bindings()``...)."""
    return {str(fn.get_function_name()): fn for fn in bicep.load_function_app().get_functions()}


@pytest.fixture(scope="session")
def function_kinds(app_functions: dict[str, Any]) -> dict[str, str]:
    """Function name -> trigger binding name (eventGridTrigger, httpTrigger, timerTrigger...)."""
    return {name: fn.get_trigger().get_binding_name() for name, fn in app_functions.items()}


@pytest.fixture(scope="session")
def http_routes(app_functions: dict[str, Any]) -> dict[str, tuple[str | None, frozenset[str]]]:
    """HTTP function name -> (route template, upper-case methods)."""
    all_methods = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
    routes = {}
    for name, fn in app_functions.items():
        trigger = fn.get_trigger()
        if trigger.get_binding_name() == "httpTrigger":
            methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])) or all_methods
            routes[name] = (trigger.route, methods)
    return routes


@pytest.fixture(scope="session")
def main_doc() -> dict[str, Any]:
    return bicep.parse(bicep.MAIN)
