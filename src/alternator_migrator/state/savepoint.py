"""Savepoints: finished scan segments, partial segment positions, per-shard stream positions.

Written atomically (temp file, fsync, rename) with mode 0600, so a crash at any instant
leaves either the old or the new savepoint, never a torn one. Only positions the target has
acknowledged are recorded, so resuming can replay a change twice but never skip one.

The Savepoint owns its state: engines record progress through its methods (a unit done, a
unit's position, a shard's position), each taken under the Savepoint's own lock, and a save
serialises it under that same lock, so a save never sees a half-made change.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from ..config import Config
from ..errors import SavepointError
from ..metrics import METRICS

VERSION = 1
MAX_SEGMENTS = 1_000_000  # DynamoDB's limit on Scan TotalSegments
_SEQUENCE = re.compile(r"[0-9]{1,129}")  # Kinesis: up to 129 digits
_SEGMENT_ID = re.compile(r"0|[1-9][0-9]{0,6}")


class Origin(Enum):
    """What a snapshot's units are."""

    SCAN = "scan"  # Scan segments of the source table
    EXPORT = "export"  # data files of an export to S3, numbered in manifest order
    FAILED_EXPORT = "failed"  # an export that failed: the next run requests a new one


@dataclass(frozen=True)
class SnapshotOrigin:
    """Where the snapshot's units come from: Scan segments, or the data files of one export
    (``ref``: its ARN, or ``s3://bucket/manifest-summary.json`` for an export given by hand)."""

    kind: Origin = Origin.SCAN
    ref: str = ""

    @classmethod
    def export(cls, ref: str) -> SnapshotOrigin:
        return cls(Origin.EXPORT, ref)

    def failed(self) -> SnapshotOrigin:
        return SnapshotOrigin(Origin.FAILED_EXPORT, self.ref)

    def __str__(self) -> str:
        return "a Scan" if self.kind is Origin.SCAN else f"{self.kind.value} {self.ref}"

    def to_wire(self) -> str | None:
        # The savepoint's string form, as earlier versions wrote it (null: a Scan).
        return None if self.kind is Origin.SCAN else f"{self.kind.value} {self.ref}"

    @classmethod
    def from_wire(cls, v: str | None) -> SnapshotOrigin:
        if v is None:
            return cls()
        kind, _, ref = v.partition(" ")
        try:
            origin = Origin(kind)
        except ValueError:
            raise _bad("snapshotSource", v, "null, 'export <arn>' or 'failed <arn>'") from None
        if origin is Origin.SCAN or not ref:
            raise _bad("snapshotSource", v, "null, 'export <arn>' or 'failed <arn>'")
        return cls(origin, ref)


@dataclass
class ShardPosition:
    sequence_number: str | None = None  # last applied record; None: read from TRIM_HORIZON
    finished: bool = False
    parent: str | None = None
    last_record_time: float | None = None  # ApproximateCreationDateTime of the newest applied
    adjacent_parent: str | None = None  # a Kinesis shard made by MergeShards has two parents


