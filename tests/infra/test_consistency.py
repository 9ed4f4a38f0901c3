"""Drift between the app and its infrastructure: Event Grid functions vs subscriptions, HTTP
routes, the settings catalogue vs the provisioned app settings and local.settings.sample.json,
and the storage containers vs the blob event filters. Each checker is also shown to fail."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.adapters import eventgrid_subscriptions as router
from core.settings import SETTINGS, Settings
from tests.infra import bicep, checks

SUBSCRIPTIONS_MODULE = bicep.INFRA / "modules" / "event-subscriptions.bicep"
APP_SETTINGS_MODULE = bicep.INFRA / "modules" / "app-settings.bicep"
STORAGE_MODULE = bicep.INFRA / "modules" / "storage.bicep"
SYSTEM_TOPICS_MODULE = bicep.INFRA / "modules" / "system-topics.bicep"


def _variable(doc: dict[str, Any], name: str) -> Any:
    return doc["variables"][name]["value"]


def _module_params(doc: dict[str, Any], target: Path) -> list[dict[str, Any]]:
    return [bicep.config(m)["params"] for m in bicep.modules_using(doc, bicep.MAIN, target).values()]


@pytest.fixture(scope="module")
def provisioned(main_doc) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, secret) app settings of the app that main.bicep provisions."""
    plain, secret = _variable(main_doc, "reactorSettings"), _variable(main_doc, "reactorSecretSettings")
    assert isinstance(plain, dict) and isinstance(secret, dict), "both must be object literals"
    return plain, secret


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return dict(bicep.read_json(bicep.SAMPLE_SETTINGS))


# --- settings ---------------------------------------------------------------------------------

def test_every_setting_is_provisioned_documented_and_used(provisioned, sample):
    plain, secret = provisioned
    assert checks.settings_drift(SETTINGS, plain, secret, sample) == []


def test_settings_drift_check_can_fail(provisioned, sample):
    plain, secret = provisioned
    grown = {**SETTINGS, "REACTOR_NEW_THING": "added to the app, forgotten in infra and docs"}
    problems = checks.settings_drift(grown, plain, secret, sample)
    assert [p for p in problems if p.startswith("REACTOR_NEW_THING:")] == [
        "REACTOR_NEW_THING: in core.settings.SETTINGS but not provisioned as an app setting in infra/",
        "REACTOR_NEW_THING: in core.settings.SETTINGS but missing from local.settings.sample.json Values",
        "REACTOR_NEW_THING: in core.settings.SETTINGS but not described in local.settings.sample.json Documentation",
    ]
    unused = checks.settings_drift(SETTINGS, {**plain, "REACTOR_GONE": "x"}, secret, sample)
    assert "REACTOR_GONE: provisioned in infra/ but unused (not in core.settings.SETTINGS)" in unused
    leaked = {**SETTINGS, "REACTOR_SLACK_WEBHOOK_URL": "a secret"}
    sample_leaked = {"Values": {**sample["Values"], "REACTOR_SLACK_WEBHOOK_URL": ""},
                     "Documentation": {**sample["Documentation"], "REACTOR_SLACK_WEBHOOK_URL": "Slack URL."}}

    def about_slack(plain_: dict[str, Any], secret_: dict[str, Any]) -> list[str]:
        problems = checks.settings_drift(leaked, plain_, secret_, sample_leaked)
        return [p for p in problems if p.startswith("REACTOR_SLACK_WEBHOOK_URL:")]

    assert about_slack({**plain, "REACTOR_SLACK_WEBHOOK_URL": "https://hooks"}, secret) == [
        "REACTOR_SLACK_WEBHOOK_URL: looks like a secret but is provisioned as a plain value "
        "(use a Key Vault reference)"]
    reference = "@Microsoft.KeyVault(VaultName=kv;SecretName=slack-webhook-url)"
    assert about_slack(plain, {**secret, "REACTOR_SLACK_WEBHOOK_URL": reference}) == []
    assert about_slack(plain, {**secret, "REACTOR_SLACK_WEBHOOK_URL": "https://hooks"}) == [
        "REACTOR_SLACK_WEBHOOK_URL: secret setting is not a Key Vault reference: 'https://hooks'"]
    forbidden = checks.settings_drift(SETTINGS, {**plain, "FUNCTIONS_WORKER_RUNTIME": "python"}, secret, sample)
    assert "FUNCTIONS_WORKER_RUNTIME: must not be provisioned in Azure" in forbidden


def test_secret_settings_reference_the_deployed_vault(main_doc, provisioned):
    """The pattern of main.bicep: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=<name>)'."""
    _, secret = provisioned
    for name, value in secret.items():
        assert re.fullmatch(r"@Microsoft\.KeyVault\(VaultName=\$\{keyVaultName\};SecretName=[A-Za-z0-9-]{1,127}\)",
                            str(value)), f"{name}: {value!r}"
    assert "keyVaultName" in main_doc["variables"]


