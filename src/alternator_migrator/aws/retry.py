"""The one retry helper: jittered exponential backoff, capped by attempts and by time, counted
by cause in the metrics, interrupted at once by the run's stop event, and loud when a call has
been failing (or waiting for its answer) for a while.

Not `stamina`/`tenacity`: both sleep with ``time.sleep`` and offer no hook to wake the sleep
when the run is asked to stop, which is the point of this module (a stop must not wait out a
300 s retry budget). The loop itself is a dozen lines.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from ..errors import Interrupted
from ..metrics import METRICS

log = logging.getLogger(__name__)

# A call unanswered or failing this long is worth one warning line, then one per WARN_EVERY
# (per endpoint and operation, however many threads are at it). WATCH_PERIOD: how often a
# daemon thread looks, so that a hanging endpoint is reported while the request still waits.
WARN_AFTER = 10.0
WARN_EVERY = 30.0
WATCH_PERIOD = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff, bounded by attempts and by total time."""

    base: float = 0.05
    cap: float = 5.0
    max_attempts: int = 60
    deadline: float = 300.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


def wait(stop: threading.Event | None, seconds: float, why: str = "") -> None:
    """Sleep ``seconds``; raise ``Interrupted`` as soon as ``stop`` is set (or if it already is)."""
    if stop is None:
        if seconds > 0:
            time.sleep(seconds)
        return
    if stop.wait(seconds) if seconds > 0 else stop.is_set():
        raise Interrupted(f"stop requested{' while ' + why if why else ''}")


class Backoff:
    """The retry state of one call: ``retry(cause, detail)`` after each failed attempt.

    ``retry`` counts the attempt in ``retries_total{cause, endpoint}``, then sleeps the jittered
    pause and returns True, or returns False when the attempt cap or the deadline is reached
    (the caller raises its own error then). A set stop event raises ``Interrupted``.
    Used as a context manager, the call is watched: see ``WARN_AFTER``.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        stop: threading.Event | None = None,
        endpoint: str = "?",
        url: str = "",
        op: str = "",
        unanswered: bool = True,
    ) -> None:
        self.policy = policy
        # Whether a call still waiting for its first answer is worth a warning. False for loops
        # around calls (unprocessed items) that also wait for the throughput budget.
        self.unanswered = unanswered
        self.stop = stop
        self.endpoint = endpoint
        self.url = url
        self.op = op
        self.attempt = 0
        self.last_cause: str | None = None
        self.start = time.monotonic()
        self._watched: bool | None = None  # None: not used as a context manager

    def __enter__(self) -> Backoff:
        # A call that only warns once it has failed is watched from its first retry: most
        # never fail, and the watch list is one lock shared by every thread.
        self._watched = False
        if self.unanswered:
            self._watch()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watched:
            _unwatch(self)
        self._watched = None

    def _watch(self) -> None:
        self._watched = True
        _watch(self)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def retry(self, cause: str, detail: str) -> bool:
        self.attempt += 1
        self.last_cause = f"{cause}: {detail}"
        if self._watched is False:
            self._watch()
        METRICS.inc("retries_total", cause=cause, endpoint=self.endpoint)
        pause = self.policy.delay(self.attempt)
        if self.attempt >= self.policy.max_attempts or self.elapsed + pause > self.policy.deadline:
            return False
        log.debug("%s %s: %s (attempt %d, retrying)", self.endpoint, self.op, detail, self.attempt)
        wait(self.stop, pause, f"retrying {self.endpoint} {self.op}")
        return True

    def warning(self) -> str:
        where = f"{self.endpoint} endpoint {self.url}: {self.op}"
        if self.last_cause is None:
            return f"{where} has had no answer for {self.elapsed:.0f}s; still waiting"
        return (
            f"{where} has been failing for {self.elapsed:.0f}s ({self.attempt} attempts; "
            f"last: {self.last_cause}); still retrying"
        )


# --------------------------------------------------------------------------- the watchdog

_calls: set[Backoff] = set()
_warned: dict[tuple[str, str, str], float] = {}
_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def _watch(b: Backoff) -> None:
    global _watchdog
    with _lock:
        _calls.add(b)
        if _watchdog is None or not _watchdog.is_alive():
            _watchdog = threading.Thread(target=_watch_loop, name="retry-watchdog", daemon=True)
            _watchdog.start()


def _unwatch(b: Backoff) -> None:
    with _lock:
        _calls.discard(b)


def due_warnings(now: float) -> list[str]:
    """Warning lines for the calls that are due one (and mark them warned)."""
    lines = []
    with _lock:
        for b in sorted(_calls, key=lambda b: b.start):
            if now - b.start < WARN_AFTER or (b.last_cause is None and not b.unanswered):
                continue
            key = (b.endpoint, b.url, b.op)
            last = _warned.get(key)
            if last is not None and now - last < WARN_EVERY:
                continue
            _warned[key] = now
            lines.append(b.warning())
    return lines


_never = threading.Event()


def _watch_loop() -> None:
    while True:
        # An Event's wait, not time.sleep: a test that fakes time.sleep must not make this spin.
        _never.wait(WATCH_PERIOD)
        for line in due_warnings(time.monotonic()):
            log.warning("%s", line)
