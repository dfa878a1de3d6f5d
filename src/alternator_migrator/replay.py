"""Replay the source stream on the target, in order per item, until stopped.

Each round reads once from every ready shard (a child only once its parent is fully applied),
collapses the records to the last change per key, writes them, and only then advances the
shards' positions in the savepoint. A crash re-applies at most one round: puts of full new
images and deletes by key are idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from .checkpoint import Savepoint, SavepointStore, ShardPosition
from .clients import DynamoClient, DynamoError
from .config import Config
from .errors import (
    Interrupted,
    MigratorError,
    StreamError,
    StreamRecordError,
    StreamTrimmedError,
)
from .metrics import METRICS, retry_summary
from .retry import RetryPolicy
from .sink import Request, Sink, key_id
from .streams import GET_RECORDS_LIMIT, Page, ShardReader, _trimmed, list_shards
from .throttle import RateLimiter

log = logging.getLogger(__name__)

_ONE_TRY = RetryPolicy(max_attempts=1)

# Labels of the op-count table, as the Scylla Migrator prints them; also the metrics' `type`.
OP_LABELS = {"INSERT": "INSERT", "MODIFY": "MODIFY", "REMOVE": "DELETE"}
# The Scylla Migrator printed its counts as a Spark table of this column and `count`.
OP_COLUMN = "_dynamo_op_type"


def op_label(event_name: str) -> str:
    return OP_LABELS.get(event_name, event_name)


def format_op_table(counts: Counter[str]) -> str:
    """A bordered table with a header row, as Scylla Migrator users know it; '' when empty."""
    rows = [(op_label(op), counts[op]) for op in OP_LABELS if counts[op]]
    rows += [(op, n) for op, n in sorted(counts.items()) if op not in OP_LABELS and n]
    if not rows:
        return ""
    w1 = max(len(OP_COLUMN), *(len(label) + 1 for label, _ in rows))
    w2 = max(len("count"), *(len(str(n)) for _, n in rows))
    border = f"+{'-' * w1}+{'-' * w2}+"
    lines = ["Changes to be applied:", border, f"|{OP_COLUMN:<{w1}}|{'count':>{w2}}|", border]
    lines += [f"| {label:<{w1 - 1}}|{n:>{w2}}|" for label, n in rows]
    lines.append(border)
    return "\n".join(lines)


class OpTable:
    """Prints the op-count table after applied batches, at most once per ``every`` seconds.

    Batches in between are summed into the next table; ``flush`` prints what is left (at stop),
    so every applied record is counted in exactly one table.
    """

    def __init__(
        self, out: TextIO, every: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
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
        table = format_op_table(self.pending)
        if table:
            self.out.write(table + "\n")
            self.out.flush()
            self._printed_at = self.clock()
        self.pending.clear()


def record_time(record: dict[str, Any]) -> float | None:
    """ApproximateCreationDateTime as epoch seconds (a number on the wire; tolerate a string)."""
    v = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except ValueError:
        try:
            return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")


def check_record(rec: dict[str, Any], shard: str | None = None) -> None:
    """Refuse a record we cannot apply exactly, naming it: skipping it would lose a change,
    and guessing (a put without its image, a delete without its key) would corrupt one."""
    d = rec.get("dynamodb")
    d = d if isinstance(d, dict) else {}
    name = rec.get("eventName")
    problem = None
    if name not in EVENT_NAMES:
        problem = f"has an unknown eventName {name!r} (expected INSERT, MODIFY or REMOVE)"
    elif not isinstance(d.get("SequenceNumber"), str):
        problem = "has no SequenceNumber"
    elif not isinstance(d.get("Keys"), dict) or not d["Keys"]:
        problem = "has no Keys"
    elif name != "REMOVE" and not isinstance(d.get("NewImage"), dict):
        problem = "has no NewImage (the stream's view type must be NEW_IMAGE or NEW_AND_OLD_IMAGES)"
    if problem is None:
        return
    where = f" of shard {shard}" if shard else ""
    raise StreamRecordError(
        f"stream record {rec.get('eventID', '?')} (sequence number "
        f"{d.get('SequenceNumber', '?')}){where} {problem}; stopped before applying it, and the "
        "savepoint stays before it"
    )


def collapse(
    records: Sequence[dict[str, Any]],
    sink: Sink,
    expired: Callable[[dict[str, Any]], bool] | None = None,
    shard: str | None = None,
) -> list[Request]:
    """The last change per key, as BatchWriteItem requests; order across keys is irrelevant.

    An image whose TTL has already passed (``expired``) is not written: the key is deleted
    instead, so an older live copy on the target does not outlive the source's. A record that
    cannot be applied exactly stops the run (``check_record``).
    """
    last: dict[bytes, Request] = {}
    for rec in records:
        check_record(rec, shard)
        d = rec["dynamodb"]
        k = key_id(d["Keys"])
        if rec["eventName"] == "REMOVE":
            last[k] = sink.delete(d["Keys"])
        else:
            image = d["NewImage"]
            if expired is not None and expired(image):
                METRICS.inc("stream_images_expired_total")
                last[k] = sink.delete(d["Keys"])
            else:
                last[k] = sink.put(image)
    return list(last.values())


def tuning(cfg: Config) -> dict[str, Any]:
    """Replayer options from the source's `streaming*` keys (only those given)."""
    s = cfg.source
    opts: dict[str, Any] = {}
    if s.streaming_poll_interval_seconds is not None:
        opts["max_idle_sleep"] = s.streaming_poll_interval_seconds
    if s.streaming_polling_pool_size is not None:
        opts["parallel_reads"] = s.streaming_polling_pool_size
    if s.streaming_max_records_per_poll is not None:
        opts["records_per_poll"] = s.streaming_max_records_per_poll
    if s.streaming_max_records_per_second is not None:
        opts["records_per_second"] = s.streaming_max_records_per_second
    if s.streaming_max_consecutive_errors is not None:
        opts["max_consecutive_errors"] = s.streaming_max_consecutive_errors
    return opts


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


