"""The minimal HTTP/1.1 client of the Table REST path, against scripted loopback servers that
answer the ways real servers (and broken networks) do: chunked, in pieces, with interim answers,
closing connections, over TLS."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.adapters.lean_http import LeanHttp, Lost, Unsent

Script = Callable[[socket.socket, bytes], bool]  # (connection, request) -> keep the connection open


class Scripted:
    """Serves each request with the next script step; counts connections and requests."""

    def __init__(self, steps: list[Script], tls: ssl.SSLContext | None = None) -> None:
        self.steps, self.tls = steps, tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except ssl.SSLError:  # a client that does not trust us hangs up in the handshake
                conn.close()
                return
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                if not self.steps.pop(0)(conn, self.requests[-1]):
                    return


def send(raw: bytes, keep: bool = True) -> Script:
    def step(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(raw)
        return keep
    return step


def pieces(*parts: bytes) -> Script:
    def step(conn: socket.socket, request: bytes) -> bool:
        for part in parts:
            conn.sendall(part)
            threading.Event().wait(0.02)
        return True
    return step


@pytest.fixture
def serve() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(steps: list[Script], tls: ssl.SSLContext | None = None) -> Scripted:
        servers.append(Scripted(steps, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.listener.close()


OK = b"HTTP/1.1 204 No Content\r\nETag: W/\"1\"\r\n\r\n"


def test_a_request_goes_out_whole_and_answers_of_every_framing_are_read(serve) -> None:
    server = serve([
        send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\nETag: W/\"a\"\r\n\r\nhello"),
        pieces(b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\"", b":1}\r\n3;ext=1\r\n,\"b\r\n",
               b"0\r\nTrailer: x\r\n\r\n"),
        pieces(b"HTTP/1.1 200 OK\r\nCont", b"ent-Length: 3\r\n\r\nab", b"c"),
        send(OK)])
    client = LeanHttp(f"http://127.0.0.1:{server.port}")
    first = client.exchange("POST", "/acct/t", {"X-Test": "é".encode().decode("latin-1")}, b'{"k":"v"}')
    assert (first.status, first.headers["etag"], first.body) == (201, 'W/"a"', b"hello")
    second = client.exchange("POST", "/acct/t", {}, b"")
    assert (second.status, second.body) == (409, b'{"a":1},"b')
    assert client.exchange("PATCH", "/acct/t(PartitionKey='p')", {}, b"x").body == b"abc"
    assert client.exchange("POST", "/acct/t", {}, b"").status == 204
    assert server.connections == 1, "one keep-alive connection for all four"
    assert server.requests[0].startswith(b"POST /acct/t HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 9\r\n" in server.requests[0] and server.requests[0].endswith(b'\r\n\r\n{"k":"v"}')


def test_a_connection_the_server_closed_is_replaced_not_reported_lost(serve) -> None:
    server = serve([send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", keep=False),
                    send(OK, keep=False),  # closes without saying so
                    send(OK)])
    client = LeanHttp(f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        assert client.exchange("POST", "/t", {}, b"").status == 204
        threading.Event().wait(0.05)  # the close reaches us before the next request
    assert server.connections == 3


def test_an_answer_cut_short_is_lost_and_nothing_listening_is_unsent(serve) -> None:
    server = serve([send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", keep=False),
                    send(b"", keep=False), send(b"garbage\r\n\r\n", keep=False)])
    client = LeanHttp(f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        with pytest.raises(Lost):
            client.exchange("POST", "/t", {}, b"")
    assert len(server.requests) == 3
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(Unsent):
        LeanHttp(f"http://127.0.0.1:{port}").exchange("POST", "/t", {}, b"")
    silent = socket.create_server(("127.0.0.1", 0))
    with silent, pytest.raises(Lost, match="timed out"):
        LeanHttp(f"http://127.0.0.1:{silent.getsockname()[1]}", read_timeout=0.3).exchange("POST", "/t", {}, b"")


def test_https_verifies_the_server_and_speaks_through_tls(serve, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    server = serve([send(OK), send(OK)], tls=server_side)
    trusting = ssl.create_default_context(cafile=str(cert))
    client = LeanHttp(f"https://localhost:{server.port}", tls=trusting)
    assert [client.exchange("POST", "/t", {}, b"{}").status for _ in range(2)] == [204, 204]
    assert server.connections == 1
    with pytest.raises(Unsent, match="CERTIFICATE_VERIFY_FAILED"):
        LeanHttp(f"https://localhost:{server.port}").exchange("POST", "/t", {}, b"{}")
