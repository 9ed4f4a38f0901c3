"""The two hot Table writes straight over HTTP: insert-if-absent (an event's claim) and merge
with If-Match (its finish).

Through azure-core's pipeline each costs about 0.75 ms of CPU (policies, request and response
objects, header normalisation); here about 0.09 ms, on the small keep-alive HTTP/1.1 client of
``core/adapters/lean_http.py`` (``bench/table_rest.py``). The request headers and the Shared Key
signature are those the SDK sends (compared with a recording of its requests), less its
User-Agent, Date and request id headers. Only these two shapes
of single-entity write come here; transactions, reads and queries stay on the SDK
(``core/adapters/table_store.py``), and so does any write this module cannot express exactly as
the SDK would: ``encode`` returns None for a property type it does not know, and ``for_service``
returns None for a SAS URL or a Cosmos endpoint.

The body is the JSON the SDK's serialiser writes for the same values, so SDK reads give back the
same values and types: str -> Edm.String, int (32-bit) as a plain number (the SDK refuses larger
ones unless typed: those go to the SDK), bool plain, float -> Edm.Double (NaN and infinities as
text), datetime -> Edm.DateTime (UTC, microseconds), bytes -> Edm.Binary (base64); None is left out.

Authorisation as the SDK does it: Shared Key for Table Storage (an account key, Azurite's
well-known one included), or a bearer token from the client's TokenCredential (managed identity
in Azure), kept until five minutes before it expires.

Failures: 409 EntityAlreadyExists -> ConflictError; 412, or 404 on a merge -> PreconditionFailed;
anything else -> StoreError naming the status and the service's error code (never a header).
Retries follow azure-core's policy for POST and PATCH: a request that never left (refused, reset
before it was out) and 500/503/504 answers are sent again; a request whose answer was lost is not
(it may have been applied: an insert sent twice would see its own claim as someone else's), it
raises StoreError, as the SDK raises ServiceResponseError, and Event Grid's redelivery then meets
the claim through the ledger's contend path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

from core.adapters.lean_http import Answer, LeanHttp, Lost, Unsent
from core.errors import ConflictError, PreconditionFailed, StoreError

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken

API_VERSION = "2019-02-02"  # what azure-data-tables 12.x sends
STORAGE_SCOPE = "https://storage.azure.com/.default"
TOKEN_REFRESH = 300.0  # seconds before expiry a token is replaced (azure-core's policy does the same)
RETRY_DELAYS = (0.0, 0.8, 1.6)  # the SDK's defaults: 3 retries, the first at once, then 0.8 s doubling
RETRY_STATUS = (500, 503, 504)  # what azure-core retries for POST and PATCH
INT32 = 2**31
# Content-Type per method, as the SDK sends it (it is part of the Shared Key signature).
CONTENT_TYPES = {"POST": "application/json;odata=nometadata", "PATCH": "application/json"}


class _Token(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken: ...


class TableRest:
    """Single-entity insert and conditional merge on one Table Storage account."""

    def __init__(self, endpoint: str, authorize: Callable[[str, str, str], str], *,
                 sleep: Callable[[float], None] = time.sleep, read_timeout: float | None = None) -> None:
        """``endpoint``: the account's table URL (``https://acct.table.core.windows.net``, or
        Azurite's ``http://127.0.0.1:10002/devstoreaccount1``); ``authorize(method, path, date)``
        gives the Authorization header of one request."""
        self._endpoint = endpoint.rstrip("/")
        self._path = urlsplit(self._endpoint).path
        self.authorize = authorize
        self._http = LeanHttp(self._endpoint) if read_timeout is None else LeanHttp(self._endpoint,
                                                                                    read_timeout=read_timeout)
        self._sleep = sleep

    @classmethod
    def for_service(cls, service: Any) -> TableRest | None:
        """The lean path for an azure-data-tables ``TableServiceClient``, with its endpoint and
        credential; None where only the SDK knows how (SAS, Cosmos, an unknown credential)."""
        from azure.core.credentials import AzureNamedKeyCredential

        url = str(service.url)
        if "?" in url or ".cosmos." in url.lower():
            return None
        credential = service.credential
        if isinstance(credential, AzureNamedKeyCredential):
            name, key = credential.named_key
            return cls(url, SharedKey(name, key))
        if hasattr(credential, "get_token"):
            return cls(url, Bearer(credential))
        return None

    def insert(self, table: str, body: bytes) -> str:
        """Insert the encoded entity; its ETag. ConflictError if it exists."""
        answer = self._send("POST", f"/{table}", body, {"Prefer": "return-no-content",
                                                          "Accept": "application/json;odata=minimalmetadata"})
        if answer.status in (201, 204):
            return answer.headers.get("etag", "")
        raise _refusal("insert into", table, answer, merge=False)

    def merge(self, table: str, partition: str, row: str, body: bytes, etag: str) -> str:
        """Merge the encoded properties into the entity if it still has ``etag``; its new ETag."""
        path = f"/{table}(PartitionKey='{_key(partition)}',RowKey='{_key(row)}')"
        answer = self._send("PATCH", path, body, {"If-Match": etag, "Accept": "application/json"})
        if answer.status == 204:
            return answer.headers.get("etag", "")
        raise _refusal("merge into", table, answer, merge=True)

    def _send(self, method: str, path: str, body: bytes, extra: Mapping[str, str]) -> Answer:
        for delay in (*RETRY_DELAYS, None):
            date = _http_date()
            headers = {"x-ms-version": API_VERSION, "DataServiceVersion": "3.0", "Content-Type": CONTENT_TYPES[method],
                       "x-ms-date": date, **extra,
                       "Authorization": self.authorize(method, self._path + path, date)}
            try:
                answer = self._http.exchange(method, self._path + path, headers, body)
            except Unsent as exc:  # nothing was sent: safe to send again
                if delay is None:
                    raise StoreError(f"{method} {path}: Table Storage is unreachable ({exc})") from exc
            except Lost as exc:  # sent, and the answer was lost: it may have been applied
                raise StoreError(f"{method} {path}: the answer was lost, the write may or may not have "
                                 f"been applied ({exc})") from exc
            else:
                if answer.status not in RETRY_STATUS or delay is None:
                    return answer
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


class SharedKey:
    """Shared Key authorisation for Table Storage: HMAC-SHA256 of verb, Content-MD5 (empty),
    Content-Type, date and the canonical resource ``/account/path`` (no query: we send none)."""

    def __init__(self, account: str, key: str) -> None:
        self._account = account
        try:
            self._key = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise StoreError(f"the account key of storage account {account!r} is not valid base64") from None

    def __call__(self, method: str, path: str, date: str) -> str:
        text = f"{method}\n\n{CONTENT_TYPES[method]}\n{date}\n/{self._account}{path}"
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return f"SharedKey {self._account}:{base64.b64encode(digest).decode()}"


class Bearer:
    """Entra ID bearer tokens from a TokenCredential, cached until ``TOKEN_REFRESH`` before expiry."""

    def __init__(self, credential: _Token, scope: str = STORAGE_SCOPE, clock: Callable[[], float] = time.time) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, date: str) -> str:
        token = self._token
        if token is None or token.expires_on - self._clock() < TOKEN_REFRESH:
            with self._lock:  # one thread fetches; the others wait for it rather than all asking
                token = self._token
                if token is None or token.expires_on - self._clock() < TOKEN_REFRESH:
                    token = self._token = self._fetch()
        return f"Bearer {token.token}"

    def _fetch(self) -> AccessToken:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            raise StoreError(f"no token for Table Storage ({self._scope}): {exc.message}") from exc


def encode(entity: Mapping[str, Any]) -> bytes | None:
    """The entity as the SDK would send it; None if a value is of a type only the SDK handles."""
    body: dict[str, Any] = {}
    for name, value in entity.items():
        kind = type(value)
        if value is None:
            continue
        if kind is str:
            body[name] = value
            body[f"{name}@odata.type"] = "Edm.String"
        elif kind is bool:
            body[name] = value
        elif kind is int:
            if not -INT32 <= value < INT32:
                return None  # the SDK refuses it with its own error
            body[name] = value
        elif kind is float:
            body[name] = _double(value)
            body[f"{name}@odata.type"] = "Edm.Double"
        elif kind is datetime:
            body[name] = _utc(value)
            body[f"{name}@odata.type"] = "Edm.DateTime"
        elif kind is bytes:
            body[name] = base64.b64encode(value).decode()
            body[f"{name}@odata.type"] = "Edm.Binary"
        else:
            return None
    return json.dumps(body, separators=(",", ":")).encode()  # ASCII, \u-escaped as the SDK sends it


def _double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _utc(value: datetime) -> str:
    """As the SDK: a naive datetime is taken as local time; microseconds always written."""
    try:
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(value: str) -> str:
    """A key inside the entity's URL: quotes doubled (OData), then percent-encoded, as the SDK does."""
    return quote(value.replace("'", "''"), safe="")


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """RFC 1123 date for x-ms-date, made once per second."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text


class CredentialsRefused(StoreError):
    """401/403: nothing was written. The store then hands the write, and every later one, to the
    SDK, whose authentication also answers challenges this path does not (tenant discovery)."""


def _refusal(what: str, table: str, answer: Answer, *, merge: bool) -> StoreError:
    code = _error_code(answer.body)
    where = f"{what} {table}"
    if answer.status == 409 and code == "EntityAlreadyExists":
        return ConflictError(f"{where}: the entity exists")
    if answer.status == 412 or (merge and answer.status == 404 and code != "TableNotFound"):
        return PreconditionFailed(f"{where}: the entity changed or is gone since it was read ({code})")
    if answer.status in (401, 403):
        return CredentialsRefused(f"{where}: Table Storage refused the credentials (HTTP {answer.status} {code})")
    return StoreError(f"{where}: Table Storage refused the write (HTTP {answer.status} {code})")


def _error_code(body: bytes) -> str:
    """The service's error code from its OData JSON error, or what the body starts with."""
    try:
        error = json.loads(body)["odata.error"]
        return str(error["code"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace").strip() or "no error code"
