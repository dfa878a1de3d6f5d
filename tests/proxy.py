"""A fault-injecting HTTP proxy for a real DynamoDB-API server (loopback, threaded).

Per request it may answer a throttling error (400 JSON, as DynamoDB does), an HTTP 500, or
reset the connection without an answer, either before forwarding or after the server already
applied the request (the answer is lost, so the client must retry an applied write). An
``outage`` closes every connection for a while. ``injected`` counts what it did, so a test can
check that the migrator really went through its retry paths.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

THROTTLE_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException")


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        throttle: float = 0.0,
        error500: float = 0.0,
        reset: float = 0.0,
        seed: int = 1,
        ops: set[str] | None = None,
    ) -> None:
        u = urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 80
        self.throttle = throttle
        self.error500 = error500
        self.reset = reset
        self.ops = ops  # only these X-Amz-Target operations get faults (None: all)
        # (operation, body) -> an answer the proxy gives itself, or None to forward.
        self.intercept: Callable[[str, bytes], dict[str, Any] | None] | None = None
        self.injected: Counter[str] = Counter()
        # Sees (X-Amz-Target operation or "", path, answer body) of every forwarded request and
        # returns the body to send: to count calls, or to make a server answer as AWS does.
        self.on_answer: Callable[[str, str, bytes], bytes] | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._outage_until = 0.0
        self._outage_at: int | None = None
        self._lose_answer: set[str] = set()
        self._outage_seconds = 0.0
        self._closing = False
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> FaultProxy:
        self._accept_thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def outage(self, seconds: float) -> None:
        """From now on, for ``seconds``, every connection is closed without an answer."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds

    @property
    def in_outage(self) -> bool:
        with self._lock:
            return time.monotonic() < self._outage_until

    def outage_after(self, requests: int, seconds: float) -> None:
        """Start an outage once ``requests`` more requests have been forwarded."""
        with self._lock:
            self._outage_at = self.injected["forwarded"] + requests
            self._outage_seconds = seconds

    def lose_next_answer(self, op: str) -> None:
        """Forward the next ``op`` request, then reset instead of answering (a lost reply)."""
        with self._lock:
            self._lose_answer.add(op)

    def set_faults(
        self, *, throttle: float = 0.0, error500: float = 0.0, reset: float = 0.0
    ) -> None:
        with self._lock:
            self.throttle, self.error500, self.reset = throttle, error500, reset

    def count(self, what: str) -> int:
        with self._lock:
            return self.injected[what]

    def stop(self) -> None:
        self._closing = True
        self._accept_thread.join()
        self._sock.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ plumbing
    def _note(self, what: str) -> None:
        with self._lock:
            self.injected[what] += 1
            if self._outage_at is not None and self.injected["forwarded"] >= self._outage_at:
                self._outage_at = None
                self._outage_until = time.monotonic() + self._outage_seconds

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.in_outage:
                self._note("outage")
                _abort(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _decide(self, op: str) -> str | None:
        with self._lock:
            if op in self._lose_answer:
                self._lose_answer.discard(op)
                return "reset_after"
            if self.ops is not None and op not in self.ops:
                return None
            x = self._rng.random()
            for name, p in (
                ("throttle", self.throttle),
                ("error500", self.error500),
                ("reset", self.reset),
            ):
                if x < p:
                    if name == "reset" and self._rng.random() < 0.5:
                        return "reset_after"  # the server applied it; only the answer is lost
                    return name
                x -= p
            return None

    def _serve(self, conn: socket.socket) -> None:
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        rfile = conn.makefile("rb")
        try:
            while not self._closing:
                req = _read_request(rfile)
                if req is None:
                    return
                method, path, headers, body = req
                if self.in_outage:
                    self._note("outage")
                    _abort(conn)
                    return
                op = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
                own = self.intercept(op, body) if self.intercept is not None else None
                if own is not None:  # a test stand-in answers this request itself
                    self._note("intercepted")
                    _answer(conn, 200, own)
                    continue
                fault = self._decide(op)
                if fault == "reset":
                    self._note("reset")
                    _abort(conn)
                    return
                if fault == "throttle":
                    self._note("throttle")
                    code = self._rng.choice(THROTTLE_CODES)
                    _answer(
                        conn,
                        400,
                        {
                            "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                            "message": "Rate exceeded",
                        },
                    )
                    continue
                if fault == "error500":
                    self._note("error500")
                    _answer(
                        conn,
                        500,
                        {
                            "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                            "message": "injected",
                        },
                    )
                    continue
                status, rheaders, rbody = _forward(upstream, method, path, headers, body)
                if fault == "reset_after":
                    self._note("reset_after")
                    _abort(conn)
                    return
                self._note("forwarded")
                if self.on_answer is not None:
                    new = self.on_answer(op, path, rbody)
                    if new is not rbody:  # a rewritten answer carries its own checksum
                        rheaders = [(k, v) for k, v in rheaders if k.lower() != "x-amz-crc32"]
                        rheaders.append(("x-amz-crc32", str(zlib.crc32(new))))
                    rbody = new
                _send(conn, status, rheaders, rbody)
        except (OSError, http.client.HTTPException):
            return
        finally:
            upstream.close()
            rfile.close()
            conn.close()


def _abort(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the client sees a reset, not a polite end of stream."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _read_request(rfile: Any) -> tuple[str, str, dict[str, str], bytes] | None:
    line = rfile.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = rfile.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = rfile.read(int(headers.get("content-length") or 0))
    return method, path, headers, body


def _forward(
    upstream: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> tuple[int, list[tuple[str, str]], bytes]:
    for attempt in (1, 2):
        try:
            upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                if k not in ("connection", "keep-alive"):
                    upstream.putheader(k, v)
            upstream.endheaders(body)
            resp = upstream.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        except (http.client.HTTPException, ConnectionError):
            # The server closed an idle kept-alive connection: reconnect once.
            upstream.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _send(conn: socket.socket, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    skip = {"content-length", "transfer-encoding", "connection", "keep-alive"}
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in skip]
    lines += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
    conn.sendall("\r\n".join(lines).encode("latin-1") + body)


def _answer(conn: socket.socket, status: int, payload: dict[str, Any]) -> None:
    _send(conn, status, [("Content-Type", "application/x-amz-json-1.0")], orjson.dumps(payload))
