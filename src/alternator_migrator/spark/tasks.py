"""What runs on Spark executors: plain functions of picklable inputs, and no pyspark import.

Executors write straight to the target with the local engine's own code (``SnapshotCopier``,
``ShardReader``, ``collapse``, ``Sink``) and hand back only small results: positions, counts,
and an error description. The savepoint and its ledger belong to the driver alone.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..aws.client import DynamoClient, DynamoError, source_client, target_client
from ..aws.throttle import RateLimiter
from ..changes.records import Change, Decoder, page_decoder
from ..changes.streams import GET_RECORDS_LIMIT, Shard, ShardReader
from ..config import Config
from ..metrics import METRICS
from ..pipeline.replay import collapse
from ..snapshot.copier import ScanPlan, ScanSource, SnapshotCopier, SnapshotSource
from ..snapshot.export import ExportSource, Manifest, s3_client
from ..snapshot.ledger import UnitTally
from ..target.sink_factory import build_sink
from ..target.ttl import expiry_check
from .live import Address, Reporter


@dataclass(frozen=True)
class TaskError:
    """A permanent error raised on an executor, carried back to the driver as data.

    Our errors are operator-facing and final (transient ones were already retried), so they
    are returned rather than raised: Spark would only retry the task and then bury the message
    in a Java stack trace.
    """

    kind: str  # a class name from ``errors``, or "DynamoError"
    message: str
    op: str = ""
    code: str = ""
    status: int | None = None

    @classmethod
    def of(cls, e: errors.MigratorError | DynamoError) -> TaskError:
        if isinstance(e, DynamoError):
            return cls("DynamoError", e.message, e.op, e.code, e.status)
        return cls(type(e).__name__, str(e))

    def exception(self) -> Exception:
        if self.kind == "DynamoError":
            return DynamoError(self.op, self.code, self.message, self.status)
        kind = getattr(errors, self.kind, errors.MigratorError)
        if not (isinstance(kind, type) and issubclass(kind, errors.MigratorError)):
            kind = errors.MigratorError
        return kind(self.message)


@functools.lru_cache(maxsize=4)
def _clients(cfg: Config) -> tuple[DynamoClient, DynamoClient]:
    # Spark reuses Python workers between tasks: keep their connection pools warm.
    return source_client(cfg.source), target_client(cfg.target)


@functools.lru_cache(maxsize=16)
def _write_limiter(cfg: Config, rate: float | None) -> RateLimiter:
    # Shared by the short replay tasks one worker runs in turn, so that each one does not
    # start with a fresh burst allowance and overshoot the budget.
    return RateLimiter(rate)


# Counters an executor's code keeps that the driver's metrics and logs should include.
_FORWARDED = ("retries_total", "items_scanned_total", "items_written_total")
Counters = tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]


def _counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {k: v for k, v in METRICS.snapshot()[0].items() if k[0] in _FORWARDED}


def _since(before: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Counters:
    # A Python worker runs one task at a time, so the difference is this task's own.
    return tuple(
        (name, labels, v - before.get((name, labels), 0.0))
        for (name, labels), v in _counters().items()
        if v != before.get((name, labels), 0.0)
    )


def forward(counters: Counters) -> None:
    """On the driver: add an executor task's counters to this process's metrics."""
    for name, labels, n in counters:
        METRICS.inc(name, n, **dict(labels))


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class SegmentTask:
    cfg: Config
    keys: tuple[str, ...]
    total_segments: int
    segment: int
    start_key: Any  # last acknowledged key of a partly copied segment; None: from the start
    read_rate: float | None  # this task's share of the read budget (RCU/s)
    write_rate: float | None  # this task's share of the write budget (WCU/s)
    writers: int
    live: tuple[Address, str] | None = None  # where to send running counts, and as what
    ttl_attribute: str | None = None  # the source's TTL attribute: expired items are skipped
    # An export snapshot: the unit is this manifest's data file number ``segment`` (read from
    # S3 on the executor, from its last acknowledged line); None: a Scan segment.
    export: Manifest | None = None
    path_style: bool = False


@dataclass(frozen=True)
class SegmentResult:
    segment: int
    done: bool
    last_key: Any  # when not done: the last key the target acknowledged, if any
    items: int
    error: TaskError | None = None
    counters: Counters = ()
    token: str = ""  # the live-count token it reported under


def copy_segment(task: SegmentTask) -> SegmentResult:
    """Copy one unit (a Scan segment or an export's data file) to the target, pipelined,
    exactly as the local engine."""
    cfg = task.cfg
    source, target = _clients(cfg)
    sink = build_sink(cfg, target, list(task.keys), RateLimiter(task.write_rate))
    plan = ScanPlan(task.total_segments, 1, task.writers, task.read_rate)
    # What the target acknowledged, returned to the driver's ledger.
    tally = UnitTally({task.segment: task.start_key})
    before = _counters()
    error: TaskError | None = None
    units: SnapshotSource = (
        ScanSource(source, cfg, plan)
        if task.export is None
        else ExportSource(s3_client(cfg.source, task.path_style), task.export)
    )
    copier = SnapshotCopier(
        units,
        sink,
        tally,
        plan,
        threading.Event(),
        expired=expiry_check(task.ttl_attribute, time.time),
    )

    def counts() -> tuple[int, int]:
        scanned = _counters().get(("items_scanned_total", ()), 0.0)
        return tally.items, int(scanned - before.get(("items_scanned_total", ()), 0.0))

    try:
        with Reporter(*task.live, counts) if task.live else contextlib.nullcontext():
            copier.run([task.segment])
    except (errors.MigratorError, DynamoError) as e:
        error = TaskError.of(e)
    return SegmentResult(
        task.segment,
        task.segment in tally.finished,
        tally.positions.get(task.segment),
        tally.items,
        error,
        _since(before),
        task.live[1] if task.live else "",
    )


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayContext:
    cfg: Config
    keys: tuple[str, ...]
    stream_arn: str
    write_rate: float | None  # per task
    max_records: int  # per shard and batch
    ttl_attribute: str | None = None  # the source's TTL attribute: expired images not written


@dataclass(frozen=True)
class ShardTask:
    shard: Shard
    position: str | None  # last applied sequence number
    iterator: str | None  # the previous batch's NextShardIterator, saves a GetShardIterator


@dataclass
class ShardResult:
    shard_id: str
    position: str | None
    iterator: str | None
    closed: bool
    drained: bool
    records: int = 0
    writes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    newest: float | None = None  # ApproximateCreationDateTime of the newest record applied
    error: TaskError | None = None
    counters: Counters = ()


def replay_shard(ctx: ReplayContext, task: ShardTask) -> ShardResult:
    """Read one shard from its position, apply the changes in order, return the new position."""
    source, target = _clients(ctx.cfg)
    sink = build_sink(ctx.cfg, target, list(ctx.keys), _write_limiter(ctx.cfg, ctx.write_rate))
    reader = ShardReader(source, ctx.stream_arn, task.shard, task.position)
    reader.iterator = task.iterator
    records: list[Change] = []
    before = _counters()
    writes = 0
    expired = expiry_check(ctx.ttl_attribute, time.time)
    decode = Decoder(sink.renames, expired)
    reader.pages = page_decoder(decode)
    try:
        # Several pages per batch: a Spark job costs far more than one GetRecords call. Each
        # page is written while the next one is read (as the local replayer reads ahead);
        # a page's writes start only after the previous page's are acknowledged, so the
        # changes to one key are still applied in stream order.
        with ThreadPoolExecutor(1, thread_name_prefix="replay-write") as writer:
            pending: Future[int] | None = None
            while len(records) < ctx.max_records:
                page = decode.changes(reader.read(), task.shard.shard_id)
                records.extend(page)
                if page:
                    if pending is not None:
                        writes += pending.result()
                    pending = writer.submit(sink.write, collapse(page, sink, expired))
                # A page short of the limit reached the shard's current end: apply what we
                # have rather than wait (at most 5 calls/s per shard) for a trickle.
                if len(page) < GET_RECORDS_LIMIT or reader.closed:
                    break
            if pending is not None:
                writes += pending.result()
    except (errors.MigratorError, DynamoError) as e:
        return ShardResult(
            task.shard.shard_id,
            task.position,
            None,
            False,
            False,
            error=TaskError.of(e),
            counters=_since(before),
        )
    times = [c.time for c in records if c.time is not None]
    return ShardResult(
        task.shard.shard_id,
        records[-1].seq if records else task.position,
        reader.iterator,
        reader.closed,
        reader.drained,
        len(records),
        writes,
        dict(Counter(c.name for c in records)),
        max(times) if times else None,
        counters=_since(before),
    )


def replay_shards(ctx: ReplayContext, tasks: Iterable[ShardTask]) -> Iterator[ShardResult]:
    """One Spark partition: its shards one after the other.

    Shards in other partitions run at the same time; per-key order still holds, because a
    key's changes in one batch are all in one shard (a child is never ready with its parent).
    """
    for task in tasks:
        yield replay_shard(ctx, task)
