"""Driving the real Azure SDKs offline: what the tests of the Azure adapters share.

The SDK clients (``MLClient``, ``MetricsClient``) take ``transport=`` and hand it to all of their HTTP
pipelines, so a test gives them a ``FakeTransport``: it records every request as ``Sent`` and answers it in
memory, in the services' REST formats, with a real ``requests``-based transport response, so everything
above the socket is the SDK's own code. ``StaticCredential`` stands in for Entra ID. azure-storage-blob is
the exception that builds its own transport; ``blob_storage_route`` points it at the fake as well.
``sdk_modules_loaded_by`` checks the other side: that an adapter loads none of the SDKs until it is used.

Each test module's fake subclasses ``FakeTransport`` with the services it plays (``_answer``).
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport

ROOT = Path(__file__).resolve().parents[1]
SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "reactor-rg", "reactor-ws"
WS_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
ARM = "management.azure.com"
TENANT = "72f988bf-0000-4000-8000-000000000001"

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


def unsigned_jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


class StaticCredential:
    """A TokenCredential that stays in the process and records the scopes asked for: an unsigned JWT whose
    audience is the requested scope (the SDK decodes the ml.azure.com token of a pipeline submit and checks
    its ``aud``)."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.extend(scopes)
        audience = scopes[0].removesuffix("/.default").rstrip("/")
        return AccessToken(unsigned_jwt({"aud": audience, "tid": TENANT, "exp": 4102444800}), 4102444800)


@dataclass
class Sent:
    """One request as the SDK sent it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def path(self) -> str:
        """Inside the workspace for its ARM requests (``/jobs/x``, ``/onlineEndpoints/x``); the whole path
        (for storage, the blob path) otherwise."""
        path = unquote(urlsplit(self.url).path)
        return path.removeprefix(WS_PATH) if self.host == ARM else path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def json(self) -> dict:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.method} {self.host}{self.path}"


def json_answer(status: int, payload: object, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, json.dumps(payload).encode()


def _as_bytes(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if hasattr(body, "read"):  # a stream azure-storage-blob uploads from
        return body.read()
    return b"".join(body)  # type: ignore[arg-type]


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 404: "Not Found"}


def _transport_response(request, status: int, headers: dict[str, str], body: bytes):
    """What RequestsTransport returns: a requests.Response over a urllib3 response, wrapped for the request
    kind (azure.core.rest requests get the rest response type, legacy pipeline requests the legacy one)."""
    from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
    from azure.core.rest import HttpRequest as RestHttpRequest
    from azure.core.rest._requests_basic import RestRequestsTransportResponse

    raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=status, preload_content=False,
                               request_method=request.method)
    response = requests.Response()
    response.status_code, response.raw, response.url = status, raw, request.url
    response.headers = requests.structures.CaseInsensitiveDict(headers)
    response.reason = _REASONS.get(status, "Error")
    if isinstance(request, RestHttpRequest):
        return RestRequestsTransportResponse(request=request, internal_response=response, block_size=4096)
    return RequestsTransportResponse(request, response, 4096)


class FakeTransport(HttpTransport):
    """An azure-core transport that answers in memory: ``_answer`` gets each request, one at a time, and
    records it (in ``sent``, or elsewhere) before answering; what no service here knows goes to
    ``unexpected``. ``failures`` are answers injected by the tests, each used once."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.unexpected: list[str] = []
        self.failures: list[tuple[str, str, Answer]] = []  # (method, path regex, answer), each used once
        self._lock = threading.RLock()

    # HttpTransport
    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request, **kwargs):
        body = request.content if hasattr(request, "content") and not callable(request.content) else request.body
        sent = Sent(request.method, request.url, dict(request.headers), _as_bytes(body))
        with self._lock:
            status, headers, payload = self._answer(sent)
        return _transport_response(request, status, headers, payload)

    # test helpers
    def arm(self, method: str | None = None) -> list[Sent]:
        return [s for s in self.sent if s.host == ARM and (method is None or s.method == method)]

    def reset(self) -> None:
        self.sent.clear()

    # the services
    def _answer(self, s: Sent) -> Answer:
        raise NotImplementedError

    def _injected(self, s: Sent) -> Answer | None:
        """The first injected failure for this request, used up; None when there is none."""
        for i, (method, pattern, answer) in enumerate(self.failures):
            if s.method == method and re.search(pattern, s.path):
                del self.failures[i]
                return answer
        return None


@contextmanager
def blob_storage_route(cwd: Path) -> Iterator[dict[str, Any]]:
    """Route azure-storage-blob's default transport to the fake the test puts under ``"fake"`` in the dict
    this yields, and work in ``cwd``. The SDK builds the ``BlobServiceClient`` of a code upload or model
    download itself, without forwarding ``transport=``: its base client's ``RequestsTransport`` is what this
    replaces. ``cwd`` should be outside a git work tree: the SDK runs ``git`` to add git properties to jobs
    and assets."""
    import azure.storage.blob._shared.base_client as storage_base

    holder: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(storage_base, "RequestsTransport", lambda **kwargs: holder["fake"])
        yield holder


def sdk_modules_loaded_by(code: str, heavy: tuple[str, ...]) -> list[str]:
    """The modules of the ``heavy`` packages (with their submodules) loaded after ``code`` runs in a fresh
    interpreter in the project's root."""
    code += ("\nimport sys\n"
             f"heavy = {heavy!r}\n"
             "print('\\n'.join(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()
