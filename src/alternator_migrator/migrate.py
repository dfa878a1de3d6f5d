"""The migration pipeline, top-down: schema, stream, snapshot, replay."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from . import export
from .checkpoint import Savepoint, SavepointStore
from .clients import DynamoClient, source_client, target_client
from .config import Config, require_supported
from .errors import ConfigError, SavepointError
from .metrics import METRICS, retry_summary
from .progress import SnapshotProgress
from .replay import Replayer, ReplayStats, tuning
from .schema import describe_source, ensure_target, key_names
from .sink import Sink
from .snapshot import ScanPlan, SnapshotCopier, SnapshotSource, plan_scan
from .streams import ensure_stream
from .throttle import RateLimiter, budget, table_capacity
from .ttl import expiry_check, source_ttl_attribute

log = logging.getLogger(__name__)

DONE_SNAPSHOT = "Done transferring table snapshot. Starting to transfer changes"


@dataclass
class MigrationResult:
    snapshot_complete: bool
    stream_arn: str | None
    replay: ReplayStats | None
    stopped: bool


def write_budget(cfg: Config, tgt: dict[str, Any]) -> float | None:
    """The target's write budget in WCU/s (None: unlimited)."""
    t = cfg.target
    wcu = table_capacity(tgt, "WriteCapacityUnits", t.type)
    return budget(t.write_throughput, t.throughput_write_percent, wcu)


def build_sink(cfg: Config, target: DynamoClient, keys: list[str], limiter: RateLimiter) -> Sink:
    """A sink from plain inputs (the Spark engine builds one per executor task)."""
    t = cfg.target
    return Sink(
        target,
        t.table,
        keys,
        max_batch=t.max_items_per_batch,
        limiter=limiter,
        consumed_capacity=not t.remove_consumed_capacity,
        renames=cfg.rename_map(),
    )


def make_sink(cfg: Config, target: DynamoClient, src: dict[str, Any], tgt: dict[str, Any]) -> Sink:
    return build_sink(cfg, target, key_names(src), RateLimiter(write_budget(cfg, tgt)))


def run_snapshot(
    cfg: Config,
    source: DynamoClient,
    sink: Sink,
    src: dict[str, Any],
    store: SavepointStore,
    sp: Savepoint,
    stop: threading.Event,
    show_progress: bool = True,
    ttl_attribute: str | None = None,
    units: SnapshotSource | None = None,
) -> bool:
    plan: ScanPlan = plan_scan(cfg, src, units.units if units else sp.total_segments)
    if units is None and (sp.snapshot_source or "").startswith("export "):
        raise SavepointError(
            f"savepoint {store.file} records a snapshot from {sp.snapshot_source}, but the config "
            "asks for a Scan; restore `snapshotFrom: export` or run with --fresh"
        )
    sp.total_segments = plan.total_segments
    log.info(
        "Snapshot: %d %ss, %d readers, %d writers, read budget %s",
        plan.total_segments,
        units.kind if units else "segment",
        plan.workers,
        plan.writers,
        "none needed (export)"
        if units
        else f"{plan.read_rate:.0f} RCU/s"
        if plan.read_rate
        else "unlimited",
    )
    progress = (
        SnapshotProgress(plan.total_segments, len(sp.segments_done), int(src.get("ItemCount") or 0))
        if show_progress
        else None
    )
    if progress:
        progress.start()
    try:
        expired = expiry_check(ttl_attribute, time.time)
        copier = SnapshotCopier(
            source, sink, cfg, plan, store, sp, stop, progress, expired=expired, units=units
        )
        return copier.run()
    finally:
        if progress:
            progress.close()
        log.info("Snapshot retries by cause: %s", retry_summary() or "none")


@dataclass
class Job:
    """What the engine-independent steps set up, for the engine's snapshot and replay steps."""

    cfg: Config
    source: DynamoClient
    target: DynamoClient
    src: dict[str, Any]  # DescribeTable of the source
    tgt: dict[str, Any]  # DescribeTable of the target
    store: SavepointStore
    sp: Savepoint
    sink: Sink
    stop: threading.Event
    out: TextIO | None
    show_progress: bool
    ttl_attribute: str | None = None  # the source's, when TTL is enabled: expired items skipped
    units: SnapshotSource | None = None  # None: Scan segments


class Engine(Protocol):
    """Runs the two data-moving steps; everything else in ``migrate`` is shared."""

    def snapshot(self, job: Job) -> bool:
        """Copy the unfinished segments; True when every segment is done."""
        ...

    def replay(self, job: Job, stream_arn: str, stop_when_caught_up: float | None) -> ReplayStats:
        """Apply the stream until ``job.stop`` is set (or caught up)."""
        ...


