"""The migration pipeline, top-down: schema, stream, snapshot, replay."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from ..aws.client import DynamoClient, kinesis_client, source_client, target_client
from ..aws.throttle import RateLimiter
from ..changes.alternator import change_source, check_retention
from ..changes.enable import ensure_stream
from ..changes.kinesis import KinesisSource, ensure_destination
from ..config import Config, require_supported
from ..errors import Interrupted, SavepointError
from ..heap import keep_freed_pages
from ..metrics import METRICS, retry_summary
from ..snapshot import export_request
from ..snapshot.copier import ScanPlan, ScanSource, SnapshotCopier, SnapshotSource, plan_scan
from ..snapshot.ledger import SnapshotLedger, SnapshotOutcome
from ..state.handover import check_peer
from ..state.savepoint import Origin, Savepoint, SavepointStore, same_table, table_identity
from ..target.schema import (
    describe_source,
    ensure_target,
    ordering_line,
    refuse_same_identity,
    refuse_same_table,
    write_isolation,
)
from ..target.sink import Sink
from ..target.sink_factory import make_sink
from ..target.ttl import expiry_check, source_ttl_attribute
from .export_steps import snapshot_source
from .plan import plan_summary
from .replay import ChangeSource, Replayer, ReplayStats, tuning

log = logging.getLogger(__name__)

DONE_SNAPSHOT = "Done transferring table snapshot. Starting to transfer changes"


@dataclass(frozen=True)
class Shared:
    """What the tables of one multi-table run share (pipeline/estate.py): the run already holds
    every table's savepoint lock; snapshots wait for a slot; writes also pay a common cap."""

    locked: bool = False
    snapshot_slots: threading.Semaphore | None = None
    write_cap: RateLimiter | None = None


@dataclass
class MigrationResult:
    snapshot_complete: bool  # every unit copied (False: stopped, or skipSegments left some)
    stream_arn: str | None
    replay: ReplayStats | None
    stopped: bool
    snapshot: SnapshotOutcome | None = None  # None: stopped before the snapshot ended


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
    changes: ChangeSource | None = None  # None: the source table's DynamoDB Stream
    op_table_name: str | None = None  # a table of a multi-table run: named in the op table


class Engine(Protocol):
    """Runs the two data-moving steps; everything else in ``migrate`` is shared."""

    def snapshot(self, job: Job, ledger: SnapshotLedger, plan: ScanPlan) -> None:
        """Copy ``ledger.todo()``, reporting to the ledger what the target acknowledged;
        returns when done or stopped (``job.stop``)."""
        ...

    def replay(self, job: Job, stream_arn: str, stop_when_caught_up: float | None) -> ReplayStats:
        """Apply the stream until ``job.stop`` is set (or caught up)."""
        ...


class LocalEngine:
    """Threads in this process."""

    def snapshot(self, job: Job, ledger: SnapshotLedger, plan: ScanPlan) -> None:
        units = job.units or ScanSource(job.source, job.cfg, plan)
        log.info(
            "Snapshot: %d %ss, %d readers, %d writers, read budget %s",
            plan.total_segments,
            units.kind,
            plan.workers,
            plan.writers,
            "none needed (export)"
            if job.units
            else f"{plan.read_rate:.0f} RCU/s"
            if plan.read_rate
            else "unlimited",
        )
        expired = expiry_check(job.ttl_attribute, time.time)
        SnapshotCopier(units, job.sink, ledger, plan, job.stop, expired=expired).run(ledger.todo())

    def replay(self, job: Job, stream_arn: str, stop_when_caught_up: float | None) -> ReplayStats:
        replayer = Replayer(
            job.source,
            job.sink,
            stream_arn,
            job.store,
            job.sp,
            out=job.out,
            expired=expiry_check(job.ttl_attribute, time.time),
            changes=job.changes,
            op_table_name=job.op_table_name,
            **tuning(job.cfg),
        )
        return replayer.run(job.stop, stop_when_caught_up)


PHASES = ("schema", "snapshot", "replay", "done")


def _phase(name: str) -> None:
    for p in PHASES:
        METRICS.set("phase", 1.0 if p == name else 0.0, phase=p, **METRICS.scope())


