"""A 3-node Alternator stand-in whose nodes' clocks disagree, in front of one real server.

ScyllaDB without LWT (``forbid_rmw``, and plain writes under ``only_rmw_uses_lwt``) orders the
writes of one item by the timestamp the *receiving* node stamps from its own clock, and keeps
the newest: a write stamped older than the one kept is acknowledged and has no effect. This
stand-in does the same, per item, so that a test can see writes lost to clock skew:

    cluster = SkewCluster(dynalite.url, clock_offsets_ms=(0, -300, 300)).start()
    ... point a `type: alternator` target at cluster.url (it serves /localnodes) ...
    cluster.take_down(2)      # stops listening, resets its connections, leaves /localnodes
    cluster.take_down(1, still_listed=True)   # dead but still listed (gossip has not noticed)
    cluster.bring_back(2)     # listens again on the same address, listed again
    cluster.lost              # writes acknowledged but not applied (stale stamp)
    cluster.lost_keys         # their (table, key) pairs
    cluster.ops("BatchWriteItem")   # requests per node
    cluster.stop()

Nodes listen on 127.0.0.1, .2, .3 with one port. PutItem, DeleteItem and BatchWriteItem (puts
and deletes) are stamped and judged per item (table + primary key, the key schema learnt from
the server by DescribeTable); what is newer is forwarded, the rest answered as success without
touching the server. Judging and forwarding are serialised (one lock): a stand-in for
correctness, not for speed. Every other call (reads, DescribeTable, ...) is forwarded as is.
Bodies sent with Content-Encoding: gzip are accepted. Conditional writes are not modelled, and
a write the server then refuses (a validation error) has still set its item's stamp.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from .netfakes import _Listener
from .proxy import _forward, _read_request, _send

JSON = [("Content-Type", "application/x-amz-json-1.0")]


class _Node(_Listener):
    def __init__(self, cluster: SkewCluster, index: int, host: str, port: int) -> None:
        super().__init__(host, port)
        self.cluster = cluster
        self.index = index

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        c = self.cluster
        upstream = http.client.HTTPConnection(*c.upstream, timeout=60)
        rfile = conn.makefile("rb")
        try:
            while not self._closing and (req := _read_request(rfile)) is not None:
                method, path, headers, body = req
                if method == "GET":
                    if path.startswith("/localnodes"):
                        _send(conn, 200, JSON, orjson.dumps(c.live))
                    else:
                        _send(conn, 200, [], b"healthy")
                    continue
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                    del headers["content-encoding"]
                    headers["content-length"] = str(len(body))
                op = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
                with c._lock:
                    c._ops[self.index][op] += 1
                if op in ("PutItem", "DeleteItem", "BatchWriteItem"):
                    status, rheaders, rbody = c._write(self.index, upstream, op, headers, body)
                else:
                    status, rheaders, rbody = _forward(upstream, method, path, headers, body)
                _send(conn, status, rheaders, rbody)
        finally:
            upstream.close()
            rfile.close()


class SkewCluster:
    """Nodes with clocks ``clock_offsets_ms`` apart, last write wins per item by node stamp."""

    def __init__(self, upstream: str, clock_offsets_ms: Sequence[int] = (0, -300, 300)) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.offsets_us = [ms * 1000 for ms in clock_offsets_ms]
        self.hosts = [f"127.0.0.{i + 1}" for i in range(len(clock_offsets_ms))]
        self._lock = threading.Lock()
        self._ops: list[Counter[str]] = [Counter() for _ in self.hosts]
        self._stamps: dict[tuple[str, bytes], int] = {}
        self._keys: dict[str, list[str]] = {}
        self.lost = 0  # acknowledged, not applied: an older stamp than the item's newest
        self.applied = 0
        self.lost_keys: set[tuple[str, bytes]] = set()
        self.down: set[int] = set()
        self.listed_while_down: set[int] = set()
        self.nodes: list[_Node] = []
        for _ in range(20):  # a port free on every address
            first = _Node(self, 0, self.hosts[0], 0)
            try:
                rest = [_Node(self, i, h, first.port) for i, h in enumerate(self.hosts) if i]
            except OSError:
                first.sock.close()
                continue
            self.nodes = [first, *rest]
            break
        assert self.nodes, "no port free on all loopback addresses"
        self.port = self.nodes[0].port

    # -- control
    def start(self) -> SkewCluster:
        for n in self.nodes:
            n.start()
        return self

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def live(self) -> list[str]:
        """What /localnodes answers: the nodes not taken down."""
        return [
            h for i, h in enumerate(self.hosts) if i not in self.down or i in self.listed_while_down
        ]

    def take_down(self, i: int, *, still_listed: bool = False) -> None:
        """Node ``i`` stops: its connections are reset and /localnodes no longer lists it
        (``still_listed``: it does, until ``bring_back`` or ``unlist``, as while gossip lags)."""
        if still_listed:
            self.listed_while_down.add(i)
        self.down.add(i)
        self.nodes[i].stop()

    def unlist(self, i: int) -> None:
        """/localnodes stops listing a node taken down with ``still_listed``."""
        self.listed_while_down.discard(i)

    def bring_back(self, i: int) -> None:
        """Node ``i`` listens again on its address (same clock offset) and is listed again."""
        node = _Node(self, i, self.hosts[i], self.port)
        self.nodes[i] = node.start()
        self.down.discard(i)
        self.listed_while_down.discard(i)

    def stop(self) -> None:
        for i, n in enumerate(self.nodes):
            if i not in self.down:
                n.stop()

    def ops(self, op: str = "BatchWriteItem") -> list[int]:
        with self._lock:
            return [c[op] for c in self._ops]

    # -- last write wins by node stamp
    def _stamp(self, i: int) -> int:
        return time.time_ns() // 1000 + self.offsets_us[i]

    def _key_names(
        self, upstream: http.client.HTTPConnection, headers: dict[str, str], t: str
    ) -> list[str]:
        if t not in self._keys:
            h = dict(headers)
            h["x-amz-target"] = "DynamoDB_20120810.DescribeTable"
            body = orjson.dumps({"TableName": t})
            h["content-length"] = str(len(body))
            status, _, data = _forward(upstream, "POST", "/", h, body)
            assert status == 200, data
            schema = orjson.loads(data)["Table"]["KeySchema"]
            self._keys[t] = [k["AttributeName"] for k in schema]
        return self._keys[t]

    def _newer(self, t: str, key: dict[str, Any], stamp: int) -> bool:
        k = (t, orjson.dumps(key, option=orjson.OPT_SORT_KEYS))
        kept = self._stamps.get(k)
        if kept is not None and stamp < kept:
            self.lost += 1
            self.lost_keys.add(k)
            return False
        self._stamps[k] = stamp
        self.applied += 1
        return True

    def _write(
        self,
        i: int,
        upstream: http.client.HTTPConnection,
        op: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        req = orjson.loads(body)
        with self._lock:  # judge and apply as one step: stamps are per item, cluster-wide
            stamp = self._stamp(i)
            if op == "BatchWriteItem":
                keep: dict[str, list[Any]] = {}
                for t, reqs in req["RequestItems"].items():
                    names = self._key_names(upstream, headers, t)
                    for r in reqs:
                        attrs = (
                            r["PutRequest"]["Item"]
                            if "PutRequest" in r
                            else r["DeleteRequest"]["Key"]
                        )
                        if self._newer(t, {n: attrs[n] for n in names}, stamp):
                            keep.setdefault(t, []).append(r)
                if not keep:
                    return 200, JSON, b'{"UnprocessedItems":{}}'
                req["RequestItems"] = keep
            else:
                t = req["TableName"]
                names = self._key_names(upstream, headers, t)
                attrs = req["Item"] if op == "PutItem" else req["Key"]
                if not self._newer(t, {n: attrs[n] for n in names}, stamp):
                    return 200, JSON, b"{}"
            out = orjson.dumps(req)
            h = dict(headers)
            h["content-length"] = str(len(out))
            return _forward(upstream, "POST", "/", h, out)
