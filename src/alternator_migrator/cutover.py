"""Cutover with a way back: switch the application to the target, keep the old primary in sync.

Run while the forward run (FORWARD: old primary -> new) replays; REVERSE is the same pair of
tables the other way round (source: the new primary, target: the old one). The steps:

(a) wait until the forward run keeps up with the source's stream;
(b) enable a NEW_IMAGE stream on the target table if it has none: it must capture every write
    the application makes there once it switches;
(c) the operator stops the application's writes to the source; wait until the source's stream
    has been quiet for the settle time and the forward savepoint covers it to its end;
(d) record, in REVERSE's savepoint, every shard of the target's stream at its current end (the
    snapshot marked not needed): the forward run's own writes are all before it, so the
    reverse run never copies them back;
(e) stop the forward run (SIGTERM to its lock's pid; wait until the lock is free).

Ctrl-C (or SIGTERM) at any step leaves things as they were (the stream enabled in (b) stays,
and is reused), so cutover can simply be run again; once done, running it again only repeats
the last line. Marks next to both savepoints (``state.handover``) keep the two directions from
running at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from .aws.client import DynamoClient, source_client, target_client
from .changes.alternator import change_source
from .changes.enable import NEW_IMAGE_VIEWS, ensure_stream
from .changes.streams import Shard
from .config import Config
from .errors import ConfigError, MigratorError, SavepointError, StreamError
from .state.handover import (
    DONE,
    RECORDED,
    Mark,
    lock_holder,
    read_mark,
    remove_mark,
    write_mark,
)
from .state.savepoint import SavepointStore, ShardPosition, table_identity
from .status import Status, status

log = logging.getLogger(__name__)

# Step (a): a forward run whose applied changes are at most this old keeps up; the exact
# "caught up" is waited for in step (c), once the application's writes are stopped.
KEEPING_UP_SECONDS = 60.0
END_PROBES = 3  # empty GetRecords pages in a row that end an open shard's read
SAY_EVERY = 5.0  # seconds between two lines of one wait


@dataclass
class Timeline:
    """How long each step took (seconds), in order."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    def line(self) -> str:
        return "Cutover timeline: " + ", ".join(f"{name} {secs:.1f}s" for name, secs in self.steps)


def _where(side: Any) -> str:
    ep = side.endpoint.url if side.endpoint else f"aws:{side.region}"
    return f"{ep}/{side.table}"


def check_pair(fwd: Config, rev: Config) -> None:
    """REVERSE must be FORWARD's tables the other way round, replaying a stream."""
    if _where(rev.source) != _where(fwd.target):
        raise ConfigError(
            f"{rev.path}: `source` is {_where(rev.source)}, but the forward run's target "
            f"({fwd.path}) is {_where(fwd.target)}: the reverse run reads the new primary; "
            "give REVERSE's source the forward target's table and endpoint"
        )
    if _where(rev.target) != _where(fwd.source):
        raise ConfigError(
            f"{rev.path}: `target` is {_where(rev.target)}, but the forward run's source "
            f"({fwd.path}) is {_where(fwd.source)}: the reverse run writes to the old primary"
        )
    if not rev.target.stream_changes or rev.target.kinesis is not None:
        raise ConfigError(
            f"{rev.path}: `target.streamChanges` must be true (the target's own stream): the "
            "reverse run replays the new primary's changes"
        )
    if not fwd.target.stream_changes or fwd.target.kinesis is not None:
        raise ConfigError(
            f"{fwd.path}: cutover needs a forward run that replays the source's DynamoDB "
            "Stream (`target.streamChanges: true`)"
        )