def _open_savepoint(
    cfg: Config, store: SavepointStore, src: dict[str, Any], fresh: bool
) -> Savepoint:
    sp = store.load_or_new(fresh)
    spec = src.get("StreamSpecification") or {}
    if fresh and not (spec.get("StreamEnabled") and src.get("LatestStreamArn") == sp.stream_arn):
        sp.stream_arn = None  # the stream we had is gone: starting over enables a new one
    return sp


def _is_empty(client: DynamoClient, table: str) -> bool:
    """No item at all (a Scan may return an empty page that is not the last)."""
    body: dict[str, Any] = {"TableName": table, "Limit": 1}
    for _ in range(10):
        r = client.call("Scan", body)
        if r.get("Items"):
            return False
        if not r.get("LastEvaluatedKey"):
            return True
        body["ExclusiveStartKey"] = r["LastEvaluatedKey"]
    return False


def _check_tables(job: Job) -> None:
    """Trust the savepoint only if it describes these tables; record them if new.

    A source recreated since the savepoint: its stream and positions are meaningless, stop.
    A target recreated, or emptied (its node lost the data), after items were copied: the
    saved "segments done" no longer hold, so the snapshot is copied again. The stream is
    still replayed from the saved positions, which is enough: every change since them is
    in it, and the new copy is newer than all of them."""
    cfg, sp, store = job.cfg, job.sp, job.store
    src_id, tgt_id = table_identity(job.src), table_identity(job.tgt)
    if sp.source_table is not None and not same_table(sp.source_table, src_id):
        raise SavepointError(
            f"source table {cfg.source.table!r} is not the table savepoint {store.file} was "
            f"taken from (recorded {sp.source_table}, now {src_id}); it was recreated, so the "
            "saved stream positions no longer apply: run with --fresh"
        )
    copied = sp.snapshot_done or bool(sp.segments_done) or bool(sp.segment_keys)
    why = None
    if sp.target_table is not None and not same_table(sp.target_table, tgt_id):
        why = (
            f"target table {cfg.target.table!r} is not the table savepoint {store.file} filled "
            f"(recorded {sp.target_table}, now {tgt_id}): it was dropped or recreated"
        )
    elif (
        copied
        and not cfg.target.skip_initial_snapshot_transfer
        and _is_empty(job.target, cfg.target.table)
        # An export source has no table to look at; a loaded export is never empty.
        and (cfg.source.s3_export is not None or not _is_empty(job.source, cfg.source.table))
    ):
        why = (
            f"target table {cfg.target.table!r} is empty although savepoint {store.file} "
            "records copied items: its data was lost"
        )
    if why is not None and (copied or sp.shards):
        if cfg.target.skip_initial_snapshot_transfer:
            raise SavepointError(
                f"{why}; with `skipInitialSnapshotTransfer` the snapshot cannot be copied "
                "again: run with --fresh to replay the stream from its start, or copy the "
                "snapshot (remove skipInitialSnapshotTransfer)"
            )
        log.warning(
            "%s. Copying the snapshot again; the stream is replayed from the saved positions, "
            "so no change is lost",
            why,
        )
        sp.reset_snapshot()
    sp.source_table, sp.target_table = src_id, tgt_id
    store.save(sp)


def _enable_stream(
    source: DynamoClient, src: dict[str, Any], store: SavepointStore, sp: Savepoint, poll: float
) -> str:
    def mark() -> None:
        sp.stream_enabling = time.time()
        store.save(sp)

    arn = ensure_stream(
        source,
        src,
        sp.stream_arn,
        poll_seconds=poll,
        enabling_since=sp.stream_enabling,
        before_enable=mark,
    )
    if sp.stream_arn != arn or sp.stream_enabling is not None:
        sp.use_stream(arn)
        store.save(sp)
    return arn


