"""Replay the source's changes on the target, in order per item, until stopped.

Each round reads once from every ready shard (a child only once its parents are fully
applied), collapses the records to the last change per key, writes them, and only then
advances the shards' positions in the savepoint. A crash re-applies at most one round: puts of
full new images and deletes by key are idempotent.

The parts: a ``ChangeSource`` (DynamoDB Streams or Kinesis) lists shards and reads pages;
``ShardTree`` knows which shards are readable and their positions; ``ReadAhead`` reads the next
pages while ``BatchWriter`` writes; ``ReplayReport`` counts and reports; ``Replayer`` runs the
rounds. A source that may duplicate and reorder records (Kinesis) is applied newest-wins per key
(``KeyClock``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TextIO

from ..aws.client import DynamoClient, DynamoError
from ..aws.retry import RetryPolicy
from ..aws.throttle import RateLimiter
from ..changes.records import (
    EVENT_NAMES,
    Change,
    Decoder,
    KeyClock,
    PageDecoder,
    batch_size,
    check_record,
    collapse,
    collapse_keyed,
    newest_per_key,
    page_decoder,
    record_time,
)
from ..changes.shards import ChangeSource, ShardAdvance
from ..changes.streams import (
    GET_RECORDS_LIMIT,
    DynamoStreamSource,
    ShardReader,
    _trimmed,
)
from ..config import Config, options_given
from ..errors import (
    Interrupted,
    MigratorError,
    StreamError,
    StreamTrimmedError,
)
from ..gcpause import young_collections_rarer
from ..metrics import METRICS, retry_summary
from ..state.savepoint import Savepoint, SavepointStore
from ..target.sink import Sink

__all__ = [  # the record rules live in changes.records; callers import them from here too
    "EVENT_NAMES",
    "Change",
    "ChangeSource",
    "KeyClock",
    "check_record",
    "collapse",
    "newest_per_key",
    "record_time",
]

log = logging.getLogger(__name__)

_ONE_TRY = RetryPolicy(max_attempts=1)

# Labels of the op-count table, as the Scylla Migrator prints them; also the metrics' `type`.
OP_LABELS = {"INSERT": "INSERT", "MODIFY": "MODIFY", "REMOVE": "DELETE"}
# The Scylla Migrator printed its counts as a Spark table of this column and `count`.
OP_COLUMN = "_dynamo_op_type"


def op_label(event_name: str) -> str:
    return OP_LABELS.get(event_name, event_name)


def format_op_table(counts: Counter[str], table: str | None = None) -> str:
    """A bordered table with a header row, as Scylla Migrator users know it; '' when empty.
    ``table``: named in the title when one run replays several tables."""
    rows = [(op_label(op), counts[op]) for op in OP_LABELS if counts[op]]
    rows += [(op, n) for op, n in sorted(counts.items()) if op not in OP_LABELS and n]
    if not rows:
        return ""
    w1 = max(len(OP_COLUMN), *(len(label) + 1 for label, _ in rows))
    w2 = max(len("count"), *(len(str(n)) for _, n in rows))
    border = f"+{'-' * w1}+{'-' * w2}+"
    title = f"Changes to be applied to {table}:" if table else "Changes to be applied:"
    lines = [title, border, f"|{OP_COLUMN:<{w1}}|{'count':>{w2}}|", border]
    lines += [f"| {label:<{w1 - 1}}|{n:>{w2}}|" for label, n in rows]
    lines.append(border)
    return "\n".join(lines)


class OpTable:
    """Prints the op-count table after applied batches, at most once per ``every`` seconds.

    Batches in between are summed into the next table; ``flush`` prints what is left (at stop),
    so every applied record is counted in exactly one table.
    """

    def __init__(
        self,
        out: TextIO,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        table: str | None = None,
    ) -> None:
        self.out = out
        self.name = table
        self.every = every
        self.clock = clock
        self.pending: Counter[str] = Counter()
        self._printed_at: float | None = None

    def add(self, counts: Counter[str]) -> None:
        """After each round, with what it applied (maybe nothing): a sum held back while the
        stream went quiet is printed once it is due, not only at stop."""
        self.pending.update(counts)
        now = self.clock()
        if +self.pending and (self._printed_at is None or now - self._printed_at >= self.every):
            self.flush()

    def flush(self) -> None:
        table = format_op_table(self.pending, self.name)
        if table:
            self.out.write(table + "\n")
            self.out.flush()
            self._printed_at = self.clock()
        self.pending.clear()


def tuning(cfg: Config) -> dict[str, Any]:
    """Replayer options from the source's `streaming*` keys (only those given)."""
    return options_given(cfg.source)