@dataclass
class Savepoint:
    fingerprint: str
    table: str
    stream_arn: str | None = None
    snapshot_done: bool = False
    total_segments: int | None = None
    segments_done: set[int] = field(default_factory=set)
    # Last acknowledged position per unit not yet done: a Scan segment's last key, an export
    # data file's count of lines copied.
    segment_keys: dict[int, Any] = field(default_factory=dict)
    snapshot_origin: SnapshotOrigin = field(default_factory=SnapshotOrigin)
    shards: dict[str, ShardPosition] = field(default_factory=dict)
    updated_at: float = 0.0
    created_at: float = field(default_factory=time.time)
    # Which tables this savepoint describes (see table_identity); None: not recorded yet.
    source_table: dict[str, Any] | None = None
    target_table: dict[str, Any] | None = None
    # Set (our clock) just before UpdateTable enables the stream, cleared once its ARN is
    # saved: a stream created after it is ours even if we crashed before recording it.
    stream_enabling: float | None = None
    # A Kinesis replay's newest applied change time per recently changed key (key as JSON):
    # a stale duplicate read after a restart must still lose to what was applied before it.
    recent_changes: dict[str, float] = field(default_factory=dict)
    _lock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )

    # -- the snapshot
    def begin_snapshot(self, units: int, origin: SnapshotOrigin) -> None:
        """Record how many units the snapshot has; a resumed one keeps its count."""
        with self._lock:
            if self.total_segments not in (None, units):
                raise ValueError(
                    f"the savepoint records {self.total_segments} units, the snapshot has {units}"
                )
            self.total_segments = units
            self.snapshot_origin = origin

    def unit_position(self, unit: int) -> Any:
        """Where a unit resumes (None: from its beginning)."""
        with self._lock:
            return self.segment_keys.get(unit)

    def advance_unit(self, unit: int, position: Any) -> bool:
        """Record a position the target acknowledged; None: the unit was copied to its end.
        True when this call finished the unit."""
        with self._lock:
            if unit in self.segments_done:
                return False
            if position is None:
                self.segments_done.add(unit)
                self.segment_keys.pop(unit, None)
                return True
            self.segment_keys[unit] = position
            return False

    def units_missing(self) -> list[int]:
        """Units not copied to their end (none while the count is not recorded)."""
        with self._lock:
            if self.total_segments is None:
                return []
            return [n for n in range(self.total_segments) if n not in self.segments_done]

    def mark_snapshot_done(self) -> None:
        """Every unit was copied."""
        with self._lock:
            missing = self.units_missing()
            if self.total_segments is None or missing:
                raise ValueError(f"the snapshot is not done: units {missing} were not copied")
            self.snapshot_done = True

    def skip_snapshot(self) -> None:
        """No snapshot is copied (skipInitialSnapshotTransfer): the replay alone fills the target."""
        self._restart_snapshot(done=True)

    def reset_snapshot(self) -> None:
        """Copy the snapshot again (the target lost what was copied)."""
        self._restart_snapshot(done=False)

    def _restart_snapshot(self, done: bool) -> None:
        with self._lock:
            self.snapshot_done = done
            self.total_segments = None
            self.segments_done.clear()
            self.segment_keys.clear()

    def set_origin(self, origin: SnapshotOrigin) -> None:
        with self._lock:
            self.snapshot_origin = origin

    # -- the change stream
    def use_stream(self, arn: str) -> None:
        """Replay ``arn``; positions taken on another stream are dropped."""
        with self._lock:
            if self.stream_arn != arn:
                self.shards.clear()
                self.recent_changes.clear()
            self.stream_arn, self.stream_enabling = arn, None

    def shard_seen(self, shard_id: str, parent: str | None, adjacent: str | None) -> None:
        """A shard found in the stream, to be read from its start."""
        with self._lock:
            self.shards.setdefault(
                shard_id, ShardPosition(None, False, parent, adjacent_parent=adjacent)
            )

    def advance_shard(
        self,
        shard_id: str,
        parent: str | None,
        sequence_number: str | None,
        newest: float | None,
        finished: bool,
    ) -> None:
        """Record the last record of a shard the target acknowledged (and whether the shard
        was read to its end)."""
        with self._lock:
            pos = self.shards.setdefault(shard_id, ShardPosition(parent=parent))
            pos.sequence_number = sequence_number
            if newest is not None:
                pos.last_record_time = newest
            if finished:
                pos.finished = True

    def keep_recent_changes(self, recent: dict[str, float]) -> None:
        with self._lock:
            self.recent_changes = recent

    def to_json(self) -> bytes:
        with self._lock:
            return self._to_json()

    def stamped_json(self, now: float) -> bytes:
        """The JSON of a save made at ``now`` (recorded as ``updatedAt``)."""
        with self._lock:
            self.updated_at = now
            return self._to_json()

    def _to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": VERSION,
                "fingerprint": self.fingerprint,
                "table": self.table,
                "streamArn": self.stream_arn,
                "snapshotDone": self.snapshot_done,
                "totalSegments": self.total_segments,
                "segmentsDone": sorted(self.segments_done),
                "segmentKeys": {str(k): v for k, v in sorted(self.segment_keys.items())},
                "snapshotSource": self.snapshot_origin.to_wire(),
                "shards": {
                    sid: {
                        "sequenceNumber": p.sequence_number,
                        "finished": p.finished,
                        "parent": p.parent,
                        "lastRecordTime": p.last_record_time,
                        **({"adjacentParent": p.adjacent_parent} if p.adjacent_parent else {}),
                    }
                    for sid, p in self.shards.items()
                },
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
                "sourceTable": self.source_table,
                "targetTable": self.target_table,
                "streamEnabling": self.stream_enabling,
                **({"recentChanges": self.recent_changes} if self.recent_changes else {}),
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Savepoint:
        """Parse and check a savepoint; ValueError names the first field that is wrong.

        Every value is checked, because a savepoint with an impossible value (0 segments, a
        string for a flag) would otherwise resume as "nothing left to copy"."""
        d = orjson.loads(raw)
        if not isinstance(d, dict):
            raise ValueError(f"it holds {type(d).__name__}, not a JSON object")
        if d.get("version") != VERSION:
            raise ValueError(f"field `version` is {d.get('version')!r}, expected {VERSION}")
        total = _opt(d, "totalSegments", _is_int, "an integer from 1 to 1000000")
        if total is not None and not 1 <= total <= MAX_SEGMENTS:
            raise _bad("totalSegments", total, "an integer from 1 to 1000000")
        done = d.get("segmentsDone", [])
        if not isinstance(done, list) or not all(_is_int(n) for n in done):
            raise _bad("segmentsDone", done, "a list of segment numbers")
        if len(set(done)) != len(done):
            raise _bad("segmentsDone", done, "a list without repeats")
        origin = SnapshotOrigin.from_wire(_opt(d, "snapshotSource", _is_str, "a string or null"))
        # An export's unit position is the number of lines of a data file already copied.
        position = _is_line if origin.kind is Origin.EXPORT else _is_key
        seg_keys = d.get("segmentKeys", {})
        if not isinstance(seg_keys, dict):
            raise _bad("segmentKeys", seg_keys, "an object of segment number -> key")
        for k, v in seg_keys.items():
            if not _SEGMENT_ID.fullmatch(k):
                raise _bad("segmentKeys", k, "segment numbers written as plain decimals")
            if not position(v):
                raise _bad(f"segmentKeys.{k}", v, "a DynamoDB key ({attribute: {type: value}})")
        segs = [*done, *(int(k) for k in seg_keys)]
        if segs and total is None:
            raise _bad("totalSegments", None, "set when segments are recorded")
        for n in segs:
            if not 0 <= n < (total or 0):
                raise _bad("segmentsDone/segmentKeys", n, f"a segment number below {total}")
        if set(done) & {int(k) for k in seg_keys}:
            raise _bad("segmentKeys", sorted(seg_keys), "only segments not in segmentsDone")
        snapshot_done = d.get("snapshotDone", False)
        if not isinstance(snapshot_done, bool):
            raise _bad("snapshotDone", snapshot_done, "true or false")
        if total is not None and len(done) < total:
            # Earlier versions called a snapshot with skipped segments done: it is not, and
            # the segments never copied are copied by the next run that does not skip them.
            snapshot_done = False
        shards_raw = d.get("shards", {})
        if not isinstance(shards_raw, dict):
            raise _bad("shards", shards_raw, "an object of shard id -> position")
        shards = {sid: _shard(sid, p) for sid, p in shards_raw.items()}
        return cls(
            fingerprint=_req(d, "fingerprint", _is_str, "a string"),
            table=_req(d, "table", _is_str, "a string"),
            stream_arn=_opt(d, "streamArn", _is_str, "a string or null"),
            snapshot_done=snapshot_done,
            total_segments=total,
            segments_done=set(done),
            segment_keys={int(k): v for k, v in seg_keys.items()},
            snapshot_origin=origin,
            shards=shards,
            created_at=float(_opt(d, "createdAt", _is_time, "a time") or 0.0),
            updated_at=float(_opt(d, "updatedAt", _is_time, "a time") or 0.0),
            source_table=_opt(d, "sourceTable", _is_identity, "a table identity object"),
            target_table=_opt(d, "targetTable", _is_identity, "a table identity object"),
            stream_enabling=_opt(d, "streamEnabling", _is_time, "a time or null"),
            recent_changes=_recent(d.get("recentChanges", {})),
        )