def _enable_kinesis(job: Job, kinesis: DynamoClient, poll: float) -> str:
    """The table's Kinesis streaming destination, enabled and ACTIVE; positions reset when
    the savepoint was taken on another stream."""
    assert job.cfg.target.kinesis is not None
    arn = job.cfg.target.kinesis.stream_arn
    sp = job.sp
    ensure_destination(
        job.source,
        job.cfg.source.table,
        arn,
        # Once recorded, the destination had to stay active: a gap since loses changes.
        resuming=sp.stream_arn == arn,
        poll_seconds=poll,
    )
    if sp.stream_arn != arn:
        sp.use_stream(arn)
        job.store.save(sp)
    job.changes = KinesisSource(kinesis, arn, job.cfg.source.table)
    return arn


@contextlib.contextmanager
def _slot(slots: threading.Semaphore | None, stop: threading.Event, table: str) -> Iterator[bool]:
    """One of a multi-table run's snapshot slots (True), or False when stopped while waiting."""
    if slots is None:
        yield True
        return
    if not slots.acquire(blocking=False):
        log.info("Snapshot of %r waits for a free slot (maxTablesInParallel)", table)
        while not slots.acquire(timeout=0.2):
            if stop.is_set():
                yield False
                return
    try:
        yield True
    finally:
        slots.release()


def open_ledger(job: Job) -> tuple[SnapshotLedger, ScanPlan]:
    """The snapshot's ledger and plan: Scan segments, or the export's data files."""
    cfg, sp, units = job.cfg, job.sp, job.units
    if units is None and sp.snapshot_origin.kind is Origin.EXPORT:
        raise SavepointError(
            f"savepoint {job.store.file} records a snapshot from {sp.snapshot_origin}, but the "
            "config asks for a Scan; restore `snapshotFrom: export` or run with --fresh"
        )
    plan = plan_scan(cfg, job.src, units.units if units else sp.total_segments)
    ledger = SnapshotLedger(
        cfg,
        sp,
        job.store,
        plan.total_segments,
        kind=units.kind if units else "segment",
        origin=units.origin if units else None,
        estimated_items=int(job.src.get("ItemCount") or 0),
        show_progress=job.show_progress,
    )
    return ledger, plan


def _snapshot(job: Job, engine: Engine) -> SnapshotOutcome | None:
    """Copy the snapshot unless done or skipped. None when stopped before it ended."""
    sp, store = job.sp, job.store
    if job.cfg.target.skip_initial_snapshot_transfer:
        log.info("Skipping the initial snapshot transfer (skipInitialSnapshotTransfer)")
        sp.skip_snapshot()
        store.save(sp)
        return SnapshotOutcome(0, "segment", (), ())
    if sp.snapshot_done:
        log.info("Snapshot already done according to the savepoint %s", store.file)
        return SnapshotOutcome(sp.total_segments or 0, "segment", (), ())
    ledger, plan = open_ledger(job)
    with ledger:
        try:
            engine.snapshot(job, ledger, plan)
        finally:
            log.info("Snapshot retries by cause: %s", retry_summary() or "none")
    outcome = ledger.outcome()
    if job.stop.is_set() or set(outcome.missing) - set(outcome.skipped):
        return None  # stopped: what is left is copied on restart
    if not outcome.complete:
        if job.cfg.validation.copy_missing_rows:
            log.info("copyMissingRows not run: it would copy the skipped segments' items")
        log.warning("%s", outcome.incomplete_line())
        return outcome
    if job.cfg.validation.copy_missing_rows:
        from ..validate.validator import copy_missing_rows  # validate builds on this module

        copy_missing_rows(job.cfg)
    sp.mark_snapshot_done()
    store.save(sp)
    return outcome


