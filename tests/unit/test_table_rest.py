"""The lean Table REST path for single writes: on Azurite, read back through the real SDK, and
against small loopback servers (the outside world) for token auth, retries and lost answers."""

from __future__ import annotations

import base64
import logging
import math
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableServiceClient

from core.adapters.table_rest import Bearer, SharedKey, TableRest, encode
from core.adapters.table_store import TableStateStore
from core.adapters.table_transport import HttpClientTransport
from core.errors import ConflictError, PreconditionFailed, StoreError

# Every property type we write, with the values at the edges of what each holds.
VALUES: dict[str, Any] = {
    "text": "plain", "empty": "", "unicode": "é中🙂\u0000\"'\\", "zero": 0, "low": -(2**31), "high": 2**31 - 1,
    "yes": True, "no": False, "half": 1.5, "tiny": 5e-324, "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
    "when": datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=timezone.utc),
    "offset": datetime(2026, 12, 2, 3, 2, 3, tzinfo=timezone(timedelta(hours=2))),
    "raw": b"\x00\xff binary", "nothing": None,
}


@pytest.fixture
def service(azurite) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite.connection_string, transport=HttpClientTransport())


@pytest.fixture
def rest(service: TableServiceClient) -> TableRest:
    lean = TableRest.for_service(service)
    assert lean is not None and isinstance(lean.authorize, SharedKey)
    return lean


def _table(service: TableServiceClient) -> str:
    name = "t" + uuid.uuid4().hex[:10]
    service.create_table(name)
    return name


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def test_a_lean_insert_reads_back_through_the_sdk_as_the_sdks_own_insert(service, rest) -> None:
    table = _table(service)
    client = service.get_table_client(table)
    client.create_entity({"PartitionKey": "p", "RowKey": "sdk", **VALUES})
    etag = rest.insert(table, _body("p", "lean", VALUES))
    by_sdk, by_rest = client.get_entity("p", "sdk"), client.get_entity("p", "lean")
    assert by_rest.metadata["etag"] == etag
    assert set(by_rest) == set(by_sdk) == {"PartitionKey", "RowKey", *VALUES} - {"nothing"}
    for name in VALUES.keys() - {"nothing"}:
        assert _same(by_rest[name], by_sdk[name]), (name, by_rest[name], by_sdk[name])
    assert by_rest["when"] == VALUES["when"] and by_rest["offset"] == VALUES["offset"]
    assert by_rest["raw"] == VALUES["raw"] and by_rest["unicode"] == VALUES["unicode"]


def test_a_conditional_merge_keeps_other_properties_and_answers_the_etag_the_sdk_then_sees(service, rest) -> None:
    table = _table(service)
    row = "it's é 中 % & + ="  # quotes doubled and the rest percent-encoded in the entity's URL
    first = rest.insert(table, _body("p q", row, {"status": "processing", "attempt": 1}))
    second = rest.merge(table, "p q", row, _body("p q", row, {"status": "done", "outcome": "中" * 30_000}), first)
    found = service.get_table_client(table).get_entity("p q", row)
    assert found.metadata["etag"] == second != first
    assert (found["status"], found["attempt"], found["outcome"]) == ("done", 1, "中" * 30_000)
    with pytest.raises(PreconditionFailed):
        rest.merge(table, "p q", row, _body("p q", row, {"status": "stolen"}), first)
    with pytest.raises(PreconditionFailed):
        rest.merge(table, "p q", "missing", _body("p q", "missing", {"status": "x"}), first)
    assert service.get_table_client(table).get_entity("p q", row)["status"] == "done"


def test_an_insert_of_an_existing_entity_is_a_conflict_and_a_missing_table_is_a_store_error(service, rest) -> None:
    table = _table(service)
    rest.insert(table, _body("p", "r", {"n": 1}))
    with pytest.raises(ConflictError):
        rest.insert(table, _body("p", "r", {"n": 2}))
    with pytest.raises(StoreError, match="TableNotFound") as missing:
        rest.insert("nosuch" + uuid.uuid4().hex[:8], _body("p", "r", {}))
    assert not isinstance(missing.value, ConflictError | PreconditionFailed)
    with pytest.raises(StoreError, match="TableNotFound") as gone:
        rest.merge("nosuch" + uuid.uuid4().hex[:8], "p", "r", _body("p", "r", {}), 'W/"x"')
    assert not isinstance(gone.value, PreconditionFailed)


def test_a_wrong_account_key_is_a_store_error_that_names_the_refusal_not_the_key(azurite, caplog) -> None:
    wrong = base64.b64encode(b"not the account key" * 3).decode()
    endpoint = TableServiceClient.from_connection_string(azurite.connection_string).url
    rest = TableRest(endpoint, SharedKey("devstoreaccount1", wrong))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError, match="refused the credentials") as refused:
        rest.insert("whatever", _body("p", "r", {}))
    assert "403" in str(refused.value) and wrong not in str(refused.value) and wrong not in caplog.text
    with pytest.raises(StoreError, match="not valid base64") as malformed:
        SharedKey("devstoreaccount1", "not base64!" + wrong)
    assert wrong not in str(malformed.value)


def test_types_only_the_sdk_writes_go_through_it_and_read_back(azurite) -> None:
    assert encode({"id": uuid.uuid4()}) is None and encode({"big": 2**40}) is None
    assert encode({"n": 2**31 - 1}) is not None
    store = TableStateStore.from_connection(azurite.connection_string)
    assert isinstance(store._rest, TableRest)  # the store's single writes take the lean path
    table, value = "t" + uuid.uuid4().hex[:10], uuid.uuid4()
    etag = store.insert(table, "p", "r", {"id": value, "n": 1})
    first = store.get(table, "p", "r")
    assert first is not None and first.props == {"id": value, "n": 1}
    newer = store.update(table, "p", "r", {"n": 2}, etag)
    found = store.get(table, "p", "r")
    assert found is not None and found.props == {"id": value, "n": 2} and found.etag == newer


