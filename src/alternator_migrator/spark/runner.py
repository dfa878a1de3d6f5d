"""The Spark engine: ``migrate``'s own pipeline, with the snapshot and replay steps on executors.

The driver does what is small and stateful: schema, stream, shard tree, savepoint. Executors
do the heavy part with the local engine's code (see ``tasks``) and return positions and counts.

Snapshot: each scan segment is one Spark task (one single-partition job), submitted by
``slots`` driver threads, so at most ``slots`` tasks run at once (``maxMapTasks``, else the
cluster's default parallelism) and each one's completion is saved the moment it comes back.
Replay: one Spark job per micro-batch, a partition per group of ready shards.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import threading
from collections import Counter, deque
from typing import Any, TextIO

from ..changes.streams import ShardReader
from ..config import Config, local_only_given
from ..errors import MigratorError
from ..metrics import METRICS
from ..pipeline.estate import migrate_estate
from ..pipeline.migrate import Job, MigrationResult, migrate
from ..pipeline.replay import BatchResult, Replayer, ReplayStats
from ..snapshot.copier import ScanPlan
from ..snapshot.export import ExportSource
from ..snapshot.ledger import SnapshotLedger
from ..target.schema import key_names
from ..target.sink_factory import write_budget
from .live import LiveCounts
from .preflight import SparkSetupError, executor_python, one_line, prepare
from .tasks import (
    ReplayContext,
    SegmentResult,
    SegmentTask,
    copy_segment,
    forward,
    replay_shards,
)

log = logging.getLogger(__name__)

SNAPSHOT_GROUP = "alternator-migrator-snapshot"
WRITERS_PER_TASK = 4  # writer threads per task: a task's one scanner keeps about four busy
RECORDS_PER_SHARD = 5000  # stream records one task reads from a shard per micro-batch
IDLE_SLEEP = 1.0  # longest pause between empty micro-batches (each one is a Spark job)


class SparkUnavailableError(MigratorError):
    """pyspark (or Java) is missing."""


def _share(rate: float | None, slots: int) -> float | None:
    return None if rate is None else rate / slots


def spark_session(master: str | None = None, conf: dict[str, str] | None = None) -> Any:
    """A SparkSession: spark-submit's own, or a new one on ``master`` (default ``local[*]``).

    ``conf`` (``--conf KEY=VALUE``) is applied over spark-submit's settings. Spark logs at WARN
    unless ``spark.log.level`` is given: at INFO its lines bury ours by the thousand.
    """
    try:
        from pyspark import SparkConf, SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailableError(
            "--engine spark needs pyspark: pip install 'alternator-migrator[spark]' (and Java 17)"
        ) from None
    conf = dict(conf or {})
    # spark-submit starts the JVM before us and passes its port; its settings then stand.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    try:
        SparkContext._ensure_initialized()
    except Exception as e:  # no Java, or a JVM that would not start
        raise SparkSetupError(
            f"could not start Spark's JVM ({one_line(e)}): --engine spark needs Java 17 "
            f"(JAVA_HOME or `java` on PATH)"
        ) from None
    sconf = SparkConf()  # spark-submit's (or pyspark's own launcher's) settings
    if master:
        sconf.setMaster(master)
    elif not submitted:
        sconf.setMaster("local[*]")
    if not submitted:
        sconf.setAppName("alternator-migrator")
        # pyspark's launcher turns Spark's stage bar on; ours says more and they would interleave.
        sconf.set("spark.ui.showConsoleProgress", "false")
    for k, v in conf.items():
        sconf.set(k, v)
    if not sconf.contains("spark.log.level"):
        sconf.set("spark.log.level", "WARN")
    executor_python(str(sconf.get("spark.master")), conf)
    previous = signal.getsignal(signal.SIGINT)
    try:
        session = SparkSession.builder.config(conf=sconf).getOrCreate()
    except Exception as e:  # e.g. a master URL nothing answers, a bad setting
        raise SparkSetupError(
            f"could not start Spark on {sconf.get('spark.master')}: {one_line(e)}"
        ) from None
    # spark.log.level is applied at start-up from Spark 3.5 on; older ones need this call.
    session.sparkContext.setLogLevel(str(sconf.get("spark.log.level")))
    if submitted:
        _jvm_ignores_ctrl_c(SparkContext._jvm)
    if threading.current_thread() is threading.main_thread() and previous is not None:
        # SparkContext installs a SIGINT handler that cancels every job and raises
        # KeyboardInterrupt; put back the CLI's, which finishes in-flight work and saves.
        signal.signal(signal.SIGINT, previous)
    return session


def _jvm_ignores_ctrl_c(jvm: Any) -> None:
    """Under spark-submit a Ctrl-C reaches its JVM too, which would die at once (exit 130) and
    take the SparkContext with it while we finish in-flight work and save. Ignore it there:
    our handler stops the run, and spark-submit then exits with our exit code."""
    try:
        jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal("INT"), jvm.sun.misc.SignalHandler.SIG_IGN)
    except Exception as e:  # a JVM without sun.misc: Ctrl-C still stops, less cleanly
        log.debug("could not make the JVM ignore SIGINT: %s", e)


class SparkEngine:
    """The snapshot and replay steps of ``migrate``, on a Spark cluster."""

    def __init__(
        self,
        spark: Any,
        *,
        writers_per_task: int = WRITERS_PER_TASK,
        records_per_shard: int = RECORDS_PER_SHARD,
    ) -> None:
        self.spark = spark
        self.sc = spark.sparkContext
        self.writers_per_task = writers_per_task
        self.records_per_shard = records_per_shard

    def slots(self, job: Job, work: int) -> int:
        """Concurrent tasks: ``maxMapTasks``, else the cluster's cores; never more than work."""
        cap = job.cfg.source.max_map_tasks or int(self.sc.defaultParallelism)
        return max(1, min(cap, work))

    # -- snapshot
    def snapshot(self, job: Job, ledger: SnapshotLedger, plan: ScanPlan) -> None:
        """Each unit to copy is a Spark task; its result is recorded in the ledger (and the
        savepoint saved) the moment it comes back."""
        total = plan.total_segments
        todo = deque(ledger.todo())
        slots = self.slots(job, len(todo))
        # An export's data files are units as Scan segments are: the executor reads its file
        # from S3, and no read capacity of the table is spent.
        exported = job.units if isinstance(job.units, ExportSource) else None
        manifest = exported.manifest if exported is not None else None
        s3e = job.cfg.source.s3_export
        path_style = bool(s3e.use_path_style_access) if s3e is not None else False
        kind = job.units.kind if job.units is not None else "segment"
        read_rate = _share(plan.read_rate, slots) if exported is None else None
        write_rate = _share(write_budget(job.cfg, job.tgt), slots)
        log.info(
            "Snapshot on Spark: %d %ss (%d to copy), up to %d concurrent tasks, "
            "per task: read budget %s, write budget %s WCU/s",
            total,
            kind,
            len(todo),
            slots,
            "none (export)"
            if exported is not None
            else f"{read_rate:.0f} RCU/s"
            if read_rate is not None
            else "unlimited",
            f"{write_rate:.0f}" if write_rate is not None else "unlimited",
        )
        keys = tuple(key_names(job.src))
        # One group per table: several tables of one run share the cluster, and a failing
        # table's cancel must not cancel another table's snapshot.
        group = f"{SNAPSHOT_GROUP}-{job.cfg.source.table}"

        def grow(copied: int, scanned: int) -> None:
            METRICS.inc("items_scanned_total", scanned)
            ledger.copied(copied)

        live = LiveCounts(str(self.sc.getConf().get("spark.driver.host")), grow)
        results: queue.Queue[SegmentResult | BaseException | None] = queue.Queue()
        take = threading.Lock()
        failed = threading.Event()

        def submitter() -> None:
            try:
                self.sc.setJobGroup(group, "alternator-migrator snapshot", True)
                while not job.stop.is_set() and not failed.is_set():
                    with take:
                        if not todo:
                            return
                        n = todo.popleft()
                    task = SegmentTask(
                        job.cfg,
                        keys,
                        total,
                        n,
                        ledger.position(n),
                        read_rate,
                        write_rate,
                        self.writers_per_task,
                        (live.address, live.open(n)),
                        job.ttl_attribute,
                        manifest,
                        path_style,
                    )
                    self.sc.setJobDescription(f"snapshot {kind} {n} of {total}")
                    results.put(self.sc.parallelize([task], 1).map(copy_segment).collect()[0])
            except BaseException as e:
                results.put(e)
            finally:
                results.put(None)

        threads = [
            threading.Thread(target=submitter, name=f"spark-snapshot-{i}", daemon=True)
            for i in range(slots if todo else 0)
        ]
        for t in threads:
            t.start()
        running, error, told = len(threads), None, False
        try:
            while running:
                try:
                    r = results.get(timeout=0.5)
                except queue.Empty:
                    if job.stop.is_set() and not told:
                        log.info(
                            "Stop requested: waiting for the segments in flight to finish "
                            "(a second Ctrl-C abandons them; they are copied again on restart)"
                        )
                        told = True
                    continue
                if r is None:
                    running -= 1
                    continue
                if isinstance(r, SegmentResult):
                    self._record(ledger, r, live)
                    if r.error is None:
                        continue
                    exc: BaseException = r.error.exception()
                else:
                    exc = r
                if error is None:
                    error = exc
                    failed.set()
                    self.sc.cancelJobGroup(group)  # fail fast, as the local engine
        finally:
            live.close_all()
        if error is not None:
            raise error

    @staticmethod
    def _record(ledger: SnapshotLedger, r: SegmentResult, live: LiveCounts) -> None:
        # The task's totals are the truth; add what its live reports did not already show.
        shown_copied, shown_scanned = live.close(r.token) if r.token else (0, 0)
        forward(
            tuple(
                (name, labels, max(0.0, n - shown_scanned) if name == "items_scanned_total" else n)
                for name, labels, n in r.counters
            )
        )
        ledger.copied(max(0, r.items - shown_copied))
        if r.done or r.last_key is not None:
            # Saved as each task completes: a restart skips (or resumes) this segment.
            ledger.record(r.segment, None if r.done else r.last_key, save=True)

    # -- replay
    def replay(self, job: Job, stream_arn: str, stop_when_caught_up: float | None) -> ReplayStats:
        return SparkReplayer(self, job, stream_arn).run(job.stop, stop_when_caught_up)