@dataclass
class ReplayStats:
    rounds: int = 0
    records: int = 0
    counts: Counter[str] = field(default_factory=Counter)


class Replayer:
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
    ) -> None:
        self.source = source
        self.sink = sink
        self.arn = stream_arn
        self.store = store
        self.sp = savepoint
        self.out = out or sys.stdout
        self.table = OpTable(self.out, table_seconds)
        self.refresh_seconds = refresh_seconds
        self.max_idle_sleep = max_idle_sleep
        self.readers: dict[str, ShardReader] = {}
        self.stats = ReplayStats()
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=parallel_reads, thread_name_prefix="replay")
        self._reads = ThreadPoolExecutor(
            max_workers=parallel_reads, thread_name_prefix="replay-read"
        )
        self._prefetched: dict[str, Future[Page]] = {}
        self._last_refresh = 0.0
        self._retries_logged = ""
        self.status_seconds = status_seconds
        self._status_at = time.monotonic()
        self._status_records = 0
        # A poll never asks for more than a second's worth of the rate cap, so the cap's wait
        # after a poll stays short and a stop is seen within seconds.
        self.records_per_poll = min(records_per_poll, records_per_second or records_per_poll)
        self._rate = RateLimiter(records_per_second)
        self.max_consecutive_errors = max_consecutive_errors
        self.expired = expired

    # -- shard tree
    def refresh(self) -> None:
        shards = list_shards(self.source, self.arn)
        listed = {s.shard_id for s in shards}
        # Anything already recorded means we have read this stream before (this run or a
        # previous one); from then on every new shard's parent must be one we know.
        seen_before = bool(self.sp.shards)
        for sid, known in self.sp.shards.items():
            if not known.finished and sid not in listed:
                raise _trimmed(sid, "the shard is no longer in the stream")
        for s in shards:
            if s.shard_id in self.readers:
                continue
            pos = self.sp.shards.get(s.shard_id)
            if pos is not None and pos.finished:
                continue
            if (
                pos is None
                and seen_before
                and s.parent is not None
                and s.parent not in listed
                and s.parent not in self.sp.shards
            ):
                # The parent opened, closed and aged out while we were not reading (a run
                # stopped for over a day): its records were never applied.
                raise _trimmed(
                    s.shard_id, f"its parent shard {s.parent} expired before it was read"
                )
            reader = ShardReader(self.source, self.arn, s, pos.sequence_number if pos else None)
            reader.limit = self.records_per_poll
            self.readers[s.shard_id] = reader
            if pos is None:
                with self.store.lock:
                    self.sp.shards[s.shard_id] = ShardPosition(None, False, s.parent)
        self._last_refresh = time.monotonic()
        METRICS.set("stream_shards_open", float(len(self.readers)))

    def _parent_done(self, r: ShardReader) -> bool:
        parent = r.shard.parent
        if parent is None:
            return True
        pos = self.sp.shards.get(parent)
        # A parent we never saw has aged out of the stream before this migration began.
        return pos is None or pos.finished

    def ready(self) -> list[ShardReader]:
        return [r for r in self.readers.values() if self._parent_done(r)]

    # -- one round
    def round(self) -> BatchResult:
        if time.monotonic() - self._last_refresh > self.refresh_seconds:
            self.refresh()
        ready = self.ready()
        result = self.apply(ready)
        closed_any = False
        now = self.clock()
        with self.store.lock:
            for reader in ready:
                sid = reader.shard.shard_id
                pos = self.sp.shards.setdefault(sid, ShardPosition(parent=reader.shard.parent))
                pos.sequence_number = reader.position
                if reader.newest is not None:
                    pos.last_record_time = reader.newest
                # Lag: how far behind the source this shard is; none once it is drained.
                lag = 0.0 if reader.drained or reader.newest is None else now - reader.newest
                METRICS.set("replay_shard_lag_seconds", max(0.0, lag), shard=sid)
                if reader.closed:
                    pos.finished = True
                    closed_any = True
                    del self.readers[reader.shard.shard_id]
        if closed_any:
            self.refresh()  # children of a closed shard become readable now
        self._account(result)
        return result

    def apply(self, ready: list[ShardReader]) -> BatchResult:
        """Read once from each shard, write the changes, then advance each reader's position.

        The one step an engine swaps out (the Spark engine runs it on executors).
        """
        pages = {}
        for r in ready:
            ahead = self._prefetched.pop(r.shard.shard_id, None)
            pages[r] = ahead if ahead is not None else self._reads.submit(r.fetch, r.iterator)
        # Every read must succeed before any reader moves on: a failed round then leaves all
        # shards where they were and may simply be run again.
        results: dict[ShardReader, Page] = {}
        failed: DynamoError | None = None
        for r, page in pages.items():
            try:
                results[r] = page.result()
            except DynamoError as e:
                if not e.retryable:
                    raise
                failed = failed or e
        if failed is not None:
            raise _ReadFailed(failed)
        for r, (recs, _) in results.items():
            for rec in recs:  # before anything of this round is written or checkpointed
                check_record(rec, r.shard.shard_id)
        fetched = []
        for r, (recs, nxt) in results.items():
            r.commit(recs, nxt)
            fetched.append((r, recs))
        records = [rec for _, recs in fetched for rec in recs]
        self._rate.acquire(len(records))
        if records:
            # Read the next pages while this batch is written: reads and writes overlap, and
            # nothing read ahead is applied or checkpointed before its turn.
            for r in ready:
                if not r.closed:
                    self._prefetched[r.shard.shard_id] = self._reads.submit(r.fetch, r.iterator)
        result = BatchResult(len(records), 0, Counter(rec["eventName"] for rec in records), None)
        if records:
            requests = collapse(records, self.sink, self.expired)
            chunks = [
                requests[i : i + self.sink.max_batch]
                for i in range(0, len(requests), self.sink.max_batch)
            ]
            # Keys are unique after collapse, so chunks may be written concurrently.
            for _ in self._pool.map(self.sink.write, chunks):
                pass
            result.writes = len(requests)
            times = [t for t in (record_time(r) for r in records) if t is not None]
            if times:
                result.lag_seconds = max(0.0, self.clock() - max(times))
        for reader, recs in fetched:
            if recs:
                reader.position = recs[-1]["dynamodb"]["SequenceNumber"]
                reader.newest = record_time(recs[-1]) or reader.newest
        return result

    def _account(self, result: BatchResult) -> None:
        self.stats.rounds += 1
        self.stats.records += result.records
        self.stats.counts.update(result.counts)
        for op, n in result.counts.items():
            METRICS.inc("stream_records_applied_total", n, type=op_label(op))
        if result.lag_seconds is not None:
            METRICS.set("replay_lag_seconds", result.lag_seconds)
        self.table.add(result.counts)
        if result.records:
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
        self.store.maybe_save(self.sp)

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

    def caught_up(self) -> bool:
        """Every readable shard was read to its current end (or closed)."""
        return all(r.drained or r.closed for r in self.ready()) and not any(
            not self._parent_done(r) for r in self.readers.values()
        )

    def _status_line(self, now: float) -> None:
        """One line every few seconds, whether or not records flow."""
        elapsed = now - self._status_at
        rate = (self.stats.records - self._status_records) / elapsed if elapsed > 0 else 0.0
        lags = list(METRICS.gauges("replay_shard_lag_seconds").values())
        log.info(
            "Replay: %.1f records/s, lag %s, shards %d open (%d readable), caught up: %s",
            rate,
            f"{max(lags):.1f}s" if lags else "unknown",
            len(self.readers),
            len(self.ready()),
            "yes" if self.caught_up() else "no",
        )
        self._status_at, self._status_records = now, self.stats.records

    def run(self, stop: threading.Event, stop_when_caught_up: float | None = None) -> ReplayStats:
        idle_sleep = 0.0
        quiet_since: float | None = None
        self._status_at, self._status_records = time.monotonic(), 0
        errors = 0
        try:
            self.refresh()
            while not stop.is_set():
                if time.monotonic() - self._status_at >= self.status_seconds:
                    self._status_line(time.monotonic())
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
                    continue
                if stop_when_caught_up is not None and self.caught_up():
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
            self.table.flush()  # the batches since the last table, always shown at stop
            self.store.save(self.sp)
            self._pool.shutdown(wait=True)
            self._reads.shutdown(wait=True, cancel_futures=True)
            log.info("Replay ended; retries by cause: %s", retry_summary() or "none")
        return self.stats
