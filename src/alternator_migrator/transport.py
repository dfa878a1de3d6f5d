"""A minimal pooled HTTP/1.1 client for small JSON POSTs.

urllib3 on top of http.client runs about a thousand Python calls per request (header objects,
email-parser-based response headers), which at 25 items a request cost ~40 us of client CPU
per item: more than everything else the migrator does. This client writes one buffer per
request and parses only the status line, Content-Length / chunked framing and Connection.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit


class TransportError(Exception):
    """The request may or may not have reached the server (connect, reset, timeout, framing)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class _Conn:
    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise TransportError("connection closed by the server")
        self.buf += chunk

    def read_until(self, sep: bytes) -> bytes:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep) :]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            self._fill()

    def read_exact(self, n: int) -> bytes:
        if len(self.buf) >= n:
            out, self.buf = self.buf[:n], self.buf[n:]
            return out
        parts = [self.buf]
        have = len(self.buf)
        self.buf = b""
        while have < n:
            chunk = self.sock.recv(max(262144, n - have))
            if not chunk:
                raise TransportError("connection closed mid-response")
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self.buf = data[n:]
        return data[:n]


class HttpPool:
    """Keep-alive connections to one origin, shared by threads (one request per connection)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_idle: int = 32,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme in {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.netloc = parts.netloc
        self.path = parts.path or "/"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: deque[_Conn] = deque()
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context() if self.tls else None

    def _connect(self) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except OSError as e:
            raise TransportError(f"cannot connect to {self.netloc}: {e}") from None
        return _Conn(sock)

    def _take(self) -> _Conn:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn = self._idle.pop()
            # An idle connection with something to read has been closed by the server (its
            # keep-alive timeout): drop it now, because once a request is sent on it, a reset
            # could also mean "processed, answer lost", which only the caller may retry.
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if not readable:
                return conn
            conn.close()
        return self._connect()

    def _give_back(self, conn: _Conn) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def post(self, headers: dict[str, str], body: bytes) -> Response:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.netloc}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode("latin-1") + body
        conn = self._take()
        try:
            return self._exchange(conn, request)
        except (TransportError, OSError) as e:
            conn.close()
            raise _wrap(e) from None

    def _exchange(self, conn: _Conn, request: bytes) -> Response:
        conn.sock.sendall(request)
        while True:
            status_line = conn.read_until(b"\r\n")
            try:
                status = int(status_line.split(b" ", 2)[1])
            except (IndexError, ValueError):
                raise TransportError(f"bad status line {status_line[:80]!r}") from None
            length: int | None = None
            chunked = False
            close = False
            for line in conn.read_until(b"\r\n\r\n").split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if status != 100:
                break
        if chunked:
            body = self._read_chunked(conn)
        elif length is not None:
            body = conn.read_exact(length)
        else:  # no framing: the body runs to the end of the connection
            body = conn.buf + _read_to_eof(conn.sock)
            conn.buf = b""
            close = True
        if close:
            conn.close()
        else:
            self._give_back(conn)
        return Response(status, body)

    @staticmethod
    def _read_chunked(conn: _Conn) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(conn.read_until(b"\r\n").split(b";", 1)[0], 16)
            if size == 0:
                conn.read_until(b"\r\n")  # trailers end (we send none and expect none)
                return b"".join(parts)
            parts.append(conn.read_exact(size))
            conn.read_exact(2)

    def close(self) -> None:
        with self._lock:
            while self._idle:
                self._idle.pop().close()


def _read_to_eof(sock: socket.socket) -> bytes:
    parts: list[bytes] = []
    while chunk := sock.recv(262144):
        parts.append(chunk)
    return b"".join(parts)


def _wrap(e: BaseException) -> TransportError:
    return e if isinstance(e, TransportError) else TransportError(f"{type(e).__name__}: {e}")
