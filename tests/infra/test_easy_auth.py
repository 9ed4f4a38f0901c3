"""App Service authentication (infra/modules/easy-auth.bicep): property names from the ARM schema
of Microsoft.Web/sites/config 'authsettingsV2', callers identified but never blocked, and the
app told (REACTOR_EASY_AUTH) exactly when the platform injects the principal."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings
from tests.infra import bicep
from tests.infra.test_consistency import _app_settings

MODULE = bicep.INFRA / "modules" / "easy-auth.bicep"
SECRET_SETTING = "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET"

# The part of the authsettingsV2 schema (API 2022-09-01 and later: SiteAuthSettingsV2Properties)
# this template may use; a misspelt or invented property would be ignored or refused by ARM.
SCHEMA: dict[str, Any] = {
    "platform": {"enabled": None, "runtimeVersion": None, "configFilePath": None},
    "globalValidation": {"requireAuthentication": None, "unauthenticatedClientAction": None,
                         "redirectToProvider": None, "excludedPaths": None},
    "httpSettings": {"requireHttps": None, "routes": {"apiPrefix": None},
                     "forwardProxy": {"convention": None, "customHostHeaderName": None,
                                      "customProtoHeaderName": None}},
    "identityProviders": {"azureActiveDirectory": {
        "enabled": None, "isAutoProvisioned": None,
        "registration": {"clientId": None, "clientSecretSettingName": None, "openIdIssuer": None,
                         "clientSecretCertificateThumbprint": None, "clientSecretCertificateIssuer": None,
                         "clientSecretCertificateSubjectAlternativeName": None},
        "login": {"disableWWWAuthenticate": None, "loginParameters": None},
        "validation": {"allowedAudiences": None, "jwtClaimChecks": None, "defaultAuthorizationPolicy": None},
    }},
    "login": {"tokenStore": {"enabled": None, "tokenRefreshExtensionHours": None},
              "preserveUrlFragmentsForLogins": None, "allowedExternalRedirectUrls": None,
              "cookieExpiration": None, "nonce": None, "routes": None},
}
UNAUTHENTICATED_ACTIONS = {"RedirectToLoginPage", "AllowAnonymous", "Return401", "Return403"}


def unknown_properties(node: Any, schema: dict[str, Any], at: str = "properties") -> list[str]:
    """Property paths of ``node`` the schema does not have."""
    found: list[str] = []
    for key, value in node.items():
        if key not in schema:
            found.append(f"{at}.{key}")
        elif isinstance(schema[key], dict) and isinstance(value, dict):
            found += unknown_properties(value, schema[key], f"{at}.{key}")
    return found


@pytest.fixture(scope="module")
def auth() -> dict[str, Any]:
    [resource] = bicep.resources(bicep.parse(MODULE), "Microsoft.Web/sites/config").values()
    return bicep.config(resource)


def test_property_names_are_the_arm_schema_ones(auth) -> None:
    assert auth["name"] == "authsettingsV2" and auth["parent"] == "site"
    assert unknown_properties(auth["properties"], SCHEMA) == []


def test_schema_check_can_fail(auth) -> None:
    typo = {**auth["properties"], "globalValidation": {"unauthenticatedAction": "AllowAnonymous"}}
    assert unknown_properties(typo, SCHEMA) == ["properties.globalValidation.unauthenticatedAction"]


def test_callers_are_identified_never_blocked(auth) -> None:
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    # Event Grid (system key) and other key-only callers carry no Entra ID token.
    assert validation["requireAuthentication"] is False
    assert validation["unauthenticatedClientAction"] == "AllowAnonymous" in UNAUTHENTICATED_ACTIONS
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True and aad["registration"]["clientId"] == "clientId"
    assert aad["registration"]["openIdIssuer"] == "${environment().authentication.loginEndpoint}${tenantId}/v2.0"
    assert "api://${clientId}" in aad["validation"]["allowedAudiences"]
    assert props["httpSettings"]["requireHttps"] is True


def test_registration_ids_are_parameters_and_guid_sized() -> None:
    params = bicep.parse(MODULE)["parameters"]
    for name in ("clientId", "tenantId"):
        given = bicep.param_constraints(params[name])
        assert (given["min_length"], given["max_length"]) == (36, 36), name


def test_main_deploys_it_only_when_enabled_and_tells_the_app(main_doc) -> None:
    [module] = bicep.modules_using(main_doc, bicep.MAIN, MODULE).values()
    assert module["config"]["condition"] == "enableEasyAuth"
    params = bicep.config(module)["params"]
    assert (params["clientId"], params["tenantId"]) == ("easyAuthClientId", "easyAuthTenantId")
    assert main_doc["parameters"]["enableEasyAuth"]["default"] is False
    setting = main_doc["variables"]["reactorSettings"]["value"]["REACTOR_EASY_AUTH"]
    assert setting == {"function": {"type": "string", "parameters": {"value_to_convert": "enableEasyAuth"}}}


@pytest.mark.parametrize("enabled", [False, True])
def test_the_app_starts_with_either_choice(main_doc, enabled) -> None:
    given = {**bicep.read_json(bicep.parameter_files()[0])["parameters"], "enableEasyAuth": {"value": enabled}}
    settings = Settings.from_env(_app_settings(main_doc, given))
    assert settings.admin_auth.easy_auth is enabled and not settings.admin_auth.role_map


def test_the_client_secret_is_only_a_key_vault_reference(main_doc) -> None:
    [module] = bicep.modules_using(main_doc, bicep.MAIN, bicep.INFRA / "modules" / "app-settings.bicep").values()
    secret = bicep.config(module)["params"]["platformSecretSettings"]["operator"]["operands"]
    assert secret["condition"] == "useEasyAuthSecret" and secret["false_value"] == {}
    assert secret["true_value"] == {
        SECRET_SETTING: "@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${easyAuthClientSecretName})"}
    [easy] = bicep.modules_using(main_doc, bicep.MAIN, MODULE).values()
    named = bicep.config(easy)["params"]["clientSecretSettingName"]["operator"]["operands"]
    assert named["true_value"] == SECRET_SETTING and named["false_value"] == ""
