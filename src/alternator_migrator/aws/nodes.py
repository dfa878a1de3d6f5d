"""Alternator node discovery and client-side load balancing.

A ScyllaDB cluster is many Alternator nodes; sending every request to the configured one makes
it the bottleneck and a single point of failure. Alternator answers ``GET /localnodes`` with a
JSON array of the live nodes of the local datacenter (``?dc=`` / ``?rack=`` pick another), as
ScyllaDB's own load-balancing clients use it. This module polls it and hands out one keep-alive
pool per node, round-robin, with the configured scheme, port and path. A node that stops
answering is dropped until /localnodes lists it again. An endpoint that does not serve
/localnodes (DynamoDB, moto: 404; dynalite answers its health text) is used as one node.

It lives in the lean transport rather than in the PyPI ``alternator-client`` (which drives
boto3, whose parsing costs ~8x our client CPU per item): see docs/performance.md.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import orjson

from ..config import AlternatorSettings
from .transport import HttpPool, TransportError

log = logging.getLogger(__name__)

# ScyllaDB's load-balancing clients poll every second while requests flow, and rarely when idle.
DEFAULT_ACTIVE_REFRESH_MS = 1_000
DEFAULT_IDLE_REFRESH_MS = 60_000
_DISCOVERY_TIMEOUT = 5.0


class SingleNode:
    """The router of an endpoint that is one node (AWS, dynalite, any non-Alternator server)."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool

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
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._busy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        query = {k: v for k, v in (("dc", settings.datacenter), ("rack", settings.rack)) if v}
        self._localnodes = "/localnodes" + (f"?{urlencode(query)}" if query else "")
        if self.refresh() is False:
            return  # not an Alternator endpoint: nothing to poll
        self._thread = threading.Thread(target=self._run, name=f"{label}-localnodes", daemon=True)
        self._thread.start()

    # -- the hot path: one modulo and a list index
    def pick(self) -> HttpPool:
        self._busy = True
        live = self._live
        return live[next(self._turn) % len(live)]

    def failed(self, pool: HttpPool, reason: str) -> bool:
        """Drop a node that stopped answering; True when another live node can take over."""
        with self._lock:
            if pool in self._live and len(self._live) > 1:
                self._live = [p for p in self._live if p is not pool]
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

    def _set_nodes(self, hosts: list[str]) -> None:
        with self._lock:
            live: list[HttpPool] = []
            for host in hosts:
                url = self._node_url(host)
                pool = self._by_url.get(url)
                if pool is None:
                    pool = self._by_url[url] = self._make_pool(url)
                live.append(pool)
            if [p.netloc for p in live] != [p.netloc for p in self._live]:
                log.info("%s nodes: %s", self.label, ", ".join(p.netloc for p in live))
            self._live = live
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


def _parse(body: bytes) -> list[str] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, list) or not all(isinstance(h, str) and h for h in data):
        return None
    return [str(h) for h in data]
