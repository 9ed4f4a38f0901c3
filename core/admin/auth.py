"""Who is calling, and with which roles.

Two sources, chosen by a setting:

* Easy Auth on (production): App Service authentication validates the caller and passes the
  principal as ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with ``claims`` [{typ, val}]). The
  front end overwrites these headers, so what arrives was issued by it. It lets callers without
  a token through (infra/modules/easy-auth.bicep): they are key holders without a role.
* Easy Auth off (local host): the host checked the function key and names it in
  ``X-Reactor-Key-Name`` (it drops any such header a client sent); ``REACTOR_ROLE_MAP``
  gives each key name its roles. In Azure the app never learns which key was used, so a key
  carries no role there: Easy Auth is the production path.

A principal header that cannot be read, or that arrives while Easy Auth is off, is refused
(400 / 401): it was forged or mangled, and guessing would hand out roles.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = frozenset({"approver", "operator"})
PRINCIPAL = "x-ms-client-principal"
PRINCIPAL_NAME = "x-ms-client-principal-name"
KEY_NAME = "x-reactor-key-name"
MASTER = "master"  # the master key opens everything on the host, so it holds every role
ROLE_CLAIMS = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
NAME_CLAIMS = ("name", "preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
MAX_PRINCIPAL = 16 * 1024

class AuthError(Exception):
    """The caller could not be identified: ``status`` 400 (malformed) or 401 (refused)."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.status, self.field, self.reason = status, field, reason


@dataclass(frozen=True)
class AuthConfig:
    easy_auth: bool = False
    role_map: Mapping[str, frozenset[str]] = field(default_factory=dict)


def parse_role_map(text: str) -> tuple[dict[str, frozenset[str]], list[str]]:
    """``ops:operator,lead:operator+approver`` -> {name: roles}, and every problem found."""
    roles: dict[str, frozenset[str]] = {}
    problems: list[str] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, given = item.partition(":")
        wanted = frozenset(r.strip() for r in given.split("+") if r.strip())
        if not sep or not name.strip() or not wanted:
            problems.append(f"REACTOR_ROLE_MAP item {item!r} is not keyname:role+role")
        elif wanted - ROLES:
            problems.append(f"REACTOR_ROLE_MAP item {item!r} names unknown role(s) {sorted(wanted - ROLES)}")
        else:
            roles[name.strip()] = wanted
    return roles, problems


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    via: str  # easy-auth | key

    @property
    def actor(self) -> str:
        """How the audit trail names the caller."""
        return self.name if self.via == "easy-auth" else f"key:{self.name}"

    def has(self, role: str) -> bool:
        return role in self.roles


def identify(headers: Mapping[str, str], config: AuthConfig) -> Principal:
    """The caller of an admin request (headers as the host passed them, names case-insensitive)."""
    raw = headers.get(PRINCIPAL, "")
    if config.easy_auth and not raw:
        # Easy Auth lets unauthenticated callers through (Event Grid, alerts, scripts with a key):
        # the host checked the key, and a key holds no role in Azure. X-Reactor-Key-Name is not
        # read here: only the local host sets it, so in Azure a client could have sent it.
        return Principal("function-key", frozenset(), "key")
    if config.easy_auth:
        return _from_principal(raw, headers.get(PRINCIPAL_NAME, ""))
    if raw:
        raise AuthError(401, "X-MS-CLIENT-PRINCIPAL", "App Service authentication is off: a principal header "
                        "was not issued by it and is not trusted")
    name = headers.get(KEY_NAME, "").strip() or "function-key"
    return Principal(name, ROLES if name == MASTER else config.role_map.get(name, frozenset()), "key")


def _from_principal(raw: str, header_name: str) -> Principal:
    if not raw:
        raise AuthError(401, "X-MS-CLIENT-PRINCIPAL", "no signed-in principal (App Service authentication is on)")
    claims = _claims(_decode(raw))
    role_types = {*ROLE_CLAIMS, claims["role_typ"]} - {""}
    name_types = {*NAME_CLAIMS, claims["name_typ"]} - {""}
    name_claim = next((v for t, v in claims["pairs"] if t in name_types), "")
    if header_name and name_claim and header_name != name_claim:
        raise AuthError(401, "X-MS-CLIENT-PRINCIPAL-NAME", "does not match the principal's name claim")
    name = header_name or name_claim
    if not name:
        raise AuthError(400, "X-MS-CLIENT-PRINCIPAL", "the principal has no name")
    roles = frozenset(v for t, v in claims["pairs"] if t in role_types) & ROLES
    return Principal(name, roles, "easy-auth")


def _decode(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_PRINCIPAL:
        raise AuthError(400, "X-MS-CLIENT-PRINCIPAL", f"longer than {MAX_PRINCIPAL} characters")
    try:
        text = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
        doc = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise AuthError(400, "X-MS-CLIENT-PRINCIPAL", "is not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        raise AuthError(400, "X-MS-CLIENT-PRINCIPAL", "is not a JSON object")
    return doc


def _claims(doc: dict[str, Any]) -> dict[str, Any]:
    items = doc.get("claims")
    if not isinstance(items, list):
        raise AuthError(400, "X-MS-CLIENT-PRINCIPAL", "has no claims list")
    pairs: list[tuple[str, str]] = []
    for c in items:
        if not (isinstance(c, dict) and isinstance(c.get("typ"), str) and isinstance(c.get("val"), str)):
            raise AuthError(400, "X-MS-CLIENT-PRINCIPAL", "a claim is not {typ, val} strings")
        pairs.append((c["typ"], c["val"]))
    typ = {k: doc.get(k) for k in ("role_typ", "name_typ")}
    return {"pairs": pairs, **{k: v if isinstance(v, str) else "" for k, v in typ.items()}}
