"""Where a migration stands, from its savepoint and a read-only look at the source stream."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from .aws.client import DynamoError, kinesis_client, source_client
from .changes.alternator import change_source
from .changes.kinesis import KinesisSource
from .changes.streams import Shard
from .config import Config
from .errors import StreamError
from .pipeline.replay import ChangeSource
from .state.savepoint import Savepoint, SavepointStore

PROBE_CALLS = 5  # GetRecords pages to look through: DynamoDB may answer empty pages mid-shard


@dataclass
class ShardStatus:
    shard_id: str
    parent: str | None
    sequence_number: str | None
    finished: bool
    lag_seconds: float | None
    pending: bool | None  # records after the savepoint position; None: not checked


@dataclass
class Status:
    phase: str  # not started | snapshot | replay | done
    savepoint_file: str
    savepoint_age_seconds: float | None = None
    segments_done: int = 0
    segments_total: int | None = None
    segments_partial: int = 0
    stream_arn: str | None = None
    shards: list[ShardStatus] = field(default_factory=list)
    snapshot_complete: bool = False  # every unit copied (or the snapshot skipped on purpose)
    # Units never copied that `skipSegments` keeps skipping: the target lacks their items.
    segments_skipped: list[int] = field(default_factory=list)
    # `source.streamsSettleSeconds`: the stream shows a write this long after it (Alternator).
    settle_seconds: float = 0.0
    # Seconds since the newest applied change (or, none applied, since the positions were
    # first recorded): how long the visible stream has been quiet, plus the settle time.
    quiet_seconds: float | None = None

    @property
    def caught_up(self) -> bool | None:
        """All shards read to their end and the snapshot complete; None when there is no
        replay to be caught up in. A target missing skipped segments is never caught up:
        this is what a cut-over waits for.

        With a settle time, an empty read only covers the stream up to `settle` seconds ago,
        and while writes go on the newest applied change is about `settle` old: caught up is
        said once that change is twice the settle time old (the stream showed nothing new for
        a whole settle time after it)."""
        if self.phase != "replay":
            return None
        if self.segments_skipped:
            return False
        drained = all(s.finished or s.pending is False for s in self.shards)
        if not drained or self.settle_seconds <= 0:
            return drained
        return self.quiet_seconds is not None and self.quiet_seconds >= 2 * self.settle_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "savepoint": self.savepoint_file,
            "savepointAgeSeconds": self.savepoint_age_seconds,
            "segmentsDone": self.segments_done,
            "segmentsTotal": self.segments_total,
            "segmentsPartial": self.segments_partial,
            "snapshotComplete": self.snapshot_complete,
            "segmentsSkipped": self.segments_skipped,
            "streamArn": self.stream_arn,
            "caughtUp": self.caught_up,
            "settleSeconds": self.settle_seconds,
            "quietSeconds": self.quiet_seconds,
            "shards": [s.__dict__ for s in self.shards],
        }


def _pending(changes: ChangeSource, shard: Shard, position: str | None) -> bool:
    reader = changes.reader(shard, position)
    reader.limit = 1
    it: str | None = None
    for _ in range(PROBE_CALLS):
        records, it = reader.fetch(it)
        if records:
            return True
        if not it:
            return False
    return False


def _shards(changes: ChangeSource, sp: Savepoint, now: float) -> list[ShardStatus]:
    out: list[ShardStatus] = []
    listed = {s.shard_id: s for s in changes.list_shards()}
    for sid in sorted(set(listed) | set(sp.shards)):
        pos = sp.shards.get(sid)
        finished = bool(pos and pos.finished)
        seq = pos.sequence_number if pos else None
        pending: bool | None = None
        if not finished and sid in listed:
            try:
                pending = _pending(changes, listed[sid], seq)
            except (DynamoError, StreamError):
                pending = None
        if finished or pending is False:
            # Read to its end: nothing is waiting, so it is not behind however old its last
            # record is (an idle source writes nothing new).
            lag: float | None = 0.0
        else:
            lag = now - pos.last_record_time if pos and pos.last_record_time else None
        parent = pos.parent if pos else listed[sid].parent
        out.append(ShardStatus(sid, parent, seq, finished, lag, pending))
    return out


def status(cfg: Config, *, probe_stream: bool = True) -> Status:
    store = SavepointStore(cfg)
    sp = store.load()
    if sp is None:
        return Status("not started", str(store.file))
    now = time.time()
    missing = sp.units_missing()
    skipped = [n for n in missing if n in cfg.skip_segments and sp.unit_position(n) is None]
    if sp.snapshot_done:
        phase = "replay" if sp.stream_arn else "done"
    else:
        # Shards are recorded once the replay starts, which follows a snapshot whose only
        # missing units are skipped ones (as the Scylla Migrator does): the replay runs.
        replaying = bool(sp.shards) and bool(missing) and len(skipped) == len(missing)
        phase = "replay" if replaying else "snapshot"
    st = Status(
        phase=phase,
        savepoint_file=str(store.file),
        savepoint_age_seconds=now - sp.updated_at if sp.updated_at else None,
        segments_done=len(sp.segments_done),
        segments_total=sp.total_segments,
        segments_partial=len(sp.segment_keys),
        stream_arn=sp.stream_arn,
        snapshot_complete=sp.snapshot_done,
        segments_skipped=skipped,
    )
    if sp.stream_arn and probe_stream:
        kinesis = cfg.target.kinesis
        if kinesis is not None and kinesis.stream_arn == sp.stream_arn:
            with kinesis_client(cfg.source, pool_size=2) as client:
                st.shards = _shards(KinesisSource(client, sp.stream_arn, sp.table), sp, now)
        else:
            with source_client(cfg.source, pool_size=2) as client:
                st.shards = _shards(change_source(cfg, client, sp.stream_arn), sp, now)
            st.settle_seconds = cfg.source.settle_seconds
            times = [p.last_record_time for p in sp.shards.values() if p.last_record_time]
            st.quiet_seconds = now - (max(times) if times else sp.created_at)
    return st


def _age(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds:.1f}s"


def print_status(st: Status, out: TextIO | None = None) -> None:
    w = (out or sys.stdout).write
    w(f"Phase: {st.phase}\n")
    if st.phase == "not started":
        w(f"Savepoint: no savepoint yet (a run will write {st.savepoint_file})\n")
        return
    w(f"Savepoint: {st.savepoint_file} (written {_age(st.savepoint_age_seconds)} ago)\n")
    total = st.segments_total if st.segments_total is not None else "?"
    w(f"Snapshot: {st.segments_done}/{total} segments done, {st.segments_partial} in progress\n")
    if st.segments_skipped:
        w(
            f"Snapshot INCOMPLETE: segments {', '.join(map(str, st.segments_skipped))} never "
            "copied (skipSegments); the target lacks their items: remove them from "
            "skipSegments and run migrate again\n"
        )
    if st.stream_arn:
        open_shards = [s for s in st.shards if not s.finished]
        w(f"Stream: {st.stream_arn} ({len(st.shards)} shards, {len(open_shards)} open)\n")
        for s in st.shards:
            state = (
                "finished"
                if s.finished
                else {True: "behind", False: "caught up", None: "unknown"}[s.pending]
            )
            w(
                f"  {s.shard_id}  {state:<9}  lag {_age(s.lag_seconds):>8}  at {s.sequence_number or 'start'}\n"
            )
        lags = [s.lag_seconds for s in st.shards if s.lag_seconds is not None]
        lag = "unknown" if not lags else f"{max(lags):.1f}s"
        why = " (the snapshot is incomplete)" if st.segments_skipped else ""
        w(f"Caught up: {'yes' if st.caught_up else 'no'} (lag {lag}){why}\n")

        if st.settle_seconds > 0:
            w(
                f"Settle: the stream shows a write {st.settle_seconds:g}s after it; newest "
                f"applied change {_age(st.quiet_seconds)} ago (caught up needs "
                f"{2 * st.settle_seconds:g}s)\n"
            )


def estate_status(cfg: Config, *, probe_stream: bool = True) -> list[tuple[Config, Status]]:
    """The status of every table of a multi-table run (one entry for a single-table config)."""
    from .pipeline.tables import tables_of

    with tables_of(cfg) as cfgs:
        return [(c, status(c, probe_stream=probe_stream)) for c in cfgs]


def print_estate_status(tables: list[tuple[Config, Status]], out: TextIO | None = None) -> None:
    """One line per table (phase, snapshot progress, lag, caught up) and a total."""
    w = (out or sys.stdout).write
    phases: dict[str, int] = {}
    for c, st in tables:
        total = st.segments_total if st.segments_total is not None else "?"
        lags = [s.lag_seconds for s in st.shards if s.lag_seconds is not None]
        lag = f"lag {max(lags):.1f}s" if lags else "lag -"
        up = {True: "caught up: yes", False: "caught up: no", None: "caught up: -"}[st.caught_up]
        incomplete = " (INCOMPLETE: segments skipped)" if st.segments_skipped else ""
        w(
            f"{c.source.table} -> {c.target.table}: {st.phase}, snapshot {st.segments_done}/"
            f"{total} segments{incomplete}, {lag}, {up}\n"
        )
        key = "caught up" if st.caught_up else st.phase
        phases[key] = phases.get(key, 0) + 1
    parts = ", ".join(f"{n} {p}" for p, n in sorted(phases.items()))
    caught = sum(1 for _, st in tables if st.caught_up)
    w(f"Total: {len(tables)} tables ({parts}); caught up: {caught} of {len(tables)}\n")


def estate_to_dict(tables: list[tuple[Config, Status]]) -> dict[str, Any]:
    return {
        "tables": [
            {"source": c.source.table, "target": c.target.table, **st.to_dict()} for c, st in tables
        ],
        "caughtUp": all(st.caught_up for _, st in tables),
    }
