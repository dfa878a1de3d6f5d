"""The snapshot: units of a source (Scan segments, export data files) read in parallel,
pipelined into batched writes on the target.

Reader threads (at most ``maxMapTasks``) cut each page into BatchWriteItem-sized batches on a
bounded queue; writer threads drain it. Memory stays flat however large the table: at most one
page per scanner plus the queued batches are in flight. A segment's position advances only
over pages whose every batch the target acknowledged, in page order, so the
savepoint never claims an item that was not written. What is left to copy and what was done
is the ledger's (``ledger.SnapshotLedger``); the copier only copies the units it is given.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..aws.client import DynamoClient, DynamoError
from ..aws.throttle import RateLimiter, budget, charge_read, table_capacity
from ..config import Config
from ..errors import Interrupted
from ..metrics import METRICS
from ..state.savepoint import SnapshotOrigin
from ..target.sink import Sink
from ..target.ttl import ExpiryCheck, Ttl
from .ledger import UnitLog

log = logging.getLogger(__name__)

try:  # optional, as for GetRecords pages (changes.records): without it pages become dicts
    import msgspec  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    msgspec = None  # type: ignore[assignment, unused-ignore]


def _scan_page_decoder() -> Any:
    """Scan's answer with each item left as its span of the page (``msgspec.Raw``): items are
    written as the bytes they were read as, never parsed into dicts (which cost a parse, an
    encode and the cyclic GC's walks over them) and never encoded again."""
    page = msgspec.defstruct(
        "ScanPage",
        [
            ("Items", list[msgspec.Raw], msgspec.field(default_factory=list)),
            ("LastEvaluatedKey", dict[str, Any] | None, None),
            ("ConsumedCapacity", Any, None),
        ],
        gc=False,
    )
    return msgspec.json.Decoder(page)


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
    origin: SnapshotOrigin  # what the savepoint records the units as

    @property
    def units(self) -> int: ...

    def pages(
        self, unit: int, start: Any, stop: threading.Event
    ) -> Iterator[tuple[list[Any], Any]]:
        """(items, position after them) per page from ``start`` (None: the unit's beginning);
        the unit's last page has position None. An item is a dict in wire format, or that
        dict's JSON as a bytes-like object (written as it is; ``Sink.put_items``)."""
        ...


class ScanSource:
    """Scan segments of the source table, within its read budget."""

    kind = "segment"
    origin = SnapshotOrigin()

    def __init__(self, source: DynamoClient, cfg: Config, plan: ScanPlan) -> None:
        self.source = source
        self._labels = METRICS.scope()  # a table of a multi-table run: its `table` label
        self.table = cfg.source.table
        self.consumed_capacity = not cfg.source.remove_consumed_capacity
        self.total = plan.total_segments
        self.read_limiter = RateLimiter(plan.read_rate)
        self._decoder = _scan_page_decoder() if msgspec is not None else None

    @property
    def units(self) -> int:
        return self.total

    def _scan(self, req: dict[str, Any]) -> tuple[list[Any], Any, dict[str, Any], int | None]:
        """(items, LastEvaluatedKey, what to charge by, the items' wire bytes if known)."""
        if self._decoder is None:
            resp = self.source.call("Scan", req)
            return resp.get("Items", []), resp.get("LastEvaluatedKey"), resp, None
        body = self.source.call_bytes("Scan", req)
        try:
            page = self._decoder.decode(body)
        except msgspec.DecodeError:
            try:  # an answer the struct does not describe: as the plain client reads it
                parsed: Any = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise DynamoError(
                    "Scan",
                    "InvalidResponse",
                    f"answered HTTP 200 with a body that is not a JSON object ({bytes(body[:60])!r}); "
                    f"is this a DynamoDB-API endpoint? check `{self.source.label}.endpoint`",
                    200,
                ) from None
            return parsed.get("Items", []), parsed.get("LastEvaluatedKey"), parsed, None
        items, cc = page.Items, page.ConsumedCapacity
        # Only a source that reports no consumed capacity (Alternator) is charged by the bytes.
        size = None if cc else sum(len(i) for i in items) + len(items) + 1  # the JSON array
        return items, page.LastEvaluatedKey, {"ConsumedCapacity": cc}, size

    def pages(
        self, unit: int, start: Any, stop: threading.Event
    ) -> Iterator[tuple[list[Any], Any]]:
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
            items, start_key, charge, size = self._scan(req)
            charge_read(
                self.read_limiter, charge, items, consistent=False, stop=stop, wire_bytes=size
            )
            METRICS.inc("items_scanned_total", len(items), **self._labels)
            yield items, start_key
            if start_key is None:
                return


@dataclass
class _Segment:
    number: int
    next_page: int = 0  # pages handed to writers
    committed: int = 0  # pages acknowledged in order
    # page -> (LastEvaluatedKey (None: the last page), items on it)
    acked: dict[int, tuple[Any, int]] = field(default_factory=dict)


@dataclass
class _Page:
    segment: _Segment
    number: int
    size: int  # items on the page
    last_key: Any
    pending: int  # batches not yet acknowledged by the target


# A writer's unit of work: one BatchWriteItem's worth of a page. Pages are split so that the
# queue bounds memory in items, not in (up to 1 MB) pages, and all writers share a page.
_Batch = tuple[_Page, list[Any]]


class _Abort(Exception):
    pass


class SnapshotCopier:
    """Copies the units it is given, reporting each acknowledged position to ``ledger``."""

    def __init__(
        self,
        units: SnapshotSource,
        sink: Sink,
        ledger: UnitLog,
        plan: ScanPlan,
        stop: threading.Event,
        *,
        expired: ExpiryCheck | None = None,
    ) -> None:
        self.units = units
        self.sink = sink
        self._labels = METRICS.scope()  # a table of a multi-table run: its `table` label
        self.ledger = ledger
        self.plan = plan
        self.stop = stop
        self.batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=plan.writers * 2)
        self.segments: queue.Queue[int] = queue.Queue()
        self.errors: list[BaseException] = []
        self._failed = threading.Event()
        self.expired = expired  # DynamoDB's TTL will delete it: not copied
        self.skipped_expired = 0
        self.kept_unexpiring = 0  # a TTL attribute DynamoDB ignores: copied, and counted
        self._ttl_decoder: Any = None
        # Guards the pages; acknowledgements are reported under it, so a unit's positions
        # reach the ledger in page order.
        self._lock = threading.RLock()

    # -- reading
    def _scan_segment(self, seg: _Segment) -> None:
        start = self.ledger.position(seg.number)
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

    def _drop_expired(self, items: list[Any]) -> list[Any]:
        assert self.expired is not None
        live: list[Any] = []
        never = 0
        attr = self.expired.attribute
        for it in items:
            # An item kept as bytes: only its TTL attribute is parsed.
            state = self.expired.state(it if isinstance(it, dict) else self._ttl_of(it, attr))
            if state is not Ttl.EXPIRED:
                live.append(it)
                never += state is Ttl.NEVER
        if len(live) != len(items) or never:
            with self._lock:
                self.skipped_expired += len(items) - len(live)
                self.kept_unexpiring += never
            METRICS.inc("items_expired_skipped_total", len(items) - len(live), **self._labels)
            METRICS.inc("items_ttl_never_expires_total", never, **self._labels)
        return live

    def _ttl_of(self, item: Any, attr: str) -> dict[str, Any]:
        if self._ttl_decoder is None:
            if msgspec is None:
                return {attr: orjson.loads(memoryview(item)).get(attr)}
            one = msgspec.defstruct("Ttl", [("value", Any, None)], rename={"value": attr})
            self._ttl_decoder = msgspec.json.Decoder(one)
        value = self._ttl_decoder.decode(item).value
        return {} if value is None else {attr: value}

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
        with self._lock:
            seg.acked[page.number] = (page.last_key, page.size)
            while seg.committed in seg.acked:
                key, size = seg.acked.pop(seg.committed)
                seg.committed += 1
                self.ledger.acknowledged(seg.number, key, size)

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            self.errors.append(e)
        self._failed.set()

    def run(self, todo: list[int]) -> None:
        """Copy ``todo``'s units; returns when all are copied, or stopped; raises the first
        error."""
        for n in todo:
            self.segments.put(n)
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
        if self.skipped_expired or self.kept_unexpiring:
            assert self.expired is not None
            log.info(
                "Skipped %d expired items (TTL attribute %r in the past, as DynamoDB deletes "
                "them); copied %d items whose %r DynamoDB will never expire (not a number, "
                "more than five years past, or milliseconds)",
                self.skipped_expired,
                self.expired.attribute,
                self.kept_unexpiring,
                self.expired.attribute,
            )
        if self.errors:
            raise self.errors[0]
