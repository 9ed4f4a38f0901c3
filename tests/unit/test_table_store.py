"""TableStateStore through the real Table SDK on its http.client transport: on Azurite, and
against small loopback servers that misbehave the way networks do."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ServiceRequestError, ServiceResponseTimeoutError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.data.tables import TableServiceClient

from core.adapters.table_store import TableStateStore
from core.adapters.table_transport import HttpClientTransport, table_transport
from core.errors import ConflictError, PreconditionFailed


@pytest.fixture
def store(azurite) -> TableStateStore:
    return TableStateStore.from_connection(azurite.connection_string)


def test_the_store_uses_the_lean_transport_and_keeps_table_semantics(store: TableStateStore) -> None:
    transport = store._service._client._client._pipeline._transport  # its table clients wrap this one
    assert isinstance(transport, HttpClientTransport)
    table = "t" + uuid.uuid4().hex[:10]
    etag = store.insert(table, "p", "r", {"n": 1, "text": "é中"})
    with pytest.raises(ConflictError):
        store.insert(table, "p", "r", {"n": 2})
    found = store.get(table, "p", "r")
    assert found is not None and found.props == {"n": 1, "text": "é中"} and found.etag == etag
    newer = store.update(table, "p", "r", {"n": 3}, etag)
    with pytest.raises(PreconditionFailed):
        store.update(table, "p", "r", {"n": 4}, etag)
    assert store.get(table, "p", "missing") is None
    [row] = list(store.query(table, partition="p", where={"n": 3}))
    assert row.etag == newer and row.props["text"] == "é中"


@pytest.mark.parametrize("kind", ["memory", "azurite"])
def test_a_row_range_is_bounded_on_both_sides_and_filtered_by_prefix(kind: str, azurite) -> None:
    """The fake and Table Storage agree on ``query_rows``: (above, below), RowKey order, limit, prefixes."""
    from tests.fakes import MemoryStateStore

    store = MemoryStateStore() if kind == "memory" else TableStateStore.from_connection(azurite.connection_string)
    table = "t" + uuid.uuid4().hex[:10]
    actions = ["alert.firing", "event.duplicate", "release.promoted", "alerts", "release/", "retrain.started"]
    for i, action in enumerate(actions):
        store.insert(table, "p", f"r{i}", {"action": action})
    store.insert(table, "q", "r3", {"action": "alert.firing"})

    def rows(**kw: object) -> list[str]:
        return [e.row for e in store.query_rows(table, "p", **{"below": "r9", "limit": 10, **kw})]  # type: ignore[arg-type]

    assert rows() == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert rows(above="r1", below="r5") == ["r2", "r3", "r4"]
    assert rows(above="r0", limit=2) == ["r1", "r2"]
    assert rows(prefixes={"action": ("alert.", "release.", "retrain.")}) == ["r0", "r2", "r5"]
    assert rows(above="r0", prefixes={"action": ("alert.", "release.")}, limit=1) == ["r2"]


def test_concurrent_writes_to_one_partition_all_land_once_with_their_own_errors(store: TableStateStore) -> None:
    table = "t" + uuid.uuid4().hex[:10]
    store.insert(table, "p", "taken", {})
    outcomes: dict[str, str] = {}

    def write(row: str) -> None:
        try:
            outcomes[row] = store.insert(table, "p", row, {"detail": "x" * 100})
        except ConflictError:
            outcomes[row] = "conflict"

    rows = [f"r{i}" for i in range(60)] + ["taken"] * 3
    threads = [threading.Thread(target=write, args=(r,)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes.pop("taken") == "conflict"
    stored = {e.row: e.etag for e in store.query(table, partition="p")}
    assert stored.keys() == {*outcomes, "taken"}
    assert all(stored[row] == etag for row, etag in outcomes.items()), "each caller got its entity's ETag"


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def closing_server() -> Iterator[tuple[str, list[int], threading.Semaphore]]:
    """Answers each request, then drops the connection without saying so (an idle keep-alive
    connection the server closed); ``closed`` is released once each connection is shut."""
    connections: list[int] = []
    closed = threading.Semaphore(0)

    class Server(_Server):
        def shutdown_request(self, request: object) -> None:
            super().shutdown_request(request)  # type: ignore[arg-type]
            closed.release()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:
            connections.append(id(self.connection))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", connections, closed
    server.shutdown()
    server.server_close()


def test_a_connection_the_server_dropped_is_replaced_before_reuse(closing_server) -> None:
    url, connections, closed = closing_server
    transport = HttpClientTransport()
    for _ in range(3):
        response = transport.send(HttpRequest("GET", f"{url}/x"))
        assert (response.status_code, response.content) == (200, b"ok")
        # The close must have happened before the next request, or this races the server's FIN.
        assert closed.acquire(timeout=10)
    assert len(connections) == 3


def test_nothing_listening_is_a_request_error_the_sdk_may_retry() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ServiceRequestError):
        HttpClientTransport().send(HttpRequest("GET", f"http://127.0.0.1:{port}/"))
    service = TableServiceClient(f"http://127.0.0.1:{port}/devstoreaccount1", transport=HttpClientTransport(),
                                 credential=AzureNamedKeyCredential("devstoreaccount1", "a2V5"), retry_total=1,
                                 retry_backoff_factor=0)
    with pytest.raises(ServiceRequestError):
        service.get_table_client("x").get_entity("p", "r")


def test_a_server_that_never_answers_times_out_as_a_response_error() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        transport = HttpClientTransport(read_timeout=0.3)
        with pytest.raises(ServiceResponseTimeoutError):
            transport.send(HttpRequest("GET", f"http://127.0.0.1:{silent.getsockname()[1]}/"))


def test_a_configured_proxy_keeps_the_sdk_default_transport(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert table_transport() is None
    monkeypatch.delenv("HTTPS_PROXY")
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(table_transport(), HttpClientTransport)
    assert not isinstance(table_transport(), RequestsTransport)


def test_the_private_azure_core_response_class_the_transport_relies_on_is_still_there() -> None:
    """table_transport.py answers with azure-core's own http.client response class, because only
    azure-core's implementations have the ``parts()`` the Table SDK reads a transaction with. If
    azure-core moves or renames it, this says so before anything subtler breaks."""
    import importlib

    module = importlib.import_module("azure.core.rest._http_response_impl")
    response = getattr(module, "RestHttpClientTransportResponse", None)
    assert response is not None, "azure-core moved RestHttpClientTransportResponse: see table_transport.py"
    assert callable(getattr(response, "parts", None)), "azure-core's response lost parts(): transactions would break"
    from azure.core.rest import HttpResponse

    assert issubclass(response, HttpResponse)