class SparkReplayer(Replayer):
    """The local Replayer's rounds, shard tree and checkpoints; ``apply`` runs on executors."""

    def __init__(self, engine: SparkEngine, job: Job, stream_arn: str) -> None:
        super().__init__(
            job.source,
            job.sink,
            stream_arn,
            job.store,
            job.sp,
            out=job.out,
            max_idle_sleep=IDLE_SLEEP,
            op_table_name=job.op_table_name,
            # The shard tree (Alternator's generation barrier, Kinesis' lineage) is the driver's.
            changes=job.changes,
            memory_budget=None,  # executors read the pages, each holding one shard's batch
        )
        self.engine = engine
        self.job = job
        self.keys = tuple(key_names(job.src))
        self.write_rate = write_budget(job.cfg, job.tgt)
        self.batches = 0

    def apply(self, ready: list[ShardReader]) -> BatchResult:
        if not ready:
            return BatchResult(0, 0, Counter(), None)
        slots = self.engine.slots(self.job, len(ready))
        clock = self.key_clock
        if clock is not None:
            # Kinesis: AWS documents duplicates and reorderings also across shards, so one
            # key's changes may sit in two ready shards, and tasks running at once would race
            # to write them. One task reads the shards in turn with the driver's key clock:
            # newest-wins per key as locally. It gets the clock's most recent keys, as many
            # as a restart keeps (a reordering spans seconds); the times it applied come
            # back in the advances and ``settle`` merges them.
            slots = 1
        ctx = ReplayContext(
            self.job.cfg,
            self.keys,
            _share(self.write_rate, slots),
            self.engine.records_per_shard,
            self.job.ttl_attribute,
            clock.recent() if clock is not None else None,
        )
        self.batches += 1
        sc = self.engine.sc
        sc.setJobDescription(f"replay batch {self.batches}: {len(ready)} shards")
        outcomes = (
            sc.parallelize([r.spec() for r in ready], slots)
            .mapPartitions(functools.partial(replay_shards, ctx))
            .collect()
        )
        for o in outcomes:
            forward(o.counters)
        for o in outcomes:
            if o.error is not None:
                # Nothing of this batch is checkpointed; what others applied is idempotent.
                raise o.error.exception()
        return self.settle(ready, [o.advance for o in outcomes if o.advance is not None])