class _Say:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last: dict[str, float] = {}

    def __call__(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def every(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, 0.0) >= SAY_EVERY:
            self._last[key] = now
            self(text)


def _forward_status(fwd: Config) -> Status:
    return status(fwd)


def _positions(st: Status) -> dict[str, tuple[str | None, bool]]:
    return {s.shard_id: (s.sequence_number, s.finished) for s in st.shards}


def read_to_end(changes: Any, shard: Shard) -> ShardPosition:
    """Read one shard from its oldest record to its current end: the last sequence number
    (None: it holds no record) and whether it is closed and read through."""
    reader = changes.reader(shard, None)
    reader.min_interval = 0.0
    last: str | None = None
    it: str | None = None
    empties = 0
    while True:
        records, it = reader.fetch(it)
        if records:
            last, empties = records[-1]["dynamodb"]["SequenceNumber"], 0
            reader.read_to = last  # an expired iterator resumes after it
        else:
            empties += 1
        if it is None:
            return ShardPosition(last, True, shard.parent, adjacent_parent=shard.adjacent_parent)
        if empties >= END_PROBES:
            return ShardPosition(last, False, shard.parent, adjacent_parent=shard.adjacent_parent)


def stream_end(changes: Any) -> dict[str, ShardPosition]:
    """Every shard of the stream at its current end (shards read in parallel: Alternator has
    many)."""
    shards = changes.list_shards()
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="cutover-end") as pool:
        ends = list(pool.map(lambda s: read_to_end(changes, s), shards))
    return {s.shard_id: e for s, e in zip(shards, ends, strict=True)}


def _target_stream(client: DynamoClient, rev: Config, say: _Say) -> str:
    """(b) The new primary's stream: the one it has if it carries new images, else a new one."""
    table = rev.source.table
    desc = client.call("DescribeTable", {"TableName": table})["Table"]
    spec = desc.get("StreamSpecification") or {}
    if spec.get("StreamEnabled"):
        if spec.get("StreamViewType") not in NEW_IMAGE_VIEWS:
            raise StreamError(
                f"the target table {table!r} has a stream of view type "
                f"{spec.get('StreamViewType')}; the reverse run needs new images: disable it "
                "(or switch it to NEW_IMAGE) and run cutover again"
            )
        say(f"(b) The target table {table!r} has a stream: {desc.get('LatestStreamArn')}")
        return ensure_stream(client, desc, desc.get("LatestStreamArn"), poll_seconds=1.0)
    say(f"(b) Enabling a NEW_IMAGE stream on the target table {table!r}")
    try:
        return ensure_stream(client, desc, None, poll_seconds=1.0)
    except StreamError as e:
        raise StreamError(
            f"cannot enable a stream on the target table {table!r}, which the reverse run "
            f"needs ({e}). On ScyllaDB, Alternator Streams must be available (older versions: "
            "--experimental-features=alternator-streams)"
        ) from None


def cutover(
    fwd: Config,
    rev: Config,
    *,
    assume_yes: bool = False,
    settle: float = 10.0,
    out: TextIO | None = None,
    ask: Callable[[str], str] = input,
    poll: float = 0.5,
) -> Timeline:
    """Run the cutover; returns its timeline. KeyboardInterrupt at any step undoes that step
    (and is raised again, after one line saying so)."""
    check_pair(fwd, rev)
    say = _Say(out or sys.stdout)
    try:
        return _cutover(fwd, rev, assume_yes, settle, say, ask, poll)
    except KeyboardInterrupt:
        say(
            "Cutover stopped; what this step did is undone (a stream it enabled on the target "
            "stays and is reused). Run cutover again to go on"
        )
        raise


