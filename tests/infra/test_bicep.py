"""The templates themselves: every file parses, every module exists and is used, the parameter
files fit main.bicep, and the security-relevant properties the design promises are really set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

# Built-in role definition ids (the same in every tenant), checked against Microsoft's list of
# built-in roles. A GUID not in this table is a typo or a new role to review.
KNOWN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "AzureML Data Scientist",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
}
# API versions still in preview that are accepted: diagnostic settings have no GA version that
# supports category groups.
PREVIEW_ALLOWED = {"Microsoft.Insights/diagnosticSettings"}
PYTHON_TYPES = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=lambda p: str(p.relative_to(bicep.INFRA)))
def test_every_bicep_file_parses(path):
    doc = bicep.parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


def test_a_broken_template_does_not_parse():
    broken = bicep.MAIN.read_text(encoding="utf-8").replace("targetScope = 'resourceGroup'", "targetScope = ", 1)
    with pytest.raises(Exception):  # noqa: B017 - lark raises several exception types
        bicep.parser().parse(text=broken)


def test_every_module_exists_and_every_file_is_deployed():
    reached, pending = set(), [bicep.MAIN.resolve()]
    while pending:
        path = pending.pop()
        reached.add(path)
        for name, module in bicep.parse(path).get("modules", {}).items():
            target = bicep.module_path(path, module)
            assert target.is_file(), f"{path.name}: module {name} points at missing {target}"
            if target not in reached:
                pending.append(target)
    orphans = {p.resolve() for p in bicep.bicep_files()} - reached
    assert orphans == set(), "Bicep files no deployment reaches"


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=lambda p: str(p.relative_to(bicep.INFRA)))
def test_api_versions_are_stable(path):
    for name, resource in bicep.parse(path).get("resources", {}).items():
        assert resource["api_version"], f"{path.name}: {name} has no API version"
        if "preview" in resource["api_version"]:
            assert resource["type"] in PREVIEW_ALLOWED, f"{path.name}: {name} uses preview {resource['api_version']}"


def test_every_main_parameter_is_described(main_doc):
    for name, param in main_doc["parameters"].items():
        assert bicep.param_constraints(param).get("description"), f"parameter {name} has no @description"


@pytest.mark.parametrize("path", bicep.parameter_files(), ids=lambda p: p.name)
def test_parameter_file_fits_main(path, main_doc) -> None:
    declared: dict[str, Any] = main_doc["parameters"]
    given: dict[str, Any] = bicep.read_json(path)["parameters"]
    assert set(given) - set(declared) == set(), f"{path.name} sets parameters main.bicep does not declare"
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required - set(given) == set(), f"{path.name} misses required parameters"
    for name, entry in given.items():
        value: Any = entry["value"]
        param, expected = declared[name], PYTHON_TYPES[declared[name]["type"]]
        typed = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        assert typed, f"{path.name}: {name} must be of type {param['type']}"
        rules = bicep.param_constraints(param)
        if "allowed" in rules:
            assert value in rules["allowed"], f"{path.name}: {name}={value!r} not in {rules['allowed']}"
        if "min_value" in rules:
            assert value >= rules["min_value"], f"{path.name}: {name} below @minValue"
        if "max_value" in rules:
            assert value <= rules["max_value"], f"{path.name}: {name} above @maxValue"
        if "min_length" in rules:
            assert len(value) >= rules["min_length"], f"{path.name}: {name} shorter than @minLength"
        if "max_length" in rules:
            assert len(value) <= rules["max_length"], f"{path.name}: {name} longer than @maxLength"


@pytest.mark.parametrize("path", bicep.parameter_files(), ids=lambda p: p.name)
def test_app_name_makes_valid_resource_names(path):
    """Function App host name, and the storage and Key Vault names derived from it (lowercased)."""
    name = bicep.read_json(path)["parameters"]["appName"]["value"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,30}[a-z0-9]", name) and "--" not in name, name


def test_both_environments_have_a_parameter_file():
    assert {p.name for p in bicep.parameter_files()} >= {"main.dev.parameters.json", "main.prod.parameters.json"}


def _role_assignments() -> list[tuple[Path, str, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in bicep.bicep_files():
        doc = bicep.parse(path)
        for name, resource in bicep.resources(doc, "Microsoft.Authorization/roleAssignments").items():
            found.append((path, name, bicep.config(resource), doc))
    return found


def test_role_assignments_use_known_roles_named_in_comments():
    assignments = _role_assignments()
    assert assignments
    for path, name, body, doc in assignments:
        role_var = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        guid = doc["variables"][role_var]["value"]
        assert guid in KNOWN_ROLES, f"{path.name}: {name} uses unknown role definition {guid}"
        assert bicep.role_comments(path).get(guid) == KNOWN_ROLES[guid], (
            f"{path.name}: the comment beside {guid} must name the role ({KNOWN_ROLES[guid]})")
        assert body["properties"]["principalType"] == "ServicePrincipal", f"{path.name}: {name}"


def test_no_queue_role_while_no_function_uses_queues(function_kinds):
    queue_kinds = {"queueTrigger", "blobTrigger"}
    if queue_kinds & set(function_kinds.values()):
        pytest.skip("the app has a queue or blob-polling trigger: a queue role is legitimate")
    for path, name, body, doc in _role_assignments():
        role_var = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        assert doc["variables"][role_var]["value"] != "974c5e8b-45b9-4653-ba55-5f855dd0fb88", f"{path.name}: {name}"


def _only(path: Path, type_: str) -> dict[str, Any]:
    [resource] = bicep.resources(bicep.parse(path), type_).values()
    return bicep.config(resource)


def test_function_app_is_flex_consumption_python_311_with_identity():
    path = bicep.INFRA / "modules" / "functionapp.bicep"
    plan = _only(path, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"} and plan["properties"]["reserved"] is True
    site = _only(path, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "SystemAssigned"}
    props = site["properties"]
    assert props["httpsOnly"] is True and props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    storage = props["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer" and storage["authentication"] == {"type": "SystemAssignedIdentity"}


def test_storage_accounts_are_identity_only_and_soft_deleted():
    path = bicep.INFRA / "modules" / "storage.bicep"
    props = _only(path, "Microsoft.Storage/storageAccounts")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    blob = _only(path, "Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert blob["deleteRetentionPolicy"]["enabled"] is True
    assert blob["containerDeleteRetentionPolicy"]["enabled"] is True
    container = _only(path, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container["properties"]["publicAccess"] == "None"


def test_key_vault_is_rbac_with_soft_delete_and_purge_protection():
    props = _only(bicep.INFRA / "modules" / "keyvault.bicep", "Microsoft.KeyVault/vaults")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True


def test_application_insights_is_workspace_based_with_local_auth_off():
    props = _only(bicep.INFRA / "modules" / "monitoring.bicep", "Microsoft.Insights/components")["properties"]
    assert props["WorkspaceResourceId"] and props["DisableLocalAuth"] is True
