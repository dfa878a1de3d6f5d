"""Live counts from running snapshot tasks to the driver, over UDP.

A segment's task returns its counts only when it ends, which can take many minutes; PySpark
accumulators also arrive only with the finished task. So each task sends its running totals
(items copied, items scanned) to the driver about once a second, and the driver adds the growth
to its progress bar and metrics. Best effort by design: a lost datagram only delays the
numbers, and the task's own result, which the driver reconciles against what was reported,
stays the authority.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable

import orjson

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between a task's reports

Address = tuple[str, int]


class LiveCounts:
    """The driver's end: running totals per task token, growth passed to ``on_growth``."""

    def __init__(self, host: str, on_growth: Callable[[int, int], None]) -> None:
        self.on_growth = on_growth
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.5)
        self.address: Address = (host, self._sock.getsockname()[1])
        self._lock = threading.Lock()
        self._open: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spark-live-counts", daemon=True)
        self._thread.start()

    def open(self, segment: int) -> str:
        token = f"{segment}-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._open[token] = (0, 0)
        return token

    def close(self, token: str) -> tuple[int, int]:
        """What was reported for ``token`` (copied, scanned); later datagrams are ignored."""
        with self._lock:
            return self._open.pop(token, (0, 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(512)
                token, copied, scanned = orjson.loads(data)
            except (TimeoutError, OSError, ValueError):
                continue
            with self._lock:
                before = self._open.get(token)
                if before is None:
                    continue
                # A retried task starts again from 0: count only growth past what was shown.
                grow = (max(0, int(copied) - before[0]), max(0, int(scanned) - before[1]))
                self._open[token] = (before[0] + grow[0], before[1] + grow[1])
            if grow != (0, 0):
                self.on_growth(*grow)

    def close_all(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


class Reporter:
    """The executor's end: sends ``counts()`` for ``token`` every INTERVAL until stopped."""

    def __init__(self, address: Address, token: str, counts: Callable[[], tuple[int, int]]):
        self.address, self.token, self.counts = address, token, counts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-report", daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self._stop.wait(INTERVAL):
                try:
                    sock.sendto(orjson.dumps([self.token, *self.counts()]), self.address)
                except OSError as e:  # unreachable driver: the task's result still counts
                    log.debug("live count not sent: %s", e)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
