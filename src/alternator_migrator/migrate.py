"""The migration pipeline, top-down: schema, stream, snapshot, replay."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, TextIO

from .checkpoint import Savepoint, SavepointStore
from .clients import DynamoClient, source_client, target_client
from .config import ON_DEMAND_DEFAULT_CAPACITY, Config
from .progress import SnapshotProgress
from .replay import Replayer, ReplayStats
from .schema import describe_source, ensure_target, key_names
from .sink import Sink
from .snapshot import ScanPlan, SnapshotCopier, plan_scan
from .streams import ensure_stream
from .throttle import RateLimiter, budget

log = logging.getLogger(__name__)

DONE_SNAPSHOT = "Done transferring table snapshot. Starting to transfer changes"


@dataclass
class MigrationResult:
    snapshot_complete: bool
    stream_arn: str | None
    replay: ReplayStats | None
    stopped: bool


def make_sink(cfg: Config, target: DynamoClient, src: dict[str, Any], tgt: dict[str, Any]) -> Sink:
    t = cfg.target
    wcu = (
        int(tgt.get("ProvisionedThroughput", {}).get("WriteCapacityUnits") or 0)
        or ON_DEMAND_DEFAULT_CAPACITY
    )
    return Sink(
        target,
        t.table,
        key_names(src),
        max_batch=t.max_items_per_batch,
        limiter=RateLimiter(budget(t.write_throughput, t.throughput_write_percent, wcu)),
        consumed_capacity=not t.remove_consumed_capacity,
        renames=cfg.rename_map(),
    )


def run_snapshot(
    cfg: Config,
    source: DynamoClient,
    sink: Sink,
    src: dict[str, Any],
    store: SavepointStore,
    sp: Savepoint,
    stop: threading.Event,
    show_progress: bool = True,
) -> bool:
    plan: ScanPlan = plan_scan(cfg, src, sp.total_segments)
    sp.total_segments = plan.total_segments
    log.info(
        "Snapshot: %d segments, %d scanners, %d writers, read budget %s RCU/s",
        plan.total_segments,
        plan.workers,
        plan.writers,
        f"{plan.read_rate:.0f}" if plan.read_rate else "unlimited",
    )
    progress = (
        SnapshotProgress(plan.total_segments, len(sp.segments_done), int(src.get("ItemCount") or 0))
        if show_progress
        else None
    )
    if progress:
        progress.start()
    try:
        return SnapshotCopier(source, sink, cfg, plan, store, sp, stop, progress).run()
    finally:
        if progress:
            progress.close()


def migrate(
    cfg: Config,
    stop: threading.Event | None = None,
    *,
    fresh: bool = False,
    stop_when_caught_up: float | None = None,
    out: TextIO | None = None,
    stream_poll_seconds: float = 5.0,
    show_progress: bool = True,
) -> MigrationResult:
    """Run the whole migration; returns when done, caught up, or ``stop`` is set."""
    stop = stop or threading.Event()
    source, target = source_client(cfg.source), target_client(cfg.target)
    src = describe_source(source, cfg.source.table)
    tgt = ensure_target(source, target, src, cfg)
    store = SavepointStore(cfg)
    sp = store.load_or_new(fresh)
    if sp.total_segments is None and sp.stream_arn is None:
        store.save(sp)  # fail early on an unwritable savepoint directory

    arn = None
    if cfg.target.stream_changes:
        # Before the scan: every write made while copying is then in the stream.
        arn = ensure_stream(source, src, sp.stream_arn, poll_seconds=stream_poll_seconds)
        if sp.stream_arn != arn:
            sp.stream_arn = arn
            sp.shards.clear()
            store.save(sp)

    sink = make_sink(cfg, target, src, tgt)
    complete = sp.snapshot_done
    if cfg.target.skip_initial_snapshot_transfer:
        log.info("Skipping the initial snapshot transfer (skipInitialSnapshotTransfer)")
        complete = True
    elif not sp.snapshot_done:
        complete = run_snapshot(cfg, source, sink, src, store, sp, stop, show_progress)
        if complete:
            sp.snapshot_done = True
            store.save(sp)
    else:
        log.info("Snapshot already done according to the savepoint %s", store.file)
    if not complete or stop.is_set():
        log.info("Stopped before the snapshot finished; savepoint saved to %s", store.file)
        return MigrationResult(False, arn, None, True)

    if arn is None:
        log.info("Done transferring table snapshot")
        return MigrationResult(True, None, None, False)
    log.info(DONE_SNAPSHOT)
    stats = Replayer(source, sink, arn, store, sp, out=out).run(stop, stop_when_caught_up)
    return MigrationResult(True, arn, stats, stop.is_set())
