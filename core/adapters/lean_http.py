"""A minimal HTTP/1.1 client for small request/answer exchanges on keep-alive connections.

``http.client`` parses every answer's headers with the email package: about 45 us of CPU for an
Azurite answer of ten headers, where splitting the bytes takes 3 us, and the two Table writes
of every event each pay it (``bench/table_rest.py``). This client writes a request in one
``sendall`` and reads the status line, the headers and a Content-Length or chunked body itself.
It serves ``core/adapters/table_rest.py`` only; the SDK keeps ``table_transport.py``.

Connections: one per thread, TCP_NODELAY, TLS for https; before reuse a kept-alive connection is
checked for a close by the server (a zero-timeout select: a stale connection would otherwise turn
the next request into a lost answer).
Errors, as azure-core's transports map them: nothing sent -> ``Unsent`` (safe to send again);
sent but no complete answer -> ``Lost`` (it may have been applied).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 20.0  # seconds
READ_TIMEOUT = 60.0  # a Table operation's server-side timeout is 30 s
MAX_HEAD = 64 * 1024  # bytes of status line and headers
MAX_BODY = 16 * 1024 * 1024


def idle_socket_dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable was closed by the server (or sent garbage)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Unsent(Exception):
    """The request did not leave: nothing was done."""


class Lost(Exception):
    """The request was sent but no complete answer came back: it may have been applied."""


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body  # header names in lower case


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def dropped(self) -> bool:
        """Bytes left over from the last answer, or a close by the server: not reusable."""
        return bool(self.buffer) or idle_socket_dropped(self.sock)

    def close(self) -> None:
        self.sock.close()


class LeanHttp:
    def __init__(self, url: str, *, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 tls: ssl.SSLContext | None = None) -> None:
        """``url``: the endpoint (scheme, host and port) every request of this client goes to;
        ``tls``: for https, the context (default: the system's trusted CAs, hostname checked)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {url!r}")
        self._tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._host_header = parts.netloc.rpartition("@")[2]
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._local = threading.local()

    def exchange(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        conn = self._connection()
        try:
            conn.sock.sendall(request)
        except OSError as exc:  # refused or reset before the request was out (a partial request is void)
            self._drop(conn)
            raise Unsent(str(exc) or type(exc).__name__) from exc
        try:
            answer, keep = _read_answer(conn, method)
        except (OSError, ValueError) as exc:
            self._drop(conn)
            raise Lost(str(exc) or type(exc).__name__) from exc
        if not keep:
            self._drop(conn)
        return answer

    def close(self) -> None:
        """Closes this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.dropped():
            self._drop(conn)
            conn = None
        if conn is None:
            try:
                sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=self._host)
            except OSError as exc:
                raise Unsent(str(exc) or type(exc).__name__) from exc
            sock.settimeout(self._read_timeout)
            conn = self._local.conn = _Connection(sock)
        return conn

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None


def _read_answer(conn: _Connection, method: str) -> tuple[Answer, bool]:
    """(the answer, whether the connection may be reused). 1xx interim answers are skipped."""
    while True:
        head = _read_until(conn, b"\r\n\r\n", MAX_HEAD)
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"malformed header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        if status >= 200:
            break
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304):
        return Answer(status, headers, b""), keep
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Answer(status, headers, _read_chunked(conn)), keep
    length = headers.get("content-length")
    if length is None:  # the body runs until the server closes the connection
        return Answer(status, headers, _read_to_close(conn)), False
    return Answer(status, headers, _read_exactly(conn, int(length))), keep


def _fill(conn: _Connection) -> None:
    data = conn.sock.recv(65536)
    if not data:
        raise ConnectionResetError("the server closed the connection mid-answer")
    conn.buffer += data


def _read_until(conn: _Connection, marker: bytes, limit: int) -> bytes:
    while True:
        end = conn.buffer.find(marker)
        if end >= 0:
            found, conn.buffer = conn.buffer[:end], conn.buffer[end + len(marker):]
            return found
        if len(conn.buffer) > limit:
            raise ValueError(f"no {marker!r} within {limit} bytes")
        _fill(conn)


def _read_exactly(conn: _Connection, count: int) -> bytes:
    if count > MAX_BODY:
        raise ValueError(f"an answer of {count} bytes")
    while len(conn.buffer) < count:
        _fill(conn)
    found, conn.buffer = conn.buffer[:count], conn.buffer[count:]
    return found


def _read_chunked(conn: _Connection) -> bytes:
    body = b""
    while True:
        size = int(_read_until(conn, b"\r\n", 1024).split(b";", 1)[0], 16)
        if size == 0:
            while _read_until(conn, b"\r\n", MAX_HEAD):  # trailers, up to the empty line
                pass
            return body
        body += _read_exactly(conn, size)
        if len(body) > MAX_BODY:
            raise ValueError("a chunked answer too large")
        if _read_until(conn, b"\r\n", 2):
            raise ValueError("a chunk longer than its size line said")


def _read_to_close(conn: _Connection) -> bytes:
    body = conn.buffer
    conn.buffer = b""
    while len(body) <= MAX_BODY:
        data = conn.sock.recv(65536)
        if not data:
            return body
        body += data
    raise ValueError("an answer too large")