def _bad(name: str, value: Any, want: str) -> ValueError:
    shown = repr(value)
    return ValueError(
        f"field `{name}` is {shown[:60] + '...' if len(shown) > 60 else shown}, expected {want}"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_time(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _is_line(v: Any) -> bool:
    return _is_int(v) and v > 0


def _is_key(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and bool(v)
        and all(isinstance(a, dict) and len(a) == 1 for a in v.values())
    )


def _is_identity(v: Any) -> bool:
    return isinstance(v, dict) and all(
        (k in ("TableArn", "TableId") and isinstance(x, str))
        or (k == "CreationDateTime" and _is_time(x))
        for k, x in v.items()
    )


def _req(d: dict[str, Any], name: str, ok: Any, want: str) -> Any:
    if not ok(d.get(name)):
        raise _bad(name, d.get(name), want)
    return d[name]


def _opt(d: dict[str, Any], name: str, ok: Any, want: str) -> Any:
    v = d.get(name)
    if v is not None and not ok(v):
        raise _bad(name, v, want)
    return v


def _shard(sid: str, p: Any) -> ShardPosition:
    name = f"shards.{sid}"
    if not isinstance(p, dict):
        raise _bad(name, p, "an object")
    seq = p.get("sequenceNumber")
    if seq is not None and not (isinstance(seq, str) and _SEQUENCE.fullmatch(seq)):
        raise _bad(f"{name}.sequenceNumber", seq, "a string of digits or null")
    finished = p.get("finished", False)
    if not isinstance(finished, bool):
        raise _bad(f"{name}.finished", finished, "true or false")
    return ShardPosition(
        seq,
        finished,
        _opt(p, "parent", _is_str, "a shard id or null"),
        _opt(p, "lastRecordTime", _is_time, "a time or null"),
        _opt(p, "adjacentParent", _is_str, "a shard id or null"),
    )


def _recent(v: Any) -> dict[str, float]:
    if not isinstance(v, dict) or not all(_is_time(t) for t in v.values()):
        raise _bad("recentChanges", v, "an object of key -> time")
    return {str(k): float(t) for k, t in v.items()}


def table_identity(desc: dict[str, Any]) -> dict[str, Any]:
    """What tells one incarnation of a table from another: DynamoDB and dynalite give a
    TableId; moto gives none and keeps the ARN when a table is recreated, so the creation
    time is what differs there."""
    return {k: desc[k] for k in ("TableArn", "TableId", "CreationDateTime") if k in desc}


def same_table(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """True unless the two identities prove different tables (a field both sides have differs)."""
    return all(saved[k] == now[k] for k in saved.keys() & now.keys())


def _file_part(table: str) -> str:
    """The table name as a file-name part that stays inside the savepoint directory whatever
    the config holds (``../``, ``/``, NUL, a 1000-character name): the fingerprint next to it
    keeps names unique."""
    # No "/" or NUL survives, so even ".." is only part of a name. Valid DynamoDB table names
    # ([A-Za-z0-9_.-]) pass unchanged, and 223 characters is all that fits in NAME_MAX (255)
    # next to the prefix and fingerprint: savepoints of earlier versions keep their names.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", table)[:223]


class SaveClock:
    """When a savepoint was last written: the wall time recorded in it (``updatedAt``, what
    ``status`` shows) and the monotonic time the save interval and the age gauge count from,
    both taken at the one instant of the write."""

    def __init__(self) -> None:
        self._at = 0.0  # monotonic; 0: not written by this process yet

    def mark(self) -> None:
        """A savepoint was written now."""
        global _LATEST
        self._at = time.monotonic()
        _LATEST = self

    def age(self) -> float | None:
        return time.monotonic() - self._at if self._at else None


_LATEST: SaveClock | None = None  # the clock of this process's last savepoint write


def _age() -> float | None:
    return _LATEST.age() if _LATEST is not None else None


# One gauge per process, registered once (not per store): a process runs one migration.
METRICS.set_function("savepoint_age_seconds", _age)


def write_atomically(file: Path, data: bytes, prefix: str) -> None:
    """Write-then-rename, mode 0600, fsynced: a crash leaves the old file or the new one,
    never half of one (savepoints and validate's position both rely on it)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=file.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is only durable once the directory entry is.
    dfd = os.open(file.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class SavepointStore:
    """Owns the savepoint file of one migration; thread-safe saves."""

    def __init__(self, cfg: Config) -> None:
        self.dir = Path(cfg.savepoints.path)
        self.interval = cfg.savepoints.interval_seconds
        self.fingerprint = cfg.fingerprint()
        self.table = cfg.source.table
        self.file = self.dir / f"savepoint-{_file_part(cfg.source.table)}-{self.fingerprint}.json"
        self.lock_file = self.file.with_suffix(".lock")
        self._writing = threading.Lock()  # one write at a time: the newest state lands last
        self.clock = SaveClock()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the OS lock on this migration's savepoint for the block: one run at a time.

        flock, not a pid file: the kernel drops it when the process dies (even by kill -9), so
        it never goes stale. The lock file stays; deleting it would let a third run lock a new
        inode while the second still holds the old one."""
        self._make_dir()
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise self._dir_error(e) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SavepointError(
                    f"another run holds {self.lock_file} (pid {self._holder(fd)}); one run at a "
                    "time per savepoint: stop that run first (it saves and exits on SIGTERM)"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _holder(fd: int) -> str:
        # The winner writes its pid right after locking; a run started at the same instant
        # may look before that.
        for _ in range(20):
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            if pid:
                return pid
            time.sleep(0.05)
        return "unknown"

    def _make_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise SavepointError(
                f"`savepoints.path` {self.dir} is a file, not a directory; "
                "point `savepoints.path` at a directory"
            ) from None
        except OSError as e:
            raise self._dir_error(e) from None
        if not self.dir.is_dir():
            raise SavepointError(f"`savepoints.path` {self.dir} is not a directory")

    def _dir_error(self, e: OSError) -> SavepointError:
        return SavepointError(
            f"cannot write in the savepoint directory {self.dir} ({e.strerror or e}); "
            "make it writable (`savepoints.path`) and run again: the run resumes from "
            "the last savepoint written"
        )

    def age(self) -> float | None:
        """Seconds since this process last wrote the savepoint (None before the first write)."""
        return self.clock.age()

    def load(self) -> Savepoint | None:
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SavepointError(f"cannot read savepoint {self.file} ({e.strerror})") from None
        try:
            sp = Savepoint.from_json(raw)
        except (ValueError, KeyError, TypeError) as e:
            raise SavepointError(
                f"savepoint {self.file} is unusable: {e}; move it away or run with --fresh"
            ) from None
        if sp.fingerprint != self.fingerprint:
            raise SavepointError(
                f"savepoint {self.file} belongs to another migration (fingerprint {sp.fingerprint}, "
                f"expected {self.fingerprint}); use another `savepoints.path` or --fresh"
            )
        return sp

    def new(self) -> Savepoint:
        return Savepoint(fingerprint=self.fingerprint, table=self.table)

    def load_or_new(self, fresh: bool = False) -> Savepoint:
        if fresh:
            # Starting over still owns the stream this migration enabled (moto and DynamoDB
            # cannot simply re-enable one): keep its ARN so it is reused, read from TRIM_HORIZON.
            # Replaying records older than the new snapshot is harmless; they are superseded.
            try:
                old = self.load()
            except SavepointError:
                old = None
            self.discard()
            sp = self.new()
            if old is not None:
                sp.stream_arn, sp.stream_enabling = old.stream_arn, old.stream_enabling
            return sp
        return self.load() or self.new()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.file.unlink()

    def save(self, sp: Savepoint) -> None:
        with self._writing:
            data = sp.stamped_json(time.time())
            try:
                self._write(data)
            except OSError as e:
                # Read-only, full or gone: stop rather than run on with positions we cannot
                # keep. What the target already has stays; the last savepoint written resumes.
                raise self._dir_error(e) from None
            self.clock.mark()

    def _write(self, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.file, data, ".savepoint-")

    def maybe_save(self, sp: Savepoint) -> bool:
        """Save when the interval has passed since the last save (or none was made yet)."""
        age = self.clock.age()
        if age is None or age >= self.interval:
            self.save(sp)
            return True
        return False