def _prepare_export(job: Job, engine: Engine) -> bool:
    """Take the snapshot from an export when the config asks for one; False when stopped
    while waiting for it."""
    cfg, sp = job.cfg, job.sp
    if (
        not export_request.wanted(cfg)
        or sp.snapshot_done
        or cfg.target.skip_initial_snapshot_transfer
    ):
        return True
    job.units = snapshot_source(cfg, job.source, job.src, job.store, sp, job.stop)
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
    shared: Shared | None = None,
) -> MigrationResult:
    """Run the whole migration; returns when done, caught up, or ``stop`` is set."""
    keep_freed_pages()
    stop = stop or threading.Event()
    shared = shared or Shared()
    require_supported(cfg)
    store = SavepointStore(cfg)
    # The lock comes first: a second run must not even look at the source's stream. The stop
    # event cuts the clients' retry pauses short; the clients close however the run ends.
    with (
        contextlib.nullcontext() if shared.locked else store.exclusive(),
        source_client(cfg.source, stop=stop) as source,
        target_client(cfg.target, stop=stop) as target,
        contextlib.ExitStack() as more,
    ):
        check_peer(store)  # after a cutover: never both directions at once
        kinesis = (
            more.enter_context(kinesis_client(cfg.source, stop=stop))
            if cfg.target.kinesis is not None
            else None
        )
        try:
            return _migrate(
                cfg,
                store,
                stop,
                source,
                target,
                kinesis,
                fresh,
                stop_when_caught_up,
                out,
                stream_poll_seconds,
                show_progress,
                engine or LocalEngine(),
                shared,
            )
        except Interrupted as e:  # stopped while a call of the schema or stream step waited
            log.info("Stopped (%s)", e)
            return MigrationResult(False, None, None, True)


def _migrate(
    cfg: Config,
    store: SavepointStore,
    stop: threading.Event,
    source: DynamoClient,
    target: DynamoClient,
    kinesis: DynamoClient | None,
    fresh: bool,
    stop_when_caught_up: float | None,
    out: TextIO | None,
    stream_poll_seconds: float,
    show_progress: bool,
    engine: Engine,
    shared: Shared,
) -> MigrationResult:
    _phase("schema")
    refuse_same_table(cfg)
    src = export_request.describe(cfg) or describe_source(source, cfg.source.table)
    log.info("%s", plan_summary(cfg, source, target, kinesis, src))
    ttl_attribute = None if cfg.source.s3_export else source_ttl_attribute(source, cfg.source.table)
    tgt = ensure_target(source, target, src, cfg)
    log.info(ordering_line(target, write_isolation(target, tgt)))
    refuse_same_identity(src, tgt, cfg)
    sp = _open_savepoint(cfg, store, src, fresh)
    if cfg.source.type == "alternator" and sp.shards:
        check_retention(sp.updated_at, time.time(), str(store.file))
    job = Job(
        cfg,
        source,
        target,
        src,
        tgt,
        store,
        sp,
        make_sink(cfg, target, src, tgt, shared.write_cap),
        stop,
        out,
        show_progress,
        ttl_attribute,
        op_table_name=cfg.source.table if shared.locked else None,
    )
    _check_tables(job)
    # The stream comes before the scan: every write made while copying is then in it.
    arn: str | None = None
    if kinesis is not None:
        arn = _enable_kinesis(job, kinesis, stream_poll_seconds)
    elif cfg.target.stream_changes:
        arn = _enable_stream(source, src, store, sp, stream_poll_seconds)
        job.changes = change_source(cfg, source, arn)
        if stop_when_caught_up is not None:
            # A stream that shows writes late (Alternator) is quiet only after its settle time.
            stop_when_caught_up = max(stop_when_caught_up, cfg.source.settle_seconds)
    _phase("snapshot")
    with _slot(shared.snapshot_slots, stop, cfg.source.table) as got:
        outcome = _snapshot(job, engine) if got and _prepare_export(job, engine) else None
    if outcome is None:
        log.info("Stopped before the snapshot finished; savepoint saved to %s", store.file)
        return MigrationResult(False, arn, None, True)
    if arn is None:
        if outcome.complete:
            _phase("done")
            log.info("Done transferring table snapshot")
        return MigrationResult(outcome.complete, None, None, False, outcome)
    if outcome.complete:
        log.info(DONE_SNAPSHOT)
    else:
        # As the Scylla Migrator does after skipped segments, the changes are replayed: they
        # keep what was copied current, and a later run copies the rest. The line that says
        # the snapshot is done is not printed: the target is not complete.
        log.info("Starting to transfer changes (the snapshot is incomplete)")
    _phase("replay")
    stats = engine.replay(job, arn, stop_when_caught_up)
    if not outcome.complete:
        log.warning("%s", outcome.incomplete_line())  # the run's last line
    return MigrationResult(outcome.complete, arn, stats, stop.is_set(), outcome)
