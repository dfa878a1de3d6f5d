"""The snapshot: units of a source (Scan segments, export data files) read in parallel,
pipelined into batched writes on the target.

Reader threads (at most ``maxMapTasks``) cut each page into BatchWriteItem-sized batches on a
bounded queue; writer threads drain it. Memory stays flat however large the table: at most one
page per scanner plus the queued batches are in flight. A segment's position advances only
over pages whose every batch the target acknowledged, in page order, so the
savepoint never claims an item that was not written.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..aws.client import DynamoClient
from ..aws.throttle import RateLimiter, budget, charge_read, table_capacity
from ..config.model import Config
from ..errors import ConfigError, Interrupted
from ..metrics import METRICS
from ..progress import SnapshotProgress
from ..state.savepoint import Savepoint
from ..target.sink import Sink

log = logging.getLogger(__name__)

SEGMENT_BYTES = 128 * 1024 * 1024  # the Scylla Migrator's default split size
DEFAULT_MIN_SEGMENTS = 8
DEFAULT_MAX_WORKERS = 8


@dataclass(frozen=True)
class ScanPlan:
    total_segments: int
    workers: int
    writers: int
    read_rate: float | None  # RCU/s; None: unlimited


def plan_scan(cfg: Config, src: dict[str, Any], saved_segments: int | None = None) -> ScanPlan:
    s = cfg.source
    if saved_segments is not None:
        total = saved_segments  # a resumed scan must keep its segment boundaries
    elif s.scan_segments is not None:
        total = s.scan_segments
    else:
        size = int(src.get("TableSizeBytes") or 0)
        total = max(DEFAULT_MIN_SEGMENTS, math.ceil(size / SEGMENT_BYTES))
    workers = min(total, s.max_map_tasks or DEFAULT_MAX_WORKERS)
    writers = cfg.target.max_map_tasks or max(2, min(16, workers * 2))
    rcu = table_capacity(src, "ReadCapacityUnits", s.type)
    return ScanPlan(
        total, workers, writers, budget(s.read_throughput, s.throughput_read_percent, rcu)
    )


class SnapshotSource(Protocol):
    """What the copier reads: numbered units, each a sequence of pages. A unit's position is
    opaque to the copier; the savepoint records it per unit once the target acknowledged the
    page it ends, and a finished unit is never read again."""

    kind: str  # what a unit is, for the log ("segment", "data file")

    @property
    def units(self) -> int: ...

    def pages(
        self, unit: int, start: Any, stop: threading.Event
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """(items, position after them) per page from ``start`` (None: the unit's beginning);
        the unit's last page has position None."""
        ...


class ScanSource:
    """Scan segments of the source table, within its read budget."""

    kind = "segment"

    def __init__(self, source: DynamoClient, cfg: Config, plan: ScanPlan) -> None:
        self.source = source
        self.table = cfg.source.table
        self.consumed_capacity = not cfg.source.remove_consumed_capacity
        self.total = plan.total_segments
        self.read_limiter = RateLimiter(plan.read_rate)

    @property
    def units(self) -> int:
        return self.total

    def pages(
        self, unit: int, start: Any, stop: threading.Event
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        start_key = start
        while not stop.is_set():  # no Scan request after a stop
            req: dict[str, Any] = {
                "TableName": self.table,
                "Segment": unit,
                "TotalSegments": self.total,
            }
            if self.consumed_capacity:
                req["ReturnConsumedCapacity"] = "TOTAL"
            if start_key is not None:
                req["ExclusiveStartKey"] = start_key
            resp = self.source.call("Scan", req)
            items: list[dict[str, Any]] = resp.get("Items", [])
            charge_read(self.read_limiter, resp, items, consistent=False, stop=stop)
            METRICS.inc("items_scanned_total", len(items))
            start_key = resp.get("LastEvaluatedKey")
            yield items, start_key
            if start_key is None:
                return


@dataclass
class _Segment:
    number: int
    next_page: int = 0  # pages handed to writers
    committed: int = 0  # pages acknowledged in order
    acked: dict[int, Any] = field(default_factory=dict)  # page -> LastEvaluatedKey (None: last)


@dataclass
class _Page:
    segment: _Segment
    number: int
    size: int  # items on the page
    last_key: Any
    pending: int  # batches not yet acknowledged by the target


# A writer's unit of work: one BatchWriteItem's worth of a page. Pages are split so that the
# queue bounds memory in items, not in (up to 1 MB) pages, and all writers share a page.
_Batch = tuple[_Page, list[dict[str, Any]]]


class _Abort(Exception):
    pass


class Checkpointer(Protocol):
    """Keeps the progress the copier records in its Savepoint (a SavepointStore writes it to
    disk; a Spark task keeps it in memory and returns it to the driver)."""

    def save(self, sp: Savepoint) -> None: ...

    def maybe_save(self, sp: Savepoint) -> bool: ...


class InMemory:
    """A Checkpointer that keeps nothing beyond the Savepoint object itself."""

    def save(self, sp: Savepoint) -> None:
        return None

    def maybe_save(self, sp: Savepoint) -> bool:
        return False


class SnapshotCopier:
    def __init__(
        self,
        source: DynamoClient,
        sink: Sink,
        cfg: Config,
        plan: ScanPlan,
        store: Checkpointer,
        savepoint: Savepoint,
        stop: threading.Event,
        progress: SnapshotProgress | None = None,
        *,
        expired: Callable[[dict[str, Any]], bool] | None = None,
        units: SnapshotSource | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.cfg = cfg
        self.plan = plan
        self.store = store
        self.sp = savepoint
        self.stop = stop
        self.progress = progress
        self.units: SnapshotSource = units or ScanSource(source, cfg, plan)
        self.batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=plan.writers * 2)
        self.segments: queue.Queue[int] = queue.Queue()
        self.errors: list[BaseException] = []
        self._failed = threading.Event()
        self.expired = expired  # TTL already passed: not copied
        self.skipped_expired = 0
        # Guards the pages and the Savepoint; saves run under it too, so a save never reads
        # the Savepoint while a writer changes it.
        self._lock = threading.RLock()

    # -- reading
    def _scan_segment(self, seg: _Segment) -> None:
        start = self.sp.segment_keys.get(seg.number)
        for items, start_key in self.units.pages(seg.number, start, self.stop):
            if self.stop.is_set() or self._failed.is_set():
                raise _Abort()
            if self.expired is not None:
                items = self._drop_expired(items)
            # Full batches per node (key affinity), so splitting costs no batch size.
            chunks = self.sink.split_items(items)
            page = _Page(seg, seg.next_page, len(items), start_key, len(chunks))
            seg.next_page += 1
            if not chunks:
                self._ack(page)  # an empty page still moves the segment's position
            for chunk in chunks:
                self._put((page, chunk))
            if start_key is None:
                return
        if self.stop.is_set() or self._failed.is_set():
            raise _Abort()

    def _drop_expired(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.expired is not None
        live = [it for it in items if not self.expired(it)]
        if len(live) != len(items):
            with self._lock:
                self.skipped_expired += len(items) - len(live)
            METRICS.inc("items_expired_skipped_total", len(items) - len(live))
        return live

    def _put(self, batch: _Batch) -> None:
        while True:
            # Stopped: the rest of this page is not queued, so the page is never acknowledged
            # and its segment resumes from the last fully written page.
            if self._failed.is_set() or self.stop.is_set():
                raise _Abort()
            try:
                self.batches.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue

    def _scanner(self) -> None:
        try:
            while not self.stop.is_set() and not self._failed.is_set():
                try:
                    n = self.segments.get_nowait()
                except queue.Empty:
                    return
                self._scan_segment(_Segment(n))
        except (_Abort, Interrupted):
            return
        except BaseException as e:
            self._fail(e)

    # -- writing
    def _writer(self) -> None:
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            if self._failed.is_set() or self.stop.is_set():
                # Keep draining until the end marker; nothing more is written or acknowledged.
                # After a stop, batches already queued are not written: with a low write budget
                # they could take minutes, and their pages are scanned again on resume.
                continue
            page, items = batch
            try:
                self.sink.put_items(items)
                with self._lock:
                    page.pending -= 1
                    done = page.pending == 0
                if done:
                    self._ack(page)
            except Interrupted:
                continue  # stopped while waiting for budget or a retry: not acknowledged
            except BaseException as e:
                self._fail(e)

    def _ack(self, page: _Page) -> None:
        seg = page.segment
        finished = False
        with self._lock:
            seg.acked[page.number] = page.last_key
            while seg.committed in seg.acked:
                key = seg.acked.pop(seg.committed)
                seg.committed += 1
                if key is None:
                    self.sp.segments_done.add(seg.number)
                    self.sp.segment_keys.pop(seg.number, None)
                    finished = True
                else:
                    self.sp.segment_keys[seg.number] = key
            self.store.maybe_save(self.sp)
        if self.progress is not None:
            self.progress.add_items(page.size)
            if finished:
                self.progress.segment_done()
        METRICS.inc("items_copied_total", page.size)
        if finished:
            METRICS.inc("segments_done_total")

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            self.errors.append(e)
        self._failed.set()

    def run(self, segments: list[int] | None = None) -> bool:
        """Copy every unfinished segment (or only the unfinished ones of ``segments``, as a Spark
        task does). True when the whole snapshot is complete."""
        wanted = range(self.plan.total_segments) if segments is None else segments
        skip = skipped_segments(self.cfg, self.plan.total_segments)
        todo = [n for n in wanted if n not in self.sp.segments_done and n not in skip]
        if skip and segments is None:
            log.info("Skipping segments %s (skipSegments)", ", ".join(map(str, sorted(skip))))
        for n in todo:
            self.segments.put(n)
        METRICS.set("segments_total", self.plan.total_segments)
        partial = sum(1 for n in todo if n in self.sp.segment_keys)
        done_before = sum(1 for n in wanted if n in self.sp.segments_done)
        # A resume, also when only partly copied segments were saved (a kill in the first
        # pages) or every one was (a kill just before the savepoint said the snapshot is done).
        if segments is None and (done_before or partial):
            log.info(
                "Resuming snapshot: %d of %d %ss already done, %d partially",
                done_before,
                self.plan.total_segments,
                self.units.kind,
                partial,
            )
        scanners = [
            threading.Thread(target=self._scanner, name=f"scan-{i}", daemon=True)
            for i in range(min(self.plan.workers, max(1, len(todo))))
        ]
        writers = [
            threading.Thread(target=self._writer, name=f"write-{i}", daemon=True)
            for i in range(self.plan.writers)
        ]
        for t in scanners + writers:
            t.start()
        for t in scanners:
            t.join()
        for _ in writers:
            self.batches.put(None)
        for t in writers:
            t.join()
        with self._lock:
            self.store.save(self.sp)
        if self.skipped_expired:
            log.info(
                "Skipped %d expired items (their TTL attribute is in the past)",
                self.skipped_expired,
            )
        if self.errors:
            raise self.errors[0]
        return len(self.sp.segments_done | skip) >= self.plan.total_segments


def skipped_segments(cfg: Config, total_segments: int) -> set[int]:
    """The segments ``skipSegments`` names; they count as done (as in the Scylla Migrator)."""
    beyond = [n for n in cfg.skip_segments if n >= total_segments]
    if beyond:
        raise ConfigError(
            f"{cfg.path}: `skipSegments` names segment {beyond[0]} but the scan has "
            f"{total_segments} segments (0-{total_segments - 1}); set `source.scanSegments` "
            "to the count those numbers refer to"
        )
    return set(cfg.skip_segments)
