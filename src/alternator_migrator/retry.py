"""The one retry helper: jittered exponential backoff, capped by attempts and by time, counted
by cause in the metrics, interrupted at once by the run's stop event, and loud when a call has
been failing for a while.

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

from .errors import Interrupted
from .metrics import METRICS

log = logging.getLogger(__name__)

# A call that keeps failing this long is worth one warning line, then one per WARN_EVERY.
WARN_AFTER = 10.0
WARN_EVERY = 30.0


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


# One warning per endpoint and operation per WARN_EVERY, however many threads are retrying.
_warned: dict[tuple[str, str], float] = {}
_warned_lock = threading.Lock()


def _should_warn(key: tuple[str, str], now: float) -> bool:
    with _warned_lock:
        last = _warned.get(key)
        if last is not None and now - last < WARN_EVERY:
            return False
        _warned[key] = now
        return True


class Backoff:
    """The retry state of one call: ``retry(cause, detail)`` after each failed attempt.

    ``retry`` counts the attempt in ``retries_total{cause, endpoint}``, then sleeps the jittered
    pause and returns True, or returns False when the attempt cap or the deadline is reached
    (the caller raises its own error then). A set stop event raises ``Interrupted``.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        stop: threading.Event | None = None,
        endpoint: str = "?",
        url: str = "",
        op: str = "",
    ) -> None:
        self.policy = policy
        self.stop = stop
        self.endpoint = endpoint
        self.url = url
        self.op = op
        self.attempt = 0
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def retry(self, cause: str, detail: str) -> bool:
        self.attempt += 1
        METRICS.inc("retries_total", cause=cause, endpoint=self.endpoint)
        pause = self.policy.delay(self.attempt)
        elapsed = self.elapsed
        if self.attempt >= self.policy.max_attempts or elapsed + pause > self.policy.deadline:
            return False
        now = time.monotonic()
        if elapsed >= WARN_AFTER and _should_warn((self.endpoint + self.url, self.op), now):
            log.warning(
                "%s endpoint %s: %s has been failing for %.0fs (%d attempts; %s: %s); still retrying",
                self.endpoint,
                self.url,
                self.op,
                elapsed,
                self.attempt,
                cause,
                detail,
            )
        else:
            log.debug(
                "%s %s: %s (attempt %d, retrying)", self.endpoint, self.op, detail, self.attempt
            )
        wait(self.stop, pause, f"retrying {self.endpoint} {self.op}")
        return True