def _cutover(
    fwd: Config,
    rev: Config,
    assume_yes: bool,
    settle: float,
    say: _Say,
    ask: Callable[[str], str],
    poll: float,
) -> Timeline:
    timeline = Timeline()
    fstore, rstore = SavepointStore(fwd), SavepointStore(rev)
    mark = read_mark(rstore)
    holder = lock_holder(rstore.lock_file)
    if holder is not None:
        raise SavepointError(
            f"the reverse run of {rev.path} is running (pid {holder}); cutover comes before it"
        )
    pid = lock_holder(fstore.lock_file)
    if pid is None and mark is not None and mark.stage == DONE:
        say(
            "Cutover already done "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(mark.at))}: "
            "switch the application to the target now (if it is not yet)"
        )
        return timeline
    if mark is None and rstore.load() is not None:
        raise SavepointError(
            f"{rev.path} already has a savepoint ({rstore.file}) that cutover did not write: "
            "use a `savepoints.path` of its own for the reverse run, or move that file away"
        )
    if pid is None:
        if mark is not None and mark.stage == RECORDED:
            # Stopped during (e): the forward run stopped; finish if it had applied it all.
            return _finish(fwd, rev, fstore, rstore, timeline, say)
        raise MigratorError(
            f"the forward run of {fwd.path} is not running: cutover runs while "
            f"`alternator-migrator migrate --config {fwd.path}` replays the source's stream"
        )
    if pid < 0:
        raise MigratorError(f"cannot tell the pid of the forward run from {fstore.lock_file}")
    # A forward run with a mark of a finished cutover: a new cutover after a rollback.

    # (a) the forward run keeps up
    t0 = time.monotonic()
    say(f"(a) Waiting for the forward run (pid {pid}) to keep up with the source's stream")
    while True:
        st = _forward_status(fwd)
        behind = [s for s in st.shards if not s.finished and s.pending is not False]
        lags = [s.lag_seconds for s in behind]
        lag = max((x for x in lags if x is not None), default=0.0)
        if st.phase == "replay" and (
            st.caught_up or (None not in lags and lag <= KEEPING_UP_SECONDS)
        ):
            break
        say.every(
            "a",
            f"    forward run: phase {st.phase}, caught up {'yes' if st.caught_up else 'no'}, "
            f"lag {'unknown' if None in lags else f'{lag:.1f}s'}",
        )
        time.sleep(poll)
    say(f"(a) The forward run keeps up (lag {lag:.1f}s)")
    timeline.steps.append(("(a) forward keeps up", time.monotonic() - t0))

    with (
        source_client(rev.source, pool_size=8) as new_primary,
        target_client(rev.target, pool_size=2) as old_primary,
    ):
        # (b) the stream on the new primary, before the application writes there
        t0 = time.monotonic()
        arn = _target_stream(new_primary, rev, say)
        say(f"(b) Stream on the target enabled: {arn}")
        timeline.steps.append(("(b) target stream", time.monotonic() - t0))

        # (c) the application stops writing to the source; the forward run applies it all
        t0 = time.monotonic()
        if assume_yes:
            say("(c) --yes: the application's writes to the source are taken as stopped")
        else:
            answer = ask(
                f"(c) Stop the application's writes to the source table {fwd.source.table!r} "
                "now. Type 'yes' once they are stopped: "
            )
            if answer.strip().lower() != "yes":
                raise MigratorError("cutover not confirmed; nothing was changed")
        quiet_for = settle + fwd.source.settle_seconds
        say(
            f"(c) Waiting until the source's stream has been quiet for {quiet_for:g}s and the "
            "forward run has applied it to its end"
        )
        quiet_since = time.monotonic()
        last: dict[str, tuple[str | None, bool]] | None = None
        while True:
            st = _forward_status(fwd)
            now = time.monotonic()
            pos = _positions(st)
            if not st.caught_up or pos != last:
                quiet_since, last = now, pos
            elif now - quiet_since >= quiet_for:
                break
            say.every(
                "c",
                f"    forward run caught up: {'yes' if st.caught_up else 'no'}; "
                f"quiet for {now - quiet_since:.1f}s of {quiet_for:g}s",
            )
            time.sleep(poll)
        applied = last or {}
        say("(c) The source is quiet and the forward run has applied all of its stream")
        timeline.steps.append(("(c) source quiet and applied", time.monotonic() - t0))

        # (d) the reverse start position: the target's stream at its end
        t0 = time.monotonic()
        window = rev.source.settle_seconds
        wait = window - (time.monotonic() - quiet_since)
        if wait > 0:
            # The forward run's last writes must show in the target's stream before its end
            # is taken, or the reverse run would copy them back.
            say(f"(d) Waiting {wait:.1f}s for the target's stream to show the last writes")
            time.sleep(wait)
        say("(d) Reading the target's stream to its end")
        written = False
        try:
            ends = stream_end(change_source(rev, new_primary, arn))
            src = new_primary.call("DescribeTable", {"TableName": rev.source.table})["Table"]
            tgt = old_primary.call("DescribeTable", {"TableName": rev.target.table})["Table"]
            sp = rstore.new()
            sp.stream_arn = arn
            sp.skip_snapshot()  # the old primary has everything: only changes from now
            sp.shards = ends
            sp.source_table, sp.target_table = table_identity(src), table_identity(tgt)
            with rstore.exclusive():  # no reverse run may start on a half-written position
                write_mark(rstore, Mark("reverse", RECORDED, time.time(), str(fstore.lock_file)))
                written = True
                rstore.save(sp)
            with_records = sum(1 for p in ends.values() if p.sequence_number)
            say(
                f"(d) Reverse start position recorded in {rstore.file}: {len(ends)} shards "
                f"({with_records} with records, the rest from their first record)"
            )
            timeline.steps.append(("(d) reverse position", time.monotonic() - t0))
        except BaseException:
            if written:  # not half a cutover: the position would copy the forward run's writes
                rstore.discard()
                remove_mark(rstore)
            raise

    # (e) stop the forward run
    t0 = time.monotonic()
    try:
        write_mark(fstore, Mark("forward", DONE, time.time(), str(rstore.lock_file)))
        say(f"(e) Stopping the forward run (SIGTERM to pid {pid}); waiting for it to save and exit")
        os.kill(pid, signal.SIGTERM)
    except OSError as e:
        # Another user's process, or on another host sharing the savepoint directory: the
        # position stays recorded; once that run is stopped, cutover finishes.
        raise MigratorError(
            f"cannot signal the forward run (pid {pid}: {e.strerror}); stop it yourself "
            "(SIGTERM: it saves and exits), then run cutover again to finish"
        ) from None
    except BaseException:
        # Not signalled: everything stays as before this run of cutover.
        remove_mark(fstore)
        rstore.discard()
        remove_mark(rstore)
        raise
    while lock_holder(fstore.lock_file) is not None:
        say.every("e", f"    waiting for the forward run (pid {pid}) to release its lock")
        time.sleep(0.1)
    timeline.steps.append(("(e) forward stopped", time.monotonic() - t0))
    now_applied = _positions(_forward_status(fwd))
    if now_applied != applied:
        log.warning(
            "The forward run applied changes after the reverse position was recorded: does the "
            "application still write to the source? They were copied to the target, and the "
            "reverse run will copy them back (the same values)"
        )
    return _done(rev, rstore, fstore, timeline, say)


def _finish(
    fwd: Config,
    rev: Config,
    fstore: SavepointStore,
    rstore: SavepointStore,
    timeline: Timeline,
    say: _Say,
) -> Timeline:
    """A cutover stopped after it signalled the forward run: done if that run applied all."""
    st = _forward_status(fwd)
    if not st.caught_up:
        rstore.discard()
        remove_mark(rstore)
        remove_mark(fstore)
        raise MigratorError(
            f"the forward run of {fwd.path} stopped before it applied all of the source's "
            "stream; the reverse start position was removed. Start the forward run again, "
            "then run cutover again"
        )
    write_mark(fstore, Mark("forward", DONE, time.time(), str(rstore.lock_file)))
    return _done(rev, rstore, fstore, timeline, say)


def _done(
    rev: Config, rstore: SavepointStore, fstore: SavepointStore, timeline: Timeline, say: _Say
) -> Timeline:
    write_mark(rstore, Mark("reverse", DONE, time.time(), str(fstore.lock_file)))
    if timeline.steps:
        say(timeline.line())
    say(
        f"Switch the application to the target now ({_where(rev.source)}); then start the "
        f"reverse run: alternator-migrator migrate --config {rev.path}"
    )
    return timeline
