"""Network stand-ins for real endpoints, all on loopback: a scripted HTTP server, a forward proxy
(CONNECT and absolute-form), an HTTP forwarder that can terminate TLS, and a fake multi-node
Alternator cluster (forwarders on 127.0.0.1, .2, .3 serving /localnodes in front of one server).
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import socket
import ssl
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .proxy import _abort, _forward, _read_request, _send


def _read_head_and_body(conn: socket.socket) -> tuple[bytes, bytes] | None:
    """One request from a raw socket: (head, body) by Content-Length; None at EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head, rest[:length]


class _Listener:
    """Accept loop on its own thread; every connection served on another."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self._closing = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> Any:
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._guarded, args=(conn,), daemon=True).start()

    def _guarded(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop listening and reset every open connection (a node that goes away)."""
        self._closing = True
        self._thread.join()
        self.sock.close()
        with self._lock:
            for c in self._conns:
                # shutdown first: a makefile() reader keeps the descriptor open past close().
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                _abort(c)
            self._conns.clear()


class ScriptedServer(_Listener):
    """Answers request number i (0-based, over all connections) with ``script(i, head, body)``:
    raw response bytes, or None to reset the connection."""

    def __init__(
        self, script: Callable[[int, bytes, bytes], bytes | None], *, close: bool = False
    ) -> None:
        super().__init__()
        self.script = script
        self.close = close  # close the connection after each answer
        self.requests: list[tuple[bytes, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        while (req := _read_head_and_body(conn)) is not None:
            with self._lock:
                i = len(self.requests)
                self.requests.append(req)
            out = self.script(i, *req)
            if out is None:
                _abort(conn)
                return
            conn.sendall(out)
            if self.close:
                conn.shutdown(socket.SHUT_WR)
                return


def http_response(body: bytes, *, status: int = 200, headers: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


class ConnectProxy(_Listener):
    """A forward proxy: CONNECT tunnels (https) and absolute-form requests (http), loopback
    targets only. ``seen`` counts ``CONNECT host:port`` and ``GET/POST host:port`` per
    connection."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        method, target = buf.split(b" ", 2)[:2]
        if method == b"CONNECT":
            host, port = target.decode().rsplit(":", 1)
            first = b""
        else:
            u = urlsplit(target.decode())
            host, port = u.hostname or "", str(u.port or 80)
            first = buf
        assert host.startswith("127."), f"the test proxy only reaches loopback, not {host}"
        with self._lock:
            self.seen[f"{method.decode()} {host}:{port}"] += 1
        up = socket.create_connection((host, int(port)))
        if first:
            up.sendall(first)
        else:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        t = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
        t.start()
        _pipe(conn, up)
        t.join()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class HttpForwarder(_Listener):
    """Forwards each request to ``upstream`` (plain http), optionally terminating TLS, serving
    ``GET /localnodes`` from ``localnodes(query)`` (404 without it) and un-gzipping bodies sent
    with Content-Encoding: gzip. ``ops`` counts X-Amz-Target operations."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        localnodes: Callable[[str], list[str]] | None = None,
    ) -> None:
        super().__init__(host, port)
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.upstream_url = upstream
        self.tls = tls
        self.localnodes = localnodes
        self.ops: Counter[str] = Counter()
        self.gzipped = 0
        self.queries: list[str] = []
        # Ops whose next answer gets a bogus item added to its Items while keeping the
        # x-amz-crc32 of the real body (a body corrupted on the way).
        self.corrupt_next: set[str] = set()
        self.corrupted = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            conn.settimeout(10)
            conn = self.tls.wrap_socket(conn, server_side=True)
            with self._lock:
                self._conns.append(conn)
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        rfile = conn.makefile("rb")
        try:
            while not self._closing and (req := _read_request(rfile)) is not None:
                method, path, headers, body = req
                if method == "GET" and path.startswith("/localnodes"):
                    query = path.partition("?")[2]
                    with self._lock:
                        self.queries.append(query)
                    if self.localnodes is None:
                        _send(conn, 404, [], b"not found")
                    else:
                        _send(conn, 200, [], orjson.dumps(self.localnodes(query)))
                    continue
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                    del headers["content-encoding"]
                    headers["content-length"] = str(len(body))
                    with self._lock:
                        self.gzipped += 1
                op = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
                with self._lock:
                    self.ops[op] += 1
                status, rheaders, rbody = _forward(upstream, method, path, headers, body)
                with self._lock:
                    corrupt = op in self.corrupt_next and status == 200
                    self.corrupt_next.discard(op)
                if corrupt:
                    crc = zlib.crc32(rbody)
                    data = orjson.loads(rbody)
                    data["Items"] = [{"pk": {"S": "bogus-from-a-corrupted-body"}}, *data["Items"]]
                    rbody = orjson.dumps(data)
                    rheaders = [(k, v) for k, v in rheaders if k.lower() != "x-amz-crc32"]
                    rheaders.append(("x-amz-crc32", str(crc)))
                    with self._lock:
                        self.corrupted += 1
                _send(conn, status, rheaders, rbody)
        finally:
            upstream.close()
            rfile.close()


class FakeCluster:
    """``nodes`` forwarders on 127.0.0.1, 127.0.0.2, ... sharing one port, in front of one
    server; /localnodes lists the nodes still running."""

    def __init__(self, upstream: str, nodes: int = 3, tls: ssl.SSLContext | None = None) -> None:
        self.hosts = [f"127.0.0.{i + 1}" for i in range(nodes)]
        self.nodes: list[HttpForwarder] = []
        for _ in range(20):  # a port free on every address
            first = HttpForwarder(upstream, tls=tls, localnodes=self._localnodes)
            try:
                rest = [
                    HttpForwarder(
                        upstream, host=h, port=first.port, tls=tls, localnodes=self._localnodes
                    )
                    for h in self.hosts[1:]
                ]
            except OSError:
                first.sock.close()
                continue
            self.nodes = [first, *rest]
            break
        assert self.nodes, "no port free on all loopback addresses"
        self.port = self.nodes[0].port
        self.down: set[int] = set()

    def _localnodes(self, query: str) -> list[str]:
        return [h for i, h in enumerate(self.hosts) if i not in self.down]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> FakeCluster:
        for n in self.nodes:
            n.start()
        return self

    def kill(self, i: int) -> None:
        self.down.add(i)
        self.nodes[i].stop()

    def counts(self, op: str = "BatchWriteItem") -> list[int]:
        return [n.ops[op] for n in self.nodes]

    def shares(self, op: str = "BatchWriteItem") -> list[float]:
        c = self.counts(op)
        return [round(x / max(1, sum(c)), 3) for x in c]

    def stop(self) -> None:
        for i, n in enumerate(self.nodes):
            if i not in self.down:
                n.stop()


class PrivateCA:
    """A private CA (trustme) and a server context for 127.0.0.1-3 and localhost."""

    def __init__(self, tmp: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost")
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.server_ctx)
        self.pem = tmp / "private-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.pem))