def migrate_spark(
    cfg: Config,
    stop: threading.Event | None = None,
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    fresh: bool = False,
    stop_when_caught_up: float | None = None,
    spark: Any = None,
    out: TextIO | None = None,
    show_progress: bool = True,
    stream_poll_seconds: float = 5.0,
) -> MigrationResult:
    """``migrate`` on Spark. Uses ``spark`` if given (and leaves it running), else its own.

    Before anything touches the source or the target, the package is shipped to the executors
    and one of them must import it (``preflight``), else SparkSetupError (exit 2).
    """
    _warn_local_only_keys(cfg)
    own = spark is None
    session = spark if spark is not None else spark_session(master, conf)
    try:
        prepare(session.sparkContext)
        return migrate(
            cfg,
            stop,
            fresh=fresh,
            stop_when_caught_up=stop_when_caught_up,
            out=out,
            stream_poll_seconds=stream_poll_seconds,
            show_progress=show_progress,
            engine=SparkEngine(session),
        )
    finally:
        if own:
            session.stop()


def migrate_spark_tables(
    cfg: Config,
    stop: threading.Event,
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    skip_failing_tables: bool = False,
    out: TextIO,
    spark: Any = None,
    **options: Any,
) -> int:
    """A multi-table run on Spark: the tables' snapshot and replay tasks share one session
    (one driver, one cluster); everything else is ``migrate_estate``'s. Returns the exit code."""
    _warn_local_only_keys(cfg)
    own = spark is None
    session = spark if spark is not None else spark_session(master, conf)
    try:
        prepare(session.sparkContext)

        def run_table(c: Config, stop: threading.Event, **kw: Any) -> MigrationResult:
            return migrate(c, stop, engine=SparkEngine(session), **kw)

        return migrate_estate(
            cfg,
            stop,
            skip_failing_tables=skip_failing_tables,
            out=out,
            run_table=run_table,
            **options,
        )
    finally:
        if own:
            session.stop()


def _warn_local_only_keys(cfg: Config) -> None:
    """The `streaming*` tuning keys shape the local replayer's reads; Spark replay tasks read
    each shard in micro-batches of their own, so say (once) that they do not apply here."""
    given = local_only_given(cfg.source)
    if given:
        log.warning(
            "%s: %s not applied by the Spark engine (its replay reads each shard in "
            "micro-batches); the write budget (writeThroughput) still holds; run on the local "
            "engine to use them",
            cfg.path,
            ", ".join(f"source.{k}" for k in given),
        )
