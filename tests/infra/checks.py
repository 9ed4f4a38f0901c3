"""Drift checkers: pure functions from data to a list of problems (empty when consistent).

The tests feed them the real catalogue, template and app index; the same functions fed a broken
input must report it (``test_consistency`` proves that each one can fail).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

# Settings the Functions runtime or the local host reads, never the app: documented in the sample,
# but not part of core.settings.SETTINGS.
RUNTIME_ONLY = frozenset({"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"})
LOCAL_ONLY_PREFIX = "LOCAL_"
APP_PREFIX = "REACTOR_"
# Settings of the app that only the local (embedded) platform reads: in the catalogue and the
# sample, never provisioned in Azure, where the app must start without them.
LOCAL_PLATFORM_PREFIX = "REACTOR_LOCAL_"

# App settings that must never be provisioned in Azure: runtime-only names that Flex Consumption
# rejects or that would bypass the identity-based connection, and the local host's own keys.
FORBIDDEN_IN_AZURE = frozenset({
    "FUNCTIONS_WORKER_RUNTIME",  # Flex Consumption: functionAppConfig.runtime instead
    "FUNCTIONS_EXTENSION_VERSION",  # Flex Consumption: rejected
    "AzureWebJobsStorage",  # a connection string; identity-based is AzureWebJobsStorage__accountName
    "AzureWebJobsFeatureFlags",  # worker indexing is the default for Python v2 in Azure
    "WEBSITE_RUN_FROM_PACKAGE",  # Flex Consumption deploys from its deployment container
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",  # Flex Consumption mounts no Azure Files share
})

# Names that hold secrets once they exist (webhook URLs, routing keys...): Key Vault references only.
SECRET_NAME = re.compile(r"WEBHOOK|SECRET|TOKEN|PASSWORD|API_KEY|ROUTING_KEY|CONNECTION_STRING")
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\((VaultName=[^;()]+;SecretName=[^;()]+|SecretUri=[^()]+)\)$")


def settings_drift(catalogue: Mapping[str, str], plain: Mapping[str, Any], secret: Mapping[str, Any],
                   sample: Mapping[str, Any]) -> list[str]:
    """``catalogue``: core.settings.SETTINGS. ``plain`` / ``secret``: the app settings the Bicep
    provisions as values / as Key Vault references. ``sample``: local.settings.sample.json."""
    problems: list[str] = []
    values: Mapping[str, Any] = sample.get("Values", {})
    docs: Mapping[str, Any] = sample.get("Documentation", {})
    provisioned = set(plain) | set(secret)
    for name in sorted(set(plain) & set(secret)):
        problems.append(f"{name}: provisioned both as a plain value and as a Key Vault reference")
    for name in sorted(catalogue):
        local_only = name.startswith(LOCAL_PLATFORM_PREFIX)
        if local_only and name in provisioned:
            problems.append(f"{name}: local-platform-only setting provisioned in Azure")
        if not local_only and name not in provisioned:
            problems.append(f"{name}: in core.settings.SETTINGS but not provisioned as an app setting in infra/")
        if name not in values:
            problems.append(f"{name}: in core.settings.SETTINGS but missing from local.settings.sample.json Values")
        if not str(docs.get(name, "")).strip():
            problems.append(f"{name}: in core.settings.SETTINGS but not described in local.settings.sample.json "
                            "Documentation")
        if SECRET_NAME.search(name) and name in plain:
            problems.append(f"{name}: looks like a secret but is provisioned as a plain value "
                            "(use a Key Vault reference)")
    for name in sorted(provisioned - set(catalogue)):
        if name.startswith(APP_PREFIX):
            problems.append(f"{name}: provisioned in infra/ but unused (not in core.settings.SETTINGS)")
    for name, value in sorted(secret.items()):
        if not isinstance(value, str) or not KEY_VAULT_REFERENCE.match(value):
            problems.append(f"{name}: secret setting is not a Key Vault reference: {value!r}")
    for name in sorted(provisioned & FORBIDDEN_IN_AZURE):
        problems.append(f"{name}: must not be provisioned in Azure")
    for name in sorted(provisioned):
        if name.startswith(LOCAL_ONLY_PREFIX):
            problems.append(f"{name}: local host setting provisioned in Azure")
    for name in sorted(set(values) | set(docs)):
        if name not in catalogue and name not in RUNTIME_ONLY and not name.startswith(LOCAL_ONLY_PREFIX):
            problems.append(f"{name}: in local.settings.sample.json but not a setting the app reads "
                            "(core.settings.SETTINGS) nor a runtime/local-only one")
        if name in values and name not in docs:
            problems.append(f"{name}: in local.settings.sample.json Values but not in Documentation")
        if name in docs and name not in values:
            problems.append(f"{name}: in local.settings.sample.json Documentation but not in Values")
    return problems


# Event Grid: the operators of advanced filters and which take a single ``value``.
SINGLE_VALUE_OPERATORS = frozenset({
    "NumberGreaterThan", "NumberGreaterThanOrEquals", "NumberLessThan", "NumberLessThanOrEquals", "BoolEquals",
})
NO_VALUE_OPERATORS = frozenset({"IsNullOrUndefined", "IsNotNull"})
MULTI_VALUE_OPERATORS = frozenset({
    "NumberIn", "NumberNotIn", "NumberInRange", "NumberNotInRange", "StringIn", "StringNotIn",
    "StringBeginsWith", "StringNotBeginsWith", "StringEndsWith", "StringNotEndsWith",
    "StringContains", "StringNotContains",
})
TOPIC_EVENT_PREFIX = {"storage": "Microsoft.Storage.", "ml": "Microsoft.MachineLearningServices."}
SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")
MAX_ADVANCED_FILTERS = 25
MAX_FILTER_VALUES = 25


def event_grid_drift(functions: Mapping[str, str], subs: Iterable[Mapping[str, Any]]) -> list[str]:
    """``functions``: the app's function name -> trigger binding (``eventGridTrigger``...).
    ``subs``: the entries of infra/event-subscriptions.json."""
    subs = list(subs)
    problems: list[str] = []
    targets = Counter(str(s.get("function")) for s in subs)
    grid_functions = {name for name, kind in functions.items() if kind == "eventGridTrigger"}
    for name in sorted(grid_functions):
        if targets[name] != 1:
            problems.append(f"Event Grid function {name} has {targets[name]} subscriptions in "
                            "infra/event-subscriptions.json (expected exactly one)")
    names = Counter(str(s.get("name")) for s in subs)
    for sub in subs:
        label = f"subscription {sub.get('name')!r}"
        target = sub.get("function")
        if target not in functions:
            problems.append(f"{label} targets {target!r}, which is not a function of the app")
        elif target not in grid_functions:
            problems.append(f"{label} targets {target!r}, whose trigger is {functions[str(target)]}, "
                            "not eventGridTrigger")
        problems.extend(_subscription_problems(label, sub, names))
    return problems


def _subscription_problems(label: str, sub: Mapping[str, Any], names: Counter[str]) -> list[str]:
    problems: list[str] = []
    if not SUBSCRIPTION_NAME.match(str(sub.get("name", ""))):
        problems.append(f"{label}: Event Grid names are 3-64 letters, digits and hyphens")
    if names[str(sub.get("name"))] > 1:
        problems.append(f"{label}: name used more than once")
    prefix = TOPIC_EVENT_PREFIX.get(str(sub.get("topic")))
    if prefix is None:
        problems.append(f"{label}: topic must be one of {sorted(TOPIC_EVENT_PREFIX)}")
    types = sub.get("includedEventTypes") or []
    if not types:
        problems.append(f"{label}: includedEventTypes is empty (it would receive every event type)")
    for event_type in types:
        if prefix and not str(event_type).startswith(prefix):
            problems.append(f"{label}: event type {event_type} is not published by the {sub.get('topic')} topic")
    filters = sub.get("advancedFilters") or []
    if len(filters) > MAX_ADVANCED_FILTERS:
        problems.append(f"{label}: more than {MAX_ADVANCED_FILTERS} advanced filters")
    value_count = 0
    for f in filters:
        op = f.get("operatorType")
        if op in SINGLE_VALUE_OPERATORS:
            ok = "value" in f and "values" not in f
            value_count += 1
        elif op in NO_VALUE_OPERATORS:
            ok = "value" not in f and "values" not in f
        elif op in MULTI_VALUE_OPERATORS:
            ok = isinstance(f.get("values"), list) and bool(f["values"]) and "value" not in f
            value_count += len(f.get("values") or [])
        else:
            problems.append(f"{label}: unknown advanced filter operator {op!r}")
            continue
        if not ok:
            problems.append(f"{label}: advanced filter {op} has the wrong value/values shape")
        if not f.get("key"):
            problems.append(f"{label}: advanced filter {op} has no key")
    if value_count > MAX_FILTER_VALUES:
        problems.append(f"{label}: advanced filters hold {value_count} values (Event Grid allows {MAX_FILTER_VALUES})")
    return problems


RESERVED_ROUTE_PREFIXES = ("api/", "runtime/", "admin/")


def http_route_drift(routes: Mapping[str, tuple[str | None, frozenset[str]]]) -> list[str]:
    """``routes``: HTTP function name -> (route template, methods)."""
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for name, (route, methods) in sorted(routes.items()):
        if not route or not route.strip("/"):
            problems.append(f"HTTP function {name} has no route")
            continue
        template = route.strip("/").lower()
        if template.startswith(RESERVED_ROUTE_PREFIXES) or route.startswith("/"):
            problems.append(f"HTTP function {name}: route {route!r} must be relative to /api/ "
                            "(no leading '/', 'api/', 'runtime/' or 'admin/')")
        if not methods:
            problems.append(f"HTTP function {name} declares no methods")
        for method in methods:
            other = seen.setdefault((template, method), name)
            if other != name:
                problems.append(f"HTTP functions {other} and {name} both serve {method} /api/{template}")
    return problems


APP_SETTING_REFERENCE = re.compile(r"%([A-Za-z0-9_]+)%")


def binding_setting_drift(bindings: Mapping[str, Iterable[Mapping[str, Any]]], provisioned: Iterable[str]) -> list[str]:
    """``bindings``: function name -> its bindings' JSON (``get_dict_repr()``). Every ``%NAME%``
    binding expression and every ``connection`` must resolve to an app setting provisioned in Azure,
    or the host cannot index the function (a connection may be identity-based: ``NAME__...``)."""
    names = set(provisioned)
    problems: list[str] = []
    for function, items in sorted(bindings.items()):
        for binding in items:
            for key, value in binding.items():
                if not isinstance(value, str):
                    continue
                for name in APP_SETTING_REFERENCE.findall(value):
                    if name not in names:
                        problems.append(f"{function}: binding {key}={value!r} needs app setting {name}, "
                                        "which infra/ does not provision")
                if key == "connection" and value not in names and not any(n.startswith(f"{value}__") for n in names):
                    problems.append(f"{function}: connection {value!r} has no app setting {value} or {value}__* "
                                    "in infra/")
    return problems
