"""What runs on Spark executors: plain functions of picklable inputs, and no pyspark import.

Executors write straight to the target with the local engine's own code (``SnapshotCopier``,
``advance_shard``, ``Sink``) and hand back only small results: positions, counts,
and an error description. The savepoint and its ledger belong to the driver alone.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..aws.client import DynamoClient, DynamoError, kinesis_client, source_client, target_client
from ..aws.throttle import RateLimiter
from ..changes.records import Decoder, KeyClock, page_decoder
from ..changes.shards import ShardAdvance, advance_shard, open_reader
from ..changes.streams import ShardSpec
from ..config import Config
from ..heap import keep_freed_pages
from ..metrics import METRICS
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
    keep_freed_pages()
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


@functools.lru_cache(maxsize=4)
def _kinesis(cfg: Config) -> DynamoClient:
    return kinesis_client(cfg.source)


@dataclass(frozen=True)
class ReplayContext:
    cfg: Config
    keys: tuple[str, ...]
    write_rate: float | None  # per task
    max_records: int  # per shard and batch
    ttl_attribute: str | None = None  # the source's TTL attribute: expired images not written
    # Kinesis: the driver's key clock (newest change applied per key, as the savepoint keeps
    # it); None: an ordered source.
    key_times: dict[str, float] | None = None


@dataclass(frozen=True)
class ShardOutcome:
    advance: ShardAdvance | None
    error: TaskError | None = None
    counters: Counters = ()


def replay_shards(ctx: ReplayContext, specs: Iterable[ShardSpec]) -> Iterator[ShardOutcome]:
    """One Spark partition: its shards one after the other, each from its position, with the
    local engine's ``advance_shard``; stops at the first error."""
    cfg = ctx.cfg
    keep_freed_pages()
    source, target = _clients(cfg)
    kinesis = _kinesis(cfg) if cfg.target.kinesis is not None else None
    sink = build_sink(cfg, target, list(ctx.keys), _write_limiter(cfg, ctx.write_rate))
    expired = expiry_check(ctx.ttl_attribute, time.time)
    decode = Decoder(sink.renames, expired)
    pages = page_decoder(decode)  # its msgspec decoders built once per task, not per shard
    clock: KeyClock | None = None
    if ctx.key_times is not None:
        clock = KeyClock()
        clock.load(ctx.key_times)
    for spec in specs:
        before = _counters()
        try:
            reader = open_reader(spec, source, kinesis)
            reader.pages = pages
            advance = advance_shard(reader, sink, decode, ctx.max_records, expired, clock)
        except (errors.MigratorError, DynamoError) as e:
            yield ShardOutcome(None, TaskError.of(e), _since(before))
            return
        yield ShardOutcome(advance, None, _since(before))
