"""Process-wide counters and gauges, read by the progress output and the metrics endpoint."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    """Thread-safe named counters (with optional labels) and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._gauges[key] = value

    def counter(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            return self._counters.get(key, 0.0)

    def counters(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """All label sets of one counter."""
        with self._lock:
            return {lbl: v for (n, lbl), v in self._counters.items() if n == name}

    def snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, tuple[tuple[str, str], ...]], float],
        dict[tuple[str, tuple[tuple[str, str], ...]], float],
    ]:
        with self._lock:
            return dict(self._counters), dict(self._gauges)

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._gauges.clear()


METRICS = Metrics()
