"""Alternator node discovery and client-side load balancing.

A ScyllaDB cluster is many Alternator nodes; sending every request to the configured one makes
it the bottleneck and a single point of failure. Alternator answers ``GET /localnodes`` with a
JSON array of the live nodes of the local datacenter (``?dc=`` / ``?rack=`` pick another), as
ScyllaDB's own load-balancing clients use it. This module polls it and hands out one keep-alive
pool per node, round-robin, with the configured scheme, port and path. A node that stops
answering is dropped until /localnodes lists it again. An endpoint that does not serve
/localnodes (DynamoDB, moto: 404; dynalite answers its health text) is used as one node.

Reads round-robin over the live nodes. Writes do not: ScyllaDB without LWT keeps, per item,
the write with the newest timestamp, stamped by the node that received it from its own clock,
so two writes of one item through two nodes whose clocks disagree can land in the wrong order
(the later one acknowledged and silently lost). ``KeyAffinity`` sends every write of one item to
one node: rendezvous (highest-random-weight) hashing of the item's partition key over the live
nodes, so a node leaving or joining moves only its share of the keys; and a key that moves
waits ``clockSkewGuardMs`` after the last write the old node took for it (docs/runbook.md).

It lives in the lean transport rather than in the PyPI ``alternator-client`` (which drives
boto3, whose parsing costs ~8x our client CPU per item): see docs/performance.md.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import urlencode, urlsplit

import orjson

from ..config import AlternatorSettings
from .transport import HttpPool, TransportError

log = logging.getLogger(__name__)

# ScyllaDB's load-balancing clients poll every second while requests flow, and rarely when idle.
DEFAULT_ACTIVE_REFRESH_MS = 1_000
DEFAULT_IDLE_REFRESH_MS = 60_000
_DISCOVERY_TIMEOUT = 5.0
_PROBE_TIMEOUT = 2.0
DEFAULT_CLOCK_SKEW_GUARD_MS = 1_000
# Test-only switch: writes round-robin over the nodes as reads do (the behaviour before key
# affinity), so that a test can show the lost writes affinity prevents. Never for real runs.
ROUND_ROBIN_WRITES_ENV = "ALTERNATOR_MIGRATOR_TEST_ROUND_ROBIN_WRITES"

# --------------------------------------------------------------------------- key affinity
# A key's partition-key bytes fall in one of BUCKETS buckets (crc32: a C call, ~0.1 us); each
# bucket has its rendezvous owner among the live nodes, computed once per node set. So the hot
# path is a crc32 and a list index, and a node joining or leaving moves only its buckets.
BUCKETS = 4096
N = TypeVar("N", bound=Hashable)


def key_bucket(key: bytes) -> int:
    return zlib.crc32(key) & (BUCKETS - 1)


def _owners(names: Sequence[str]) -> list[int]:
    """Per bucket, the index of the node with the highest rendezvous weight."""
    if len(names) == 1:
        return [0] * BUCKETS
    hashers = [hashlib.blake2b(digest_size=8, key=n.encode()[:64]) for n in names]
    owners = []
    for b in range(BUCKETS):
        data = b.to_bytes(2, "big")
        best, at = b"", 0
        for i, h in enumerate(hashers):
            c = h.copy()
            c.update(data)
            d = c.digest()
            if d > best:
                best, at = d, i
        owners.append(at)
    return owners


@dataclass(eq=False)
class Epoch(Generic[N]):
    """One live node set: who owns each bucket, and the writes sent while it was current."""

    nodes: tuple[N, ...]
    owners: list[int]
    inflight: dict[N, int] = field(default_factory=dict)
    last_done: dict[N, float] = field(default_factory=dict)
    held: bool = False  # a write was held under this node set (logged once)

    def owner(self, bucket: int) -> N:
        return self.nodes[self.owners[bucket]]


@dataclass(frozen=True)
class Route(Generic[N]):
    """Writes for one node under one node set. ``hold_until`` (monotonic seconds): not before
    then (0: at once; inf: an old node still has one of these keys in flight, look again)."""

    epoch: Epoch[N]
    node: N
    indices: list[int]
    hold_until: float


class KeyAffinity(Generic[N]):
    """Which node writes a key, and when a key that moved may be written again.

    ``set_nodes`` starts a new epoch when the live set changes. Earlier epochs are kept while a
    write they routed is in flight or finished less than ``guard`` seconds ago: a key whose owner
    differs in such an epoch waits until ``guard`` after the last write that epoch's owner
    finished (tracked per node and epoch, not per key: conservative, and no memory per key)."""

    def __init__(
        self,
        guard: float,
        name: Callable[[N], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guard = guard
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self.current: Epoch[N] | None = None
        self._old: list[Epoch[N]] = []
        self.held = 0  # routes that had to wait for a key that moved

    def set_nodes(self, nodes: Sequence[N]) -> bool:
        """A new live node set; True when it differs from the current one (keys move)."""
        with self._lock:
            cur = self.current
            if cur is not None and set(cur.nodes) == set(nodes):
                return False
        ordered = tuple(sorted(nodes, key=self._name))
        epoch: Epoch[N] = Epoch(ordered, _owners([self._name(n) for n in ordered]))
        with self._lock:
            if self.current is not None:
                self._old.append(self.current)
            self.current = epoch
        return True

    def owner(self, key: bytes) -> N:
        cur = self.current
        assert cur is not None
        return cur.owner(key_bucket(key))

    def route(self, keys: Sequence[bytes]) -> list[Route[N]]:
        """Group ``keys`` (partition-key wire bytes) by their node, with each group's hold."""
        cur = self.current
        assert cur is not None, "no live node set yet"
        buckets = [zlib.crc32(k) & (BUCKETS - 1) for k in keys]
        groups: dict[int, list[int]] = {}
        owners = cur.owners
        for i, b in enumerate(buckets):
            groups.setdefault(owners[b], []).append(i)
        old = self._live_history()
        out = []
        for at, idx in groups.items():
            node = cur.nodes[at]
            hold = 0.0
            for ep in old:  # empty while the node set is stable
                for i in idx:
                    prev = ep.owner(buckets[i])
                    if prev != node:
                        hold = max(hold, self._busy_until(ep, prev))
            out.append(Route(cur, node, idx, hold))
        return out

    def _busy_until(self, ep: Epoch[N], node: N) -> float:
        with self._lock:
            if ep.inflight.get(node, 0) > 0:
                return math.inf
            done = ep.last_done.get(node)
        return 0.0 if done is None else done + self.guard

    def _live_history(self) -> list[Epoch[N]]:
        """Earlier epochs that may still hold a key back (the others are forgotten)."""
        if not self._old:
            return []
        now = self._clock()
        with self._lock:
            self._old = [
                ep
                for ep in self._old
                if any(ep.inflight.values())
                or any(t + self.guard > now for t in ep.last_done.values())
            ]
            return list(self._old)

    def settled(self, epoch: Epoch[N]) -> bool:
        """``epoch`` is current and no earlier node set can hold a key back (as far as known:
        ``begin`` still checks the epoch)."""
        return epoch is self.current and not (self._old and self._live_history())

    def first_hold(self, route: Route[N]) -> bool:
        """True the first time a write routed under this node set is held (to log it once)."""
        with self._lock:
            self.held += 1
            first, route.epoch.held = not route.epoch.held, True
            return first

    def begin(self, route: Route[N]) -> bool:
        """Count a write as sent; False when the node set changed since it was routed."""
        with self._lock:
            if route.epoch is not self.current:
                return False
            inflight = route.epoch.inflight
            inflight[route.node] = inflight.get(route.node, 0) + 1
            return True

    def end(self, route: Route[N]) -> None:
        """The write is answered (or failed): its node may have stamped it until now."""
        with self._lock:
            ep = route.epoch
            ep.inflight[route.node] -= 1
            ep.last_done[route.node] = self._clock()

    def describe(self) -> str:
        cur = self.current
        n = len(cur.nodes) if cur is not None else 0
        return f"key affinity over {n} node{'s' if n != 1 else ''}, clock-skew guard " + (
            f"{self.guard * 1000:.0f} ms"
        )