def test_storage_is_reached_by_identity_not_connection_string(main_doc, provisioned):
    plain, _ = provisioned
    assert plain["REACTOR_STORAGE_CONNECTION"] == ""
    [data] = [p for p in _module_params(main_doc, STORAGE_MODULE) if "deadLetterContainerName" in p["containers"]]
    assert plain["REACTOR_STORAGE_ACCOUNT"] == data["name"], "REACTOR_STORAGE_ACCOUNT must name the data account"


def test_event_sources_are_the_exact_ids_of_the_watched_sources(main_doc, provisioned):
    plain, _ = provisioned
    [topics] = _module_params(main_doc, SYSTEM_TOPICS_MODULE)
    assert plain["REACTOR_STORAGE_EVENT_SOURCES"] == topics["storageAccountId"]
    assert plain["REACTOR_ML_EVENT_SOURCES"] == topics["workspaceId"]
    assert bicep.dotted(topics["workspaceId"]) == "workspace.id"
    assert bicep.dotted(topics["storageAccountId"]) == "dataStorage.outputs.id"
    assert main_doc["resources"]["workspace"]["existing"] is True


def test_app_settings_module_applies_what_main_provisions(main_doc):
    [params] = _module_params(main_doc, APP_SETTINGS_MODULE)
    assert params["reactorSettings"] == "reactorSettings"
    assert params["reactorSecretSettings"] == "reactorSecretSettings"
    doc = bicep.parse(APP_SETTINGS_MODULE)
    [config] = [bicep.config(r) for r in bicep.resources(doc, "Microsoft.Web/sites/config").values()]
    assert config["name"] == "appsettings"
    assert {"runtimeSettings", "reactorSettings", "reactorSecretSettings"} <= bicep.leaves(config["properties"])
    runtime = _variable(doc, "runtimeSettings")
    assert runtime["AzureWebJobsStorage__accountName"] == "runtimeStorageName"


def test_no_unused_or_runtime_only_setting_anywhere_in_infra() -> None:
    keys: set[str] = set()
    for path in bicep.bicep_files():
        keys |= bicep.object_keys(bicep.parse(path))
    unused = {k for k in keys if k.startswith(checks.APP_PREFIX)} - set(SETTINGS)
    assert unused == set(), "REACTOR_* names in infra/ that the app does not read"
    assert keys & checks.FORBIDDEN_IN_AZURE == set()
    assert {k for k in keys if k.startswith(checks.LOCAL_ONLY_PREFIX)} == set()


def _all_provisioned(main_doc: dict[str, Any]) -> set[str]:
    runtime = _variable(bicep.parse(APP_SETTINGS_MODULE), "runtimeSettings")
    return {*_variable(main_doc, "reactorSettings"), *_variable(main_doc, "reactorSecretSettings"), *runtime}


def test_binding_expressions_resolve_to_provisioned_settings(app_functions, main_doc):
    bindings = {name: [b.get_dict_repr() for b in fn.get_bindings()] for name, fn in app_functions.items()}
    assert checks.binding_setting_drift(bindings, _all_provisioned(main_doc)) == []


def test_binding_setting_check_can_fail(main_doc):
    bindings = {"tick": [{"type": "timerTrigger", "schedule": "%REACTOR_NOT_PROVISIONED%"}],
                "queue": [{"type": "queueTrigger", "connection": "JobsQueue"}]}
    assert checks.binding_setting_drift(bindings, _all_provisioned(main_doc)) == [
        "queue: connection 'JobsQueue' has no app setting JobsQueue or JobsQueue__* in infra/",
        "tick: binding schedule='%REACTOR_NOT_PROVISIONED%' needs app setting REACTOR_NOT_PROVISIONED, "
        "which infra/ does not provision",
    ]
    assert checks.binding_setting_drift({"queue": bindings["queue"]}, {"JobsQueue__queueServiceUri"}) == []


# --- Event Grid -------------------------------------------------------------------------------

def test_event_grid_functions_and_subscriptions_match(function_kinds):
    assert "eventGridTrigger" in function_kinds.values()
    assert checks.event_grid_drift(function_kinds, bicep.subscriptions()) == []