def _body(partition: str, row: str, props: dict[str, Any]) -> bytes:
    body = encode({"PartitionKey": partition, "RowKey": row, **props})
    assert body is not None
    return body


# -- the outside world on loopback --------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Recorder:
    """A Table service stand-in: records each request's method, path and headers and answers with
    the next of ``answers`` (status), or drops the connection unanswered for status 0."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, dict[str, str]]] = []


@pytest.fixture
def recorder() -> Iterator[tuple[str, _Recorder]]:
    state = _Recorder([])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None: ...

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append((self.command, self.path, dict(self.headers)))
            status = state.answers.pop(0) if state.answers else 204
            if status == 0:
                self.close_connection = True
                return
            body = b'{"odata.error":{"code":"ServerBusy","message":{"value":"busy"}}}' if status >= 400 else b""
            self.send_response(status)
            self.send_header("ETag", f'W/"etag-{len(state.requests)}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PATCH = _answer

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/acct", state
    server.shutdown()
    server.server_close()


class FakeCredential:
    """Entra ID: hands out numbered tokens that expire ``lifetime`` seconds after the fake clock."""

    def __init__(self, clock: list[float], lifetime: float = 3600) -> None:
        self.clock, self.lifetime, self.issued = clock, lifetime, 0
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        self.issued += 1
        return AccessToken(f"token-{self.issued}", int(self.clock[0] + self.lifetime))


def test_a_token_credential_signs_with_a_bearer_token_renewed_before_it_expires(recorder) -> None:
    url, state = recorder
    clock = [1_000_000.0]
    credential = FakeCredential(clock)
    rest = TableRest(url, Bearer(credential, clock=lambda: clock[0]))
    rest.insert("t", _body("p", "r", {}))
    clock[0] += 3000  # 10 minutes left: still good
    rest.merge("t", "p", "r", _body("p", "r", {}), 'W/"etag-1"')
    clock[0] += 400  # under 5 minutes left: renewed before it runs out
    rest.insert("t", _body("p", "r2", {}))
    assert [h["Authorization"] for _, _, h in state.requests] == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert credential.scopes == ["https://storage.azure.com/.default"] * 2
    assert [(m, p) for m, p, _ in state.requests][:2] == [("POST", "/acct/t"),
                                                          ("PATCH", "/acct/t(PartitionKey='p',RowKey='r')")]
    assert state.requests[1][2]["If-Match"] == 'W/"etag-1"' and state.requests[0][2]["Prefer"] == "return-no-content"


def test_the_sdk_client_of_a_managed_identity_gets_the_bearer_path() -> None:
    service = TableServiceClient("https://acct.table.core.windows.net", credential=FakeCredential([0.0]))
    rest = TableRest.for_service(service)
    assert rest is not None and isinstance(rest.authorize, Bearer)
    sas = TableServiceClient("https://acct.table.core.windows.net?sv=2019-02-02&sig=abc")
    assert TableRest.for_service(sas) is None


def test_a_busy_service_is_asked_again_but_a_lost_answer_is_never_resent(recorder) -> None:
    url, state = recorder
    slept: list[float] = []
    rest = TableRest(url, SharedKey("acct", base64.b64encode(b"k").decode()),
                     sleep=slept.append)
    state.answers[:] = [503, 500]
    assert rest.insert("t", _body("p", "r", {})) == 'W/"etag-3"'
    assert len(state.requests) == 3 and slept == [0.0, 0.8]
    state.answers[:] = [503, 503, 503, 503]
    with pytest.raises(StoreError, match="HTTP 503 ServerBusy"):
        rest.insert("t", _body("p", "r", {}))
    assert len(state.requests) == 7
    state.answers[:] = [0]  # the request arrived; its answer never came back
    with pytest.raises(StoreError, match="answer was lost"):
        rest.insert("t", _body("p", "r", {}))
    assert len(state.requests) == 8, "an insert whose answer was lost must not be sent again"


def test_nothing_listening_is_retried_then_a_store_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slept: list[float] = []
    rest = TableRest(f"http://127.0.0.1:{port}/acct", SharedKey("acct", "a2V5"),
                     sleep=slept.append)
    with pytest.raises(StoreError, match="unreachable"):
        rest.insert("t", _body("p", "r", {}))
    assert slept == [0.0, 0.8, 1.6]


def test_a_store_whose_lean_path_is_refused_its_credentials_hands_writes_to_the_sdk(azurite, caplog) -> None:
    """Azure may ask more of a bearer token than this path answers (a tenant challenge): the write
    that was refused (nothing was written) and every later one go through the SDK instead."""
    service = TableServiceClient.from_connection_string(azurite.connection_string, transport=HttpClientTransport())
    endpoint = service.url
    wrong = TableRest(endpoint, SharedKey("devstoreaccount1", base64.b64encode(b"not the key" * 4).decode()))
    store = TableStateStore(service, wrong)
    table = _table(service)
    caplog.set_level(logging.WARNING)
    etag = store.insert(table, "p", "r1", {"n": 1})
    assert "using the SDK" in caplog.text
    assert store.update(table, "p", "r1", {"n": 2}, etag)
    store.insert(table, "p", "r2", {"n": 3})
    found = store.get(table, "p", "r1")
    assert found is not None and found.props["n"] == 2 and store.get(table, "p", "r2") is not None
    with pytest.raises(ConflictError):
        store.insert(table, "p", "r1", {"n": 9})