class LocalEngine:
    """Threads in this process."""

    def snapshot(self, job: Job) -> bool:
        return run_snapshot(
            job.cfg,
            job.source,
            job.sink,
            job.src,
            job.store,
            job.sp,
            job.stop,
            job.show_progress,
            job.ttl_attribute,
            job.units,
        )

    def replay(self, job: Job, stream_arn: str, stop_when_caught_up: float | None) -> ReplayStats:
        replayer = Replayer(
            job.source,
            job.sink,
            stream_arn,
            job.store,
            job.sp,
            out=job.out,
            expired=expiry_check(job.ttl_attribute, time.time),
            **tuning(job.cfg),
        )
        return replayer.run(job.stop, stop_when_caught_up)


PHASES = ("schema", "snapshot", "replay", "done")


def _phase(name: str) -> None:
    for p in PHASES:
        METRICS.set("phase", 1.0 if p == name else 0.0, phase=p)


def _open_savepoint(
    cfg: Config, src: dict[str, Any], fresh: bool
) -> tuple[SavepointStore, Savepoint]:
    store = SavepointStore(cfg)
    sp = store.load_or_new(fresh)
    spec = src.get("StreamSpecification") or {}
    if fresh and not (spec.get("StreamEnabled") and src.get("LatestStreamArn") == sp.stream_arn):
        sp.stream_arn = None  # the stream we had is gone: starting over enables a new one
    if sp.total_segments is None and sp.stream_arn is None:
        store.save(sp)  # fail early on an unwritable savepoint directory
    return store, sp


def _enable_stream(
    source: DynamoClient, src: dict[str, Any], store: SavepointStore, sp: Savepoint, poll: float
) -> str:
    arn = ensure_stream(source, src, sp.stream_arn, poll_seconds=poll)
    if sp.stream_arn != arn:
        sp.stream_arn = arn
        sp.shards.clear()
        store.save(sp)
    return arn


def _snapshot(job: Job, engine: Engine) -> bool:
    """Copy the snapshot unless done or skipped. True when the replay may start."""
    sp, store = job.sp, job.store
    if job.cfg.target.skip_initial_snapshot_transfer:
        log.info("Skipping the initial snapshot transfer (skipInitialSnapshotTransfer)")
    elif sp.snapshot_done:
        log.info("Snapshot already done according to the savepoint %s", store.file)
    elif not engine.snapshot(job) or job.stop.is_set():
        return False
    elif job.cfg.validation.copy_missing_rows:
        from .validate import copy_missing_rows  # validate builds on this module

        copy_missing_rows(job.cfg)
    sp.snapshot_done = True
    store.save(sp)
    return True


def _prepare_export(job: Job, engine: Engine) -> bool:
    """Take the snapshot from an export when the config asks for one; False when stopped
    while waiting for it."""
    cfg, sp = job.cfg, job.sp
    if not export.wanted(cfg) or sp.snapshot_done or cfg.target.skip_initial_snapshot_transfer:
        return True
    if not isinstance(engine, LocalEngine):
        raise ConfigError(f"{cfg.path}: a snapshot from an export runs on the local engine only")
    job.units = export.snapshot_source(cfg, job.source, job.src, job.store, sp, job.stop)
    return job.units is not None


def migrate(
    cfg: Config,
    stop: threading.Event | None = None,
    *,
    fresh: bool = False,
    stop_when_caught_up: float | None = None,
    out: TextIO | None = None,
    stream_poll_seconds: float = 5.0,
    show_progress: bool = True,
    engine: Engine | None = None,
) -> MigrationResult:
    """Run the whole migration; returns when done, caught up, or ``stop`` is set."""
    stop = stop or threading.Event()
    engine = engine or LocalEngine()
    require_supported(cfg)
    _phase("schema")
    source, target = source_client(cfg.source), target_client(cfg.target)
    src = export.describe(cfg) or describe_source(source, cfg.source.table)
    ttl_attribute = None if cfg.source.s3_export else source_ttl_attribute(source, cfg.source.table)
    tgt = ensure_target(source, target, src, cfg)
    store, sp = _open_savepoint(cfg, src, fresh)
    # The stream comes before the scan: every write made while copying is then in it.
    arn = (
        _enable_stream(source, src, store, sp, stream_poll_seconds)
        if cfg.target.stream_changes
        else None
    )
    job = Job(
        cfg,
        source,
        target,
        src,
        tgt,
        store,
        sp,
        make_sink(cfg, target, src, tgt),
        stop,
        out,
        show_progress,
        ttl_attribute,
    )
    _phase("snapshot")
    if not _prepare_export(job, engine) or not _snapshot(job, engine):
        log.info("Stopped before the snapshot finished; savepoint saved to %s", store.file)
        return MigrationResult(False, arn, None, True)
    if arn is None:
        _phase("done")
        log.info("Done transferring table snapshot")
        return MigrationResult(True, None, None, False)
    log.info(DONE_SNAPSHOT)
    _phase("replay")
    stats = engine.replay(job, arn, stop_when_caught_up)
    return MigrationResult(True, arn, stats, stop.is_set())
