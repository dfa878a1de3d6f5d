"""What an operator watches: a snapshot progress bar (items, items/s, segments, ETA).

On a terminal the bar redraws in place on stderr; elsewhere a plain log line every few seconds,
so CI logs and `kubectl logs` stay readable.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

log = logging.getLogger("alternator_migrator.progress")

# Set by the CLI for JSON logs: progress becomes log lines even on a terminal.
PLAIN = False


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class SnapshotProgress:
    def __init__(
        self,
        total_segments: int,
        segments_done: int = 0,
        estimated_items: int | None = None,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.total_segments = total_segments
        self.segments_done = segments_done
        self._seg_start = segments_done
        self.estimated_items = estimated_items or None
        self.items = 0  # copied by this run
        # What the finished segments of earlier runs copied, as the savepoint records segments
        # and not items: their share of the estimate, so the % agrees with "segments n/N".
        self.items_before = (
            int(self.estimated_items * segments_done / total_segments)
            if self.estimated_items and total_segments
            else 0
        )
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() and not PLAIN
        self._interval = interval if interval is not None else (0.5 if self._tty else 10.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_items(self, n: int) -> None:
        with self._lock:
            self.items += n

    def segment_done(self) -> None:
        with self._lock:
            self.segments_done += 1

    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.items / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        with self._lock:
            items, seg = self.items, self.segments_done
        rate = self.rate()
        done = self.items_before + items
        parts = [
            f"{done:,} items" + (f" ({items:,} this run)" if self.items_before else ""),
            f"{rate:,.0f} items/s",
            f"segments {seg}/{self.total_segments}",
        ]
        if self.estimated_items:
            # ItemCount is an estimate (DynamoDB refreshes it every ~6 h): all segments is 100%.
            full = self.total_segments and seg >= self.total_segments
            pct = 100.0 if full else min(99.9, 100.0 * done / self.estimated_items)
            parts.insert(0, f"{pct:5.1f}%")
            if rate > 0:
                left = max(0, self.estimated_items - done)
                parts.append(f"ETA {_fmt_duration(left / rate)}")
        elif self.total_segments and seg > self._seg_start and rate > 0:
            # No item count (moto, Alternator): estimate from the segments this run finished.
            elapsed = time.monotonic() - self._start
            this_run = seg - self._seg_start
            parts.append(f"ETA ~{_fmt_duration(elapsed * (self.total_segments - seg) / this_run)}")
        parts.append(f"elapsed {_fmt_duration(time.monotonic() - self._start)}")
        return "Snapshot: " + " | ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._emit()

    def _emit(self, final: bool = False) -> None:
        if self._tty:
            end = "\n" if final else ""
            self._stream.write("\r\x1b[2K" + self.line() + end)
            self._stream.flush()
        else:
            log.info(self.line())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._emit(final=True)