class SingleNode:
    """The router of an endpoint that is one node (AWS, dynalite, any non-Alternator server)."""

    write_affinity = None

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool

    def is_live(self, pool: HttpPool) -> bool:
        return True

    def mark_busy(self) -> None:
        pass

    def pick(self) -> HttpPool:
        return self.pool

    def failed(self, pool: HttpPool, reason: str) -> bool:
        """Whether another node may take the request at once (never, here)."""
        return False

    def pools(self) -> list[HttpPool]:
        return [self.pool]

    def close(self) -> None:
        self.pool.close()


class AlternatorNodes:
    """Round-robin over the live nodes /localnodes lists, refreshed in the background."""

    def __init__(
        self,
        url: str,
        settings: AlternatorSettings,
        make_pool: Callable[[str], HttpPool],
        label: str,
    ) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path
        self.label = label
        self.settings = settings
        self._make_pool = make_pool
        self.seed = make_pool(url)
        self._by_url: dict[str, HttpPool] = {url: self.seed}
        self._live: list[HttpPool] = [self.seed]
        self._dropped: set[HttpPool] = set()  # failed nodes, out until they answer again
        guard = settings.clock_skew_guard_ms
        self.affinity: KeyAffinity[HttpPool] = KeyAffinity(
            (DEFAULT_CLOCK_SKEW_GUARD_MS if guard is None else guard) / 1000,
            name=lambda p: p.netloc,
        )
        self.affinity.set_nodes(self._live)
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._busy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        query = {k: v for k, v in (("dc", settings.datacenter), ("rack", settings.rack)) if v}
        self._localnodes = "/localnodes" + (f"?{urlencode(query)}" if query else "")
        self.round_robin_writes = os.environ.get(ROUND_ROBIN_WRITES_ENV, "") == "1"
        if self.refresh() is False:
            return  # not an Alternator endpoint: nothing to poll
        if self.round_robin_writes:
            log.warning(
                "%s: %s=1: writes round-robin over the nodes (TEST ONLY: writes of one item may "
                "be applied out of order)",
                label,
                ROUND_ROBIN_WRITES_ENV,
            )
        self._thread = threading.Thread(target=self._run, name=f"{label}-localnodes", daemon=True)
        self._thread.start()

    # -- the hot path: one modulo and a list index
    def pick(self) -> HttpPool:
        self._busy = True
        live = self._live
        return live[next(self._turn) % len(live)]

    @property
    def write_affinity(self) -> KeyAffinity[HttpPool] | None:
        """Key affinity for writes: None for one plain endpoint (or the test switch)."""
        if self._thread is None or self.round_robin_writes:
            return None
        return self.affinity

    def is_live(self, pool: HttpPool) -> bool:
        return pool in self._live

    def mark_busy(self) -> None:
        """A request went to a node chosen by key affinity: keep the node list fresh."""
        self._busy = True

    def failed(self, pool: HttpPool, reason: str) -> bool:
        """Drop a node that stopped answering; True when another live node can take over."""
        with self._lock:
            if pool in self._live and len(self._live) > 1:
                self._live = [p for p in self._live if p is not pool]
                self._dropped.add(pool)
                self.affinity.set_nodes(self._live)
                log.warning(
                    "%s node %s stopped answering (%s); routing around it until /localnodes "
                    "lists it again",
                    self.label,
                    pool.netloc,
                    reason,
                )
            return bool(self._live) and self._live != [pool]

    def pools(self) -> list[HttpPool]:
        return list(self._by_url.values())

    def live_nodes(self) -> list[str]:
        return [p.netloc for p in self._live]

    def _node_url(self, host: str) -> str:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def refresh(self) -> bool | None:
        """Ask a live node (else the seed) for /localnodes. False: the endpoint does not serve
        it; None: no node answered (keep what we have); True: the node list was updated."""
        askers = [*self._live, self.seed] if self.seed not in self._live else list(self._live)
        for pool in askers:
            try:
                resp = pool.get(self._localnodes, timeout=_DISCOVERY_TIMEOUT)
            except TransportError as e:
                log.debug("%s /localnodes from %s failed: %s", self.label, pool.netloc, e)
                continue
            nodes = _parse(resp.body) if resp.status == 200 else None
            if nodes is None:
                if self._thread is None:  # first contact: a plain DynamoDB-API endpoint
                    log.info(
                        "%s endpoint %s does not serve /localnodes (HTTP %d%s); using it as a "
                        "single node",
                        self.label,
                        pool.netloc,
                        resp.status,
                        ", not a list of nodes" if resp.status == 200 else "",
                    )
                    return False
                continue
            if not nodes:
                return None
            self._set_nodes(nodes)
            return True
        return None

    def _answers(self, pool: HttpPool) -> bool:
        try:
            pool.get("/", timeout=_PROBE_TIMEOUT)  # Alternator's health check; any answer will do
        except TransportError:
            return False
        return True

    def _set_nodes(self, hosts: list[str]) -> None:
        with self._lock:
            listed: list[HttpPool] = []
            for host in hosts:
                url = self._node_url(host)
                pool = self._by_url.get(url)
                if pool is None:
                    pool = self._by_url[url] = self._make_pool(url)
                listed.append(pool)
        # A node dropped for not answering comes back once it answers again, not merely when
        # /localnodes lists it (gossip may list a dead node for seconds): re-adding it at every
        # refresh would move its keys back and forth, each move held by the clock-skew guard.
        back = {p for p in listed if p in self._dropped and self._answers(p)}
        with self._lock:
            self._dropped -= back
            live = [p for p in listed if p not in self._dropped] or self._live
            if [p.netloc for p in live] != [p.netloc for p in self._live]:
                log.info("%s nodes: %s", self.label, ", ".join(p.netloc for p in live))
            self._live = live
            self.affinity.set_nodes(live)
        # Close the idle connections of nodes that left (they keep their pool for a return).
        for pool in self._by_url.values():
            if pool not in live:
                pool.close()

    def _run(self) -> None:
        # Wake every active interval; refresh if requests flowed since the last refresh, or
        # once the idle interval has passed.
        active = (self.settings.active_refresh_interval_ms or DEFAULT_ACTIVE_REFRESH_MS) / 1000
        idle = (self.settings.idle_refresh_interval_ms or DEFAULT_IDLE_REFRESH_MS) / 1000
        last = time.monotonic()
        while not self._stop.wait(active):
            if not self._busy and time.monotonic() - last < idle:
                continue
            self._busy = False
            last = time.monotonic()
            try:
                self.refresh()
            except Exception:  # the poller must outlive any surprise; requests go on
                log.exception("%s node discovery failed", self.label)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=_DISCOVERY_TIMEOUT + 1)
        for pool in self._by_url.values():
            pool.close()


def _parse(body: bytes | bytearray) -> list[str] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, list) or not all(isinstance(h, str) and h for h in data):
        return None
    return [str(h) for h in data]
