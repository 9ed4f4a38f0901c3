"""Who is calling: Easy Auth principals (well-formed, malformed, forged) and the key role map."""

from __future__ import annotations

import base64
import json

import pytest

from core.admin.auth import ROLES, AuthConfig, AuthError, identify, parse_role_map
from core.errors import SettingsError
from core.settings import Settings
from embedded.local_settings import SAMPLE, read_values

EASY = AuthConfig(easy_auth=True)
KEYED = AuthConfig(role_map={"ops": frozenset({"operator"})})
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


def principal(claims, **extra) -> str:
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims, **extra}).encode()).decode()


def test_easy_auth_roles_from_either_claim_type() -> None:
    raw = principal([{"typ": "roles", "val": "operator"}, {"typ": ROLE_URI, "val": "approver"},
                     {"typ": "roles", "val": "admin"}, {"typ": "name", "val": "ana@contoso.com"}])
    who = identify({"x-ms-client-principal": raw}, EASY)
    assert (who.name, who.roles, who.actor) == ("ana@contoso.com", ROLES, "ana@contoso.com")


def test_easy_auth_custom_role_claim_type_and_name_header() -> None:
    raw = principal([{"typ": "grp", "val": "operator"}], role_typ="grp")
    who = identify({"x-ms-client-principal": raw, "x-ms-client-principal-name": "bob"}, EASY)
    assert who.name == "bob" and who.roles == {"operator"}


@pytest.mark.parametrize(("headers", "status", "field"), [
    ({"x-ms-client-principal": "%%%"}, 400, "X-MS-CLIENT-PRINCIPAL"),
    ({"x-ms-client-principal": base64.b64encode(b"[1]").decode()}, 400, "X-MS-CLIENT-PRINCIPAL"),
    ({"x-ms-client-principal": base64.b64encode(b"\xff\xfe").decode()}, 400, "X-MS-CLIENT-PRINCIPAL"),
    ({"x-ms-client-principal": principal("nope")}, 400, "X-MS-CLIENT-PRINCIPAL"),
    ({"x-ms-client-principal": principal([{"typ": 1, "val": "x"}])}, 400, "X-MS-CLIENT-PRINCIPAL"),
    ({"x-ms-client-principal": principal([{"typ": "roles", "val": "operator"}])}, 400, "X-MS-CLIENT-PRINCIPAL"),
    ({"x-ms-client-principal": principal([{"typ": "name", "val": "eve"}]), "x-ms-client-principal-name": "ana"},
     401, "X-MS-CLIENT-PRINCIPAL-NAME"),
    ({"x-ms-client-principal": "A" * 20_000}, 400, "X-MS-CLIENT-PRINCIPAL"),
])
def test_malformed_or_forged_principals_are_refused(headers, status, field) -> None:
    with pytest.raises(AuthError) as caught:
        identify(headers, EASY)
    assert (caught.value.status, caught.value.field) == (status, field)


def test_key_names_map_to_roles_and_master_holds_all() -> None:
    assert identify({"x-reactor-key-name": "ops"}, KEYED).roles == {"operator"}
    assert identify({"x-reactor-key-name": "viewer"}, KEYED).roles == frozenset()
    assert identify({"x-reactor-key-name": "master"}, KEYED).roles == ROLES
    assert identify({}, KEYED).actor == "key:function-key"


def test_a_principal_while_easy_auth_is_off_is_refused() -> None:
    with pytest.raises(AuthError) as caught:
        identify({"x-ms-client-principal": principal([{"typ": "roles", "val": "operator"}])}, KEYED)
    assert caught.value.status == 401


def test_role_map_parsing_lists_every_problem() -> None:
    roles, problems = parse_role_map("ops:operator, lead:operator+approver,bad,x:root,:operator")
    assert roles == {"ops": {"operator"}, "lead": {"operator", "approver"}}
    assert len(problems) == 3
    env = read_values(SAMPLE)
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**env, "REACTOR_EASY_AUTH": "maybe", "REACTOR_ROLE_MAP": "a:b"})
    assert "REACTOR_EASY_AUTH" in str(err.value) and "REACTOR_ROLE_MAP" in str(err.value)
    assert Settings.from_env({**env, "REACTOR_EASY_AUTH": "TRUE"}).admin_auth.easy_auth


def test_with_easy_auth_a_caller_without_token_is_a_key_holder_without_roles() -> None:
    """Easy Auth lets unauthenticated requests through (Event Grid, alerts, key-only scripts)."""
    who = identify({}, EASY)
    assert (who.roles, who.actor) == (frozenset(), "key:function-key")
    # The key-name header is the local host's; in Azure a client could send it, so it is ignored.
    forged = identify({"x-reactor-key-name": "master"}, AuthConfig(easy_auth=True, role_map={"x": ROLES}))
    assert forged.roles == frozenset() and forged.actor == "key:function-key"