def test_event_grid_drift_check_can_fail(function_kinds):
    subs = bicep.subscriptions()
    problems = checks.event_grid_drift({**function_kinds, "on_new_event": "eventGridTrigger"}, subs)
    assert problems == ["Event Grid function on_new_event has 0 subscriptions in infra/event-subscriptions.json "
                        "(expected exactly one)"]
    doubled = [*subs, {**subs[0], "name": "second-" + subs[0]["name"]}]
    assert any("has 2 subscriptions" in p for p in checks.event_grid_drift(function_kinds, doubled))
    to_http = [*subs, {**subs[0], "name": "to-health", "function": "health"}]
    assert any("not eventGridTrigger" in p for p in checks.event_grid_drift(function_kinds, to_http))
    wrong_topic = [{**subs[0], "topic": "ml"}, *subs[1:]]
    assert any("not published by the ml topic" in p for p in checks.event_grid_drift(function_kinds, wrong_topic))


def test_local_router_and_bicep_load_the_same_file():
    assert router.SUBSCRIPTIONS_FILE.resolve() == bicep.SUBSCRIPTIONS_FILE.resolve()
    assert [s.name for s in router.load()] == [s["name"] for s in bicep.subscriptions()]
    target = bicep.SUBSCRIPTIONS_FILE.resolve()
    loaders = {p for p in bicep.bicep_files() if target in bicep.json_loads(p, bicep.parse(p))}
    assert loaders == {SUBSCRIPTIONS_MODULE}