class _ReadFailed(Exception):
    """A shard read failed after its own retries; nothing of the round was applied."""

    def __init__(self, cause: DynamoError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class BatchResult:
    records: int
    writes: int
    counts: Counter[str]
    lag_seconds: float | None
    more: bool = False  # ready shards not read in this round wait for the next ones


@dataclass
class ReplayStats:
    rounds: int = 0
    records: int = 0
    counts: Counter[str] = field(default_factory=Counter)


class ShardTree:
    """Which shards exist, which are readable (every parent fully applied), and their saved
    positions. Parents before children is what keeps one item's changes in order across a
    reshard."""

    def __init__(self, changes: ChangeSource, store: SavepointStore, sp: Savepoint) -> None:
        self.changes = changes
        self._labels = METRICS.scope()  # a table of a multi-table run: its `table` label
        self.store = store
        self.sp = sp
        self.readers: dict[str, ShardReader] = {}
        self.records_per_poll = GET_RECORDS_LIMIT
        self.refreshed_at = 0.0
        self.pages: PageDecoder | None = None  # given to each reader

    def refresh(self) -> None:
        shards = self.changes.list_shards()
        listed = {s.shard_id for s in shards}
        # Anything already recorded means we have read this stream before (this run or a
        # previous one); from then on every new shard's parent must be one we know.
        seen_before = bool(self.sp.shards)
        for sid, known in self.sp.shards.items():
            if not known.finished and sid not in listed:
                raise self._trimmed(sid, "the shard is no longer in the stream")
        for s in shards:
            if s.shard_id in self.readers:
                self.readers[s.shard_id].shard = s  # it may have closed since
                continue
            pos = self.sp.shards.get(s.shard_id)
            if pos is not None and pos.finished:
                continue
            for parent in s.parents if pos is None and seen_before else ():
                if parent not in listed and parent not in self.sp.shards:
                    # The parent opened, closed and aged out while we were not reading (a
                    # run stopped for longer than the retention): its records were never
                    # applied.
                    raise self._trimmed(
                        s.shard_id, f"its parent shard {parent} expired before it was read"
                    )
            reader = self.changes.reader(s, pos.sequence_number if pos else None)
            reader.limit = self.records_per_poll
            reader.pages = self.pages
            self.readers[s.shard_id] = reader
            if pos is None:
                self.sp.shard_seen(s.shard_id, s.parent, s.adjacent_parent)
        self.refreshed_at = time.monotonic()
        METRICS.set("stream_shards_open", float(len(self.readers)), **self._labels)

    def _trimmed(self, sid: str, detail: str) -> StreamTrimmedError:
        return _trimmed(sid, detail, self.changes.retention)

    def parents_done(self, r: ShardReader) -> bool:
        for parent in r.shard.parents:
            pos = self.sp.shards.get(parent)
            # A parent we never saw had aged out of the stream before this migration began.
            if pos is not None and not pos.finished:
                return False
        return True

    def ready(self) -> list[ShardReader]:
        return [r for r in self.readers.values() if self.parents_done(r)]

    def caught_up(self) -> bool:
        """Every readable shard was read to its current end (or closed), none waits."""
        return all(self.parents_done(r) and (r.drained or r.closed) for r in self.readers.values())

    def advance(self, ready: list[ShardReader], now: float) -> bool:
        """Record the applied positions of ``ready`` in the savepoint; True when a shard
        was read to its end (its children may become readable)."""
        closed_any = False
        for reader in ready:
            sid = reader.shard.shard_id
            self.sp.advance_shard(
                sid, reader.shard.parent, reader.position, reader.newest, reader.closed
            )
            # Lag: how far behind the source this shard is; none once it is drained.
            lag = 0.0 if reader.drained or reader.newest is None else now - reader.newest
            METRICS.set("replay_shard_lag_seconds", max(0.0, lag), shard=sid, **self._labels)
            if reader.closed:
                closed_any = True
                del self.readers[sid]
        return closed_any


# Records in flight (a round being written plus the pages read ahead) are held to this many
# bytes, whatever the number of shards: a round reads only as many shards as fit, in turn.
MEMORY_BUDGET = 64 * 1024 * 1024
# What one page may hold before any was seen: DynamoDB Streams answers up to 1 MB per call.
PAGE_BYTES_GUESS = 1024 * 1024


class ReadAhead:
    """The read pool: each shard's next GetRecords answer is fetched while the current batch
    is written. Nothing read ahead is applied or checkpointed before its turn.

    Answers are decoded into ``Change``s by the round (``decode``), in the thread that then
    collapses and writes them: a page decoded in a pool thread left its ~1 MB of records in
    another core's cache, and moving them there cost CPU (measured on a wide stream in paired
    runs: ~5% more per record, and 13 MiB more held)."""

    def __init__(self, workers: int, decoder: Decoder | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replay-read")
        self.decoder = decoder or Decoder()
        self._ahead: dict[str, Future[Any]] = {}

    def page(self, r: ShardReader) -> Future[Any]:
        """``r``'s next answer (``ShardReader.fetch_answer``), fetched ahead or now."""
        ahead = self._ahead.pop(r.shard.shard_id, None)
        return ahead if ahead is not None else self.pool.submit(r.fetch_answer, r.iterator)

    def decode(self, r: ShardReader, answer: Any) -> tuple[list[Change], str | None]:
        """An answer ``page`` gave, as checked changes and the next iterator (None: the shard
        is closed)."""
        records, nxt = r.decode(answer)
        return self.decoder.changes(records, r.shard.shard_id), nxt

    def prefetch(self, readers: list[ShardReader]) -> None:
        for r in readers:
            if not r.closed and r.shard.shard_id not in self._ahead:
                self._ahead[r.shard.shard_id] = self.pool.submit(r.fetch_answer, r.iterator)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class BatchWriter:
    """Turns one round's records into the fewest writes and sends them (the write pool).

    For a source that may duplicate and reorder (Kinesis) only each key's newest change is
    applied, judged against every earlier batch too (``KeyClock``)."""

    def __init__(
        self,
        sink: Sink,
        workers: int,
        expired: Callable[[dict[str, Any]], bool] | None,
        clock: KeyClock | None,
    ) -> None:
        self.sink = sink
        self.expired = expired
        self.clock = clock
        self.in_flight = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replay")

    def write(self, records: list[Change]) -> tuple[int, dict[bytes, float]]:
        """The writes sent, and (Kinesis) the times of the changes applied per key, which the
        clock learns once the round has settled (``Replayer.apply``)."""
        times: dict[bytes, float] = {}
        if self.clock is not None:
            records, times = newest_per_key(records, self.clock)
        last = collapse_keyed(records, self.sink, self.expired)
        # Keys are unique after collapse, so batches may be written concurrently: first
        # attempts from this thread (a thread per request costs more CPU than the request),
        # what they leave on the pool.
        n = self.sink.write_distinct(list(last.values()), self.in_flight, self.pool.map, list(last))
        return n, times

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


class ReplayReport:
    """Counts, metrics, the op-count table on ``out`` and the status line in the log."""

    def __init__(
        self,
        out: TextIO,
        status_seconds: float,
        table_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.table = OpTable(out, table_seconds, table=name)
        self._labels = METRICS.scope()  # a table of a multi-table run: its `table` label
        self.stats = ReplayStats()
        self.status_seconds = status_seconds
        self._status_at = time.monotonic()
        self._status_records = 0
        self._retries_logged = ""

    def account(self, result: BatchResult) -> None:
        self.stats.rounds += 1
        self.stats.records += result.records
        self.stats.counts.update(result.counts)
        for op, n in result.counts.items():
            METRICS.inc("stream_records_applied_total", n, type=op_label(op), **self._labels)
        if result.lag_seconds is not None:
            METRICS.set("replay_lag_seconds", result.lag_seconds, **self._labels)
        self.table.add(result.counts)
        if not result.records:
            return
        log.debug(
            "Applied %d stream records as %d writes; lag %s",
            result.records,
            result.writes,
            f"{result.lag_seconds:.1f}s" if result.lag_seconds is not None else "unknown",
        )
        retries = retry_summary()
        if retries != self._retries_logged:
            self._retries_logged = retries
            log.info("Retries so far by cause: %s", retries)

    def restart(self) -> None:
        self._status_at, self._status_records = time.monotonic(), 0

    def maybe_status(self, tree: ShardTree) -> None:
        """One line every few seconds, whether or not records flow."""
        now = time.monotonic()
        elapsed = now - self._status_at
        if elapsed < self.status_seconds:
            return
        rate = (self.stats.records - self._status_records) / elapsed if elapsed > 0 else 0.0
        lags = list(METRICS.gauges("replay_shard_lag_seconds").values())
        log.info(
            "Replay: %.1f records/s, lag %s, shards %d open (%d readable), caught up: %s",
            rate,
            f"{max(lags):.1f}s" if lags else "unknown",
            len(tree.readers),
            len(tree.ready()),
            "yes" if tree.caught_up() else "no",
        )
        self._status_at, self._status_records = now, self.stats.records


class Replayer:
    """The replay loop: each round reads the readable shards (``ShardTree``, ``ReadAhead``),
    writes the changes (``BatchWriter``), then checkpoints and reports (``ReplayReport``)."""

    def __init__(
        self,
        source: DynamoClient,
        sink: Sink,
        stream_arn: str,
        store: SavepointStore,
        savepoint: Savepoint,
        *,
        out: TextIO | None = None,
        refresh_seconds: float = 10.0,
        max_idle_sleep: float = 0.5,
        parallel_reads: int = 8,
        clock: Callable[[], float] = time.time,
        status_seconds: float = 5.0,
        table_seconds: float = 5.0,
        records_per_poll: int = GET_RECORDS_LIMIT,
        records_per_second: int | None = None,
        max_consecutive_errors: int = 1,
        expired: Callable[[dict[str, Any]], bool] | None = None,
        changes: ChangeSource | None = None,
        memory_budget: int | None = MEMORY_BUDGET,
        op_table_name: str | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.changes: ChangeSource = changes or DynamoStreamSource(source, stream_arn)
        self.arn = self.changes.arn
        self.store = store
        self.sp = savepoint
        self.refresh_seconds = refresh_seconds
        self.max_idle_sleep = max_idle_sleep
        self.clock = clock
        self.tree = ShardTree(self.changes, store, savepoint)
        # A poll never asks for more than a second's worth of the rate cap, so the cap's wait
        # after a poll stays short and a stop is seen within seconds.
        self.tree.records_per_poll = min(records_per_poll, records_per_second or records_per_poll)
        decoder = Decoder(sink.renames, expired)
        self.reads = ReadAhead(parallel_reads, decoder)
        self.tree.pages = page_decoder(decoder)
        # None: every ready shard in every round (the Spark engine's executors read instead).
        self.memory_budget = memory_budget
        self.page_bytes = PAGE_BYTES_GUESS  # the largest page seen so far
        self._turn = 0  # where the next round starts in the ready shards
        self._upcoming: list[ShardReader] = []
        self.key_clock: KeyClock | None = None
        if not self.changes.ordered:
            self.key_clock = KeyClock()
            self.key_clock.load(savepoint.recent_changes)
        self.writer = BatchWriter(sink, parallel_reads, expired, self.key_clock)
        self.report = ReplayReport(out or sys.stdout, status_seconds, table_seconds, op_table_name)
        self._rate = RateLimiter(records_per_second)
        self.max_consecutive_errors = max_consecutive_errors
        # Kept for callers of the single-class Replayer (tests shut the pools down).
        self._pool, self._reads = self.writer.pool, self.reads.pool
        self.table = self.report.table

    @property
    def records_per_poll(self) -> int:
        return self.tree.records_per_poll

    @property
    def readers(self) -> dict[str, ShardReader]:
        return self.tree.readers

    @property
    def stats(self) -> ReplayStats:
        return self.report.stats

    def refresh(self) -> None:
        self.tree.refresh()

    def ready(self) -> list[ShardReader]:
        return self.tree.ready()

    def caught_up(self) -> bool:
        return self.tree.caught_up()

    # -- one round
    def round(self) -> BatchResult:
        if time.monotonic() - self.tree.refreshed_at > self.refresh_seconds:
            self.tree.refresh()
        batch, self._upcoming, more = self._rotation(self.tree.ready())
        result = self.apply(batch)
        result.more = more
        if self.tree.advance(batch, self.clock()):
            self.tree.refresh()  # children of a closed shard become readable now
        self.report.account(result)
        age = self.store.age()
        if age is None or age >= self.store.interval:
            self._keep_key_clock()
        self.store.maybe_save(self.sp)
        return result

    def _rotation(
        self, ready: list[ShardReader]
    ) -> tuple[list[ShardReader], list[ShardReader], bool]:
        """This round's shards, the next round's (read ahead meanwhile), and whether shards
        are left for later rounds of this turn. Half the budget is for the round, half for
        what is read ahead; with more ready shards than fit, rounds take them in turn."""
        if self.memory_budget is None:
            return ready, ready, False
        per_round = max(1, self.memory_budget // (2 * self.page_bytes))
        if len(ready) <= per_round:
            self._turn = 0
            return ready, ready, False
        start = self._turn % len(ready)
        batch = (ready + ready)[start : start + per_round]
        upcoming = (ready + ready)[start + per_round : start + 2 * per_round]
        self._turn = start + per_round
        return batch, upcoming, self._turn < len(ready)

    def _keep_key_clock(self) -> None:
        if self.key_clock is not None:
            self.sp.keep_recent_changes(self.key_clock.recent())

    def read(self, ready: list[ShardReader]) -> list[tuple[ShardReader, list[Change]]]:
        """One page from each shard, all or nothing: a failed round leaves every shard where
        it was and may simply be run again. Each page is checked as it is decoded, before
        anything of this round is written or checkpointed."""
        pages = {r: self.reads.page(r) for r in ready}
        answers: dict[ShardReader, Any] = {}
        failed: DynamoError | None = None
        for r, page in pages.items():
            try:
                answers[r] = page.result()
            except DynamoError as e:
                if not e.retryable:
                    raise
                failed = failed or e
        if failed is not None:
            raise _ReadFailed(failed)
        decoded = [(r, self.reads.decode(r, answer)) for r, answer in answers.items()]
        fetched = []
        for r, (changes, nxt) in decoded:
            r.commit(changes, nxt)
            self.page_bytes = max(self.page_bytes, batch_size(changes))
            fetched.append((r, changes))
        return fetched

    def apply(self, ready: list[ShardReader]) -> BatchResult:
        """Read once from each shard, write the changes, then advance each reader's position.

        The one step an engine swaps out (the Spark engine runs it on executors).
        """
        fetched = self.read(ready)
        records = list(chain.from_iterable(changes for _, changes in fetched))
        self._rate.acquire(len(records))
        writes, times = 0, dict[bytes, float]()
        if records:
            self.reads.prefetch(self._upcoming)  # reads overlap the writes below
            writes, times = self.writer.write(records)
        result = self.settle(ready, [ShardAdvance.after(r, c) for r, c in fetched])
        if self.key_clock is not None:  # the round's times at once, not split per shard
            self.key_clock.note_all(times)
        result.writes = writes  # collapsed across shards: counted per round
        return result

    def settle(self, ready: list[ShardReader], advances: Sequence[ShardAdvance]) -> BatchResult:
        """What each shard's batch applied, whichever engine ran it: the readers move on, the
        key clock learns the changes applied, and the round's counts and lag. Positions reach
        the savepoint in ``ShardTree.advance``."""
        by_shard = {a.shard_id: a for a in advances}
        result = BatchResult(0, 0, Counter(), None)
        newest_all: float | None = None
        for reader in ready:
            a = by_shard.get(reader.shard.shard_id)
            if a is None:
                continue
            reader.position, reader.iterator = a.position, a.iterator
            reader.closed, reader.drained = a.closed, a.drained
            result.records += a.records
            result.writes += a.writes
            result.counts.update(a.counts)
            if a.newest is not None:
                reader.newest = max(a.newest, reader.newest or a.newest)
                newest_all = max(a.newest, newest_all or a.newest)
            if self.key_clock is not None:
                self.key_clock.note_all(a.key_times)
        if newest_all is not None:
            result.lag_seconds = max(0.0, self.clock() - newest_all)
        return result

    def _check_source_table(self, cause: Exception) -> None:
        """A stream that fails to answer may belong to a table that was deleted: say so."""
        try:
            self.source.call("DescribeTable", {"TableName": self.sp.table}, retry=_ONE_TRY)
        except DynamoError as e:
            if e.code == "ResourceNotFoundException":
                what = f"{cause.op}: {cause.code}" if isinstance(cause, DynamoError) else cause
                raise StreamError(
                    f"the source table {self.sp.table!r} was deleted during the replay "
                    f"({self.source.where}); its stream can no longer be read ({what}), so "
                    "changes after the last applied record may be missing from the target"
                ) from None
        except MigratorError:
            pass  # the original error says more

    def run(self, stop: threading.Event, stop_when_caught_up: float | None = None) -> ReplayStats:
        with young_collections_rarer():
            return self._run(stop, stop_when_caught_up)

    def _run(self, stop: threading.Event, stop_when_caught_up: float | None) -> ReplayStats:
        idle_sleep = 0.0
        quiet_since: float | None = None
        unsaved = False  # positions applied since the replay last read every shard to its end
        self.report.restart()
        errors = 0
        try:
            self.tree.refresh()
            while not stop.is_set():
                self.report.maybe_status(self.tree)
                try:
                    result = self.round()
                except _ReadFailed as e:
                    errors += 1
                    if errors >= self.max_consecutive_errors:
                        raise e.cause from None
                    log.warning(
                        "Stream read failed (%d of %d in a row allowed by "
                        "streamingMaxConsecutiveErrors): %s; polling again",
                        errors,
                        self.max_consecutive_errors,
                        e.cause.code,
                    )
                    stop.wait(min(5.0, 0.1 * 2**errors))
                    continue
                errors = 0
                if result.records:
                    idle_sleep = 0.0
                    quiet_since = None
                    unsaved = True
                    continue
                if result.more:
                    continue  # the other shards of this turn may have records: no pause
                if unsaved and self.tree.caught_up():
                    # Read to the end: saved now, so `status` and `cutover` see it without
                    # waiting out `savepoints.intervalSeconds`.
                    self._keep_key_clock()
                    self.store.save(self.sp)
                    unsaved = False
                if stop_when_caught_up is not None and self.tree.caught_up():
                    now = time.monotonic()
                    quiet_since = quiet_since or now
                    if now - quiet_since >= stop_when_caught_up:
                        log.info(
                            "Caught up: no new stream records for %.0fs; stopping",
                            stop_when_caught_up,
                        )
                        break
                # Nothing new: back off so an idle source is not hammered with GetRecords.
                idle_sleep = min(self.max_idle_sleep, max(0.05, idle_sleep * 2))
                stop.wait(idle_sleep)
        except Interrupted:
            pass  # stopped mid-round: positions stay at the last applied round
        except (DynamoError, StreamError, StreamTrimmedError) as e:
            self._check_source_table(e)
            raise
        finally:
            self.report.table.flush()  # the batches since the last table, always shown at stop
            self._keep_key_clock()
            self.store.save(self.sp)
            self.writer.shutdown()
            self.reads.shutdown()
            log.info("Replay ended; retries by cause: %s", retry_summary() or "none")
        return self.stats
