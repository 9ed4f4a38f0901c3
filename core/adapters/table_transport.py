"""A lean azure-core HTTP transport on the standard library's http.client, for Table Storage.

The Table SDK's default transport is ``requests``: per call it merges session settings, walks
the whole environment for proxy and netrc settings, and builds urllib3 objects, which costs
about 0.45 ms of CPU per Table call here (measured: 1.14 -> 0.69 ms per insert; ``bench/intake.py``).
Everything above the socket stays the SDK's own: its policies (auth, retry, error mapping),
serialisation and entity-group transactions. Imported only by the Table adapter, which
is itself loaded on first use.

Connections are kept alive, one per thread and endpoint (http.client connections are not
thread-safe). Errors map onto azure-core's as its own transports do, so its retry policy behaves
the same: nothing sent -> ``ServiceRequestError`` (safe to retry); sent but no answer ->
``ServiceResponseError`` (retried only for idempotent methods, never an insert).
Proxies are not supported: ``table_transport()`` falls back to the SDK's default when the
environment names one.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

# The one private azure-core name this module needs. azure-core's public ``azure.core.rest.HttpResponse``
# is abstract, and the Table SDK reads a transaction's answer with ``response.parts()``, which only
# azure-core's own response implementations have (a back-compat mixin, multipart parsing included).
# So this transport answers with the response class azure-core's own http.client-based parsing uses
# rather than re-implementing multipart/mixed. tests/unit/test_table_store.py fails loudly if it moves.
from azure.core.rest._http_response_impl import RestHttpClientTransportResponse

from core.adapters.lean_http import CONNECT_TIMEOUT, READ_TIMEOUT, idle_socket_dropped

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
T = TypeVar("T")


def table_transport() -> HttpClientTransport | None:
    """This transport, or None (the SDK's default) when a proxy is configured in the environment."""
    if any(os.environ.get(v) or os.environ.get(v.upper()) for v in PROXY_VARIABLES):
        return None
    return HttpClientTransport()


class HttpClientTransport(HttpTransport):
    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._local = threading.local()
        self._tls = ssl.create_default_context()

    def open(self) -> None:
        """Connections open on first use."""

    def close(self) -> None:
        """Closes this thread's connections; other threads' close when their threads end."""
        for conn in self._connections().values():
            conn.close()
        self._connections().clear()

    def __enter__(self) -> HttpClientTransport:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, HttpRequest):  # the Table SDK builds only azure.core.rest requests
            raise TypeError(f"this transport serves azure.core.rest requests, not {type(request).__name__}")
        if request.files:
            raise ValueError("multipart/form-data uploads are not supported by this transport")
        return self.exchange(request.method, request.url, request.headers, request.data,
                             lambda answer: _response(request, answer))

    def exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes | str | None,
                 read: Callable[[http.client.HTTPResponse], T]) -> T:
        """One request on this thread's keep-alive connection; ``read`` takes the answer (reading
        all of its body) while a lost connection still counts as a lost answer. Also used directly
        by ``core.adapters.table_rest`` for the two hot single-entity writes."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(parts.scheme, parts.netloc)
        try:
            conn.request(method, target, body=body, headers=dict(headers))
        except TimeoutError as exc:
            conn.close()
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except OSError as exc:  # refused, reset or broken before the request was out: nothing was done
            conn.close()
            raise ServiceRequestError(exc, error=exc) from exc
        try:
            conn.sock.settimeout(self._read_timeout)
            return read(conn.getresponse())
        except TimeoutError as exc:
            conn.close()
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except (OSError, http.client.HTTPException) as exc:  # sent, but the answer was lost
            conn.close()
            raise ServiceResponseError(exc, error=exc) from exc

    def _connections(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        conns: dict[tuple[str, str], http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conns = self._connections()
        conn = conns.get((scheme, netloc))
        if conn is not None and conn.sock is not None and idle_socket_dropped(conn.sock):
            conn.close()  # the server closed the idle connection: http.client reconnects on the next request
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self._connect_timeout, context=self._tls)
            elif scheme == "http":
                conn = http.client.HTTPConnection(netloc, timeout=self._connect_timeout)
            else:
                raise ServiceRequestError(f"unsupported URL scheme {scheme!r}")
            conns[(scheme, netloc)] = conn
        if conn.sock is None:
            try:
                conn.connect()
            except TimeoutError as exc:
                raise ServiceRequestTimeoutError(exc, error=exc) from exc
            except OSError as exc:
                raise ServiceRequestError(exc, error=exc) from exc
            # http.client writes the headers and the body separately: without this, Nagle's
            # algorithm holds the body back until the headers are acknowledged.
            sock = cast(socket.socket, conn.sock)  # connect() has just set it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(self._connect_timeout)
        return conn


def _response(request: HttpRequest, answer: http.client.HTTPResponse) -> RestHttpClientTransportResponse:
    """The whole body is read here: Table answers are small, and the connection is then free."""
    response = RestHttpClientTransportResponse(request=request, internal_response=answer)
    response.read()
    return response