def test_subscription_resources_come_from_the_file():
    doc = bicep.parse(SUBSCRIPTIONS_MODULE)
    assert bicep.leaves(doc["variables"]["definitions"]) >= {"../event-subscriptions.json", "subscriptions"}
    assert bicep.leaves(doc["variables"]["subscriptions"]) >= {"definitions", "topic"}
    [resource] = bicep.resources(doc, "Microsoft.EventGrid/systemTopics/eventSubscriptions").values()
    loop = resource["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "subscriptions"
    item, body = loop["item_name"], bicep.config(resource)
    assert bicep.dotted(body["name"]) == f"{item}.name"
    for field in ("includedEventTypes", "subjectBeginsWith", "subjectEndsWith", "advancedFilters"):
        assert bicep.leaves(body["properties"]["filter"][field]) >= {item, field}, field


def test_subscriptions_deliver_to_the_eventgrid_extension_webhook():
    doc = bicep.parse(SUBSCRIPTIONS_MODULE)
    [resource] = bicep.resources(doc, "Microsoft.EventGrid/systemTopics/eventSubscriptions").values()
    item, props = resource["config"]["loop_type"]["detail"]["item_name"], bicep.config(resource)["properties"]
    destination = props["destination"]
    assert destination["endpointType"] == "WebHook"
    url = destination["properties"]["endpointUrl"]
    match = re.fullmatch(r"https://\$\{(\w+)\.properties\.defaultHostName\}/runtime/webhooks/eventgrid"
                         r"\?functionName=\$\{(\w+)\.function\}&code=\$\{(\w+)\.listKeys\(\)\.systemKeys\.eventgrid_extension\}",
                         url)
    assert match, url
    site, loop_item, host = match.groups()
    assert loop_item == item
    assert doc["resources"][site]["type"] == "Microsoft.Web/sites"
    assert doc["resources"][host]["type"] == "Microsoft.Web/sites/host"
    assert doc["resources"][host]["config"]["name"] == "default"
    assert props["eventDeliverySchema"] == "EventGridSchema"
    assert set(props["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    dead_letter = props["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"


def test_every_topic_gets_its_subscriptions_deployed(main_doc):
    modules = bicep.modules_using(main_doc, bicep.MAIN, SUBSCRIPTIONS_MODULE)
    topics = {bicep.config(m)["params"]["topic"] for m in modules.values()}
    assert topics == {s["topic"] for s in bicep.subscriptions()} | {"storage", "ml"}
    for name, module in modules.items():
        assert module["config"].get("condition") == "deployEventSubscriptions", name
        params = bicep.config(module)["params"]
        assert params["deadLetterContainerName"] == "deadLetterContainerName", name
    assert main_doc["parameters"]["deployEventSubscriptions"]["type"] == "bool"


# A value only Azure knows at deployment time (a resource id, the subscription id...).
RUNTIME_VALUE = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.X/y/runtime"
RUNTIME_ENDPOINT = "https://runtime-value.invalid/api/events"
INTERPOLATION = re.compile(r"\$\{(toLower\()?(\w+)\)?\}")


def _resolve(doc: dict[str, Any], node: Any, given: dict[str, Any]) -> Any:
    """What a main.bicep expression deploys as, for a parameter file's values: literals, parameters,
    variables, ``${x}`` / ``${toLower(x)}`` and ``string(x)``; any other expression is a runtime
    value (a non-empty placeholder)."""
    if isinstance(node, list):
        return [_resolve(doc, item, given) for item in node]
    if isinstance(node, str):
        if node in doc["parameters"]:
            return given[node]["value"] if node in given else _resolve(doc, doc["parameters"][node]["default"], given)
        if node in doc["variables"]:
            return _resolve(doc, _variable(doc, node), given)

        def one(match: re.Match[str]) -> str:
            value = str(_resolve(doc, match.group(2), given))
            return value.lower() if match.group(1) else value
        return INTERPOLATION.sub(one, node)
    if isinstance(node, dict):
        function = node.get("function")
        if isinstance(function, dict) and function.get("type") == "string":
            value = _resolve(doc, function["parameters"]["value_to_convert"], given)
            return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if "function" in node or "operator" in node:  # a module's endpoint output is a URL, not an id
            return RUNTIME_ENDPOINT if (bicep.dotted(node) or "").endswith(".endpoint") else RUNTIME_VALUE
        return {key: _resolve(doc, value, given) for key, value in node.items()}
    return node


def _app_settings(doc: dict[str, Any], given: dict[str, Any]) -> dict[str, str]:
    """The REACTOR_* app settings as Azure would hand them to the app (secrets: a stand-in value)."""
    settings = {name: _resolve(doc, value, given) for name, value in _variable(doc, "reactorSettings").items()}
    secrets = {name: "https://example.invalid/secret-value" for name in _variable(doc, "reactorSecretSettings")}
    return {name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in {**settings, **secrets}.items()}


@pytest.mark.parametrize("path", bicep.parameter_files(), ids=lambda p: p.name)
def test_provisioned_settings_pass_the_app_validation(path, main_doc):
    """The app starts with exactly what main.bicep provisions (and nothing local-only)."""
    env = _app_settings(main_doc, bicep.read_json(path)["parameters"])
    settings = Settings.from_env(env)  # raises SettingsError with every problem
    assert settings.storage_account and not settings.storage_connection
    assert settings.ml_platform == "azure"


@pytest.mark.parametrize("path", bicep.parameter_files(), ids=lambda p: p.name)
def test_only_the_data_container_feeds_blob_created(path, main_doc):
    """Internal, dead-letter and collected-inference blobs must not reach the app as new data."""
    given = bicep.read_json(path)["parameters"]
    [data] = [p for p in _module_params(main_doc, STORAGE_MODULE) if "deadLetterContainerName" in p["containers"]]
    containers = {name: _resolve(main_doc, name, given) for name in data["containers"]}
    prefix = _resolve(main_doc, "tablePrefix", given)
    env = {"REACTOR_TABLE_PREFIX": prefix, "REACTOR_STORAGE_ACCOUNT": "account",
           "REACTOR_STORAGE_EVENT_SOURCES": "*", "REACTOR_ML_EVENT_SOURCES": "*"}
    assert containers["internalContainerName"] == Settings.from_env(env).internal_container
    subs = router.load()
    for name, container in containers.items():
        event = {"id": "1", "eventType": "Microsoft.Storage.BlobCreated", "topic": "/subscriptions/x",
                 "subject": f"/blobServices/default/containers/{container}/blobs/batch.csv", "data": {}}
        routed = router.route(subs, [event])
        if name in ("dataContainerName", "labelsContainerName"):  # training data; late labels
            assert routed, f"a blob in {container} reaches no function"
        else:
            assert routed == {}, f"a blob in {container} ({name}) would be routed to {sorted(routed)}"


# --- HTTP routes and the example alert --------------------------------------------------------

def test_every_http_function_has_a_route(http_routes):
    assert http_routes, "the app has no HTTP function (GET /api/health is expected)"
    assert checks.http_route_drift(http_routes) == []


def test_http_route_check_can_fail(http_routes):
    broken = {**http_routes, "blank": ("", frozenset({"GET"})), "prefixed": ("api/x", frozenset({"GET"}))}
    route, methods = next(iter(http_routes.values()))
    broken["twin"] = (route, methods)
    problems = checks.http_route_drift(broken)
    assert "HTTP function blank has no route" in problems
    assert any(p.startswith("HTTP function prefixed: route 'api/x'") for p in problems)
    assert any("both serve" in p and "twin" in p for p in problems)


def test_alert_example_is_off_unless_the_app_serves_its_route(main_doc, http_routes):
    assert main_doc["parameters"]["enableAlertExample"]["default"] is False
    served = {(route or "").strip("/").lower() for route, methods in http_routes.values() if "POST" in methods}
    for path in bicep.parameter_files():
        given = bicep.read_json(path)["parameters"]
        if given.get("enableAlertExample", {}).get("value"):
            route = str(_resolve(main_doc, "alertRoute", given)).strip("/").lower()
            assert route in served, f"{path.name} enables the alert example but the app serves no POST /api/{route}"
