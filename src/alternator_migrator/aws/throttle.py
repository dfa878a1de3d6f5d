"""Client-side capacity budgets.

Alternator returns no ConsumedCapacity and never throttles, so the budget cannot rely on the
server: callers reserve an estimate before a request and settle the difference afterwards when
the server does report what it consumed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson

from ..config import ON_DEMAND_DEFAULT_CAPACITY
from .retry import wait


class RateLimiter:
    """A token bucket that may go into debt: a large request waits for its own cost."""

    def __init__(self, rate: float | None, burst_seconds: float = 1.0) -> None:
        self.rate = rate
        self._burst = (rate or 0.0) * burst_seconds
        self._tokens = self._burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate is None

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self, units: float, stop: threading.Event | None = None) -> float:
        """Reserve ``units``; sleeps until the bucket has paid for them. Returns the wait.

        A set ``stop`` ends the wait at once with ``Interrupted``: with a low budget the wait
        for one large batch can be minutes. The reservation stays spent (the next run starts
        with a fresh bucket anyway)."""
        if self.rate is None or units <= 0:
            return 0.0
        with self._lock:
            self._refill(time.monotonic())
            self._tokens -= units
            pause = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if pause > 0:
            wait(stop, pause, "waiting for the throughput budget")
        return pause

    def settle(self, delta: float) -> None:
        """Charge (positive) or refund (negative) the difference to a reservation."""
        if self.rate is None or delta == 0:
            return
        with self._lock:
            self._refill(time.monotonic())
            self._tokens -= delta
            self._tokens = min(self._tokens, self._burst)


class SharedCap(RateLimiter):
    """A table's own budget under a cap that several tables share: each request pays both."""

    def __init__(self, own: RateLimiter, shared: RateLimiter) -> None:
        rates = [r for r in (own.rate, shared.rate) if r is not None]
        super().__init__(min(rates) if rates else None)
        self.own, self.shared = own, shared

    @property
    def unlimited(self) -> bool:
        return self.own.unlimited and self.shared.unlimited

    def acquire(self, units: float, stop: threading.Event | None = None) -> float:
        return self.own.acquire(units, stop) + self.shared.acquire(units, stop)

    def settle(self, delta: float) -> None:
        self.own.settle(delta)
        self.shared.settle(delta)


def table_capacity(desc: dict[str, Any], units: str, server_type: str) -> int:
    """A table's provisioned ``ReadCapacityUnits`` or ``WriteCapacityUnits``, the base of its
    default budget. On-demand tables report 0, and Alternator accepts and ignores provisioning:
    both get the on-demand default, as the Scylla Migrator assumes."""
    provisioned = int(desc.get("ProvisionedThroughput", {}).get(units) or 0)
    if server_type == "alternator" or not provisioned:
        return ON_DEMAND_DEFAULT_CAPACITY
    return provisioned


def budget(
    configured: int | None,
    percent: float | None,
    provisioned: int | None,
    default_percent: float = 0.5,
) -> float | None:
    """Units/s: ``configured`` (else the table's provisioned capacity) x ``percent``.

    ``None`` means unlimited, which only happens when neither is known.
    """
    base = configured if configured is not None else provisioned
    if base is None:
        return None
    return base * (percent if percent is not None else default_percent)


def charge_read(
    limiter: RateLimiter,
    resp: dict[str, Any],
    items: Any,
    consistent: bool,
    stop: threading.Event | None = None,
    wire_bytes: int | None = None,
) -> None:
    """Pay for a read: the server's ConsumedCapacity, or, where it reports none (Alternator),
    what the bytes read would cost (4 KB per unit, half for eventually consistent reads).
    ``wire_bytes``: the size of ``items`` as read, when the caller has it (items kept as
    bytes are not encoded again to measure them)."""
    cc = resp.get("ConsumedCapacity")
    if isinstance(cc, dict):
        used: float | None = float(cc.get("CapacityUnits") or 0)
    elif isinstance(cc, list) and cc:
        used = sum(float(c.get("CapacityUnits") or 0) for c in cc)
    else:
        used = None
    if used is None:
        if limiter.unlimited:
            return
        size = len(orjson.dumps(items)) if wire_bytes is None else wire_bytes
        used = size / 4096 * (1.0 if consistent else 0.5)
    limiter.acquire(used, stop)
