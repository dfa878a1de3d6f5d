"""Savepoints: finished scan segments, partial segment positions, per-shard stream positions.

Written atomically (temp file, fsync, rename) with mode 0600, so a crash at any instant
leaves either the old or the new savepoint, never a torn one. Only positions the target has
acknowledged are recorded, so resuming can replay a change twice but never skip one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .config import Config
from .errors import SavepointError
from .metrics import METRICS

VERSION = 1


@dataclass
class ShardPosition:
    sequence_number: str | None = None  # last applied record; None: read from TRIM_HORIZON
    finished: bool = False
    parent: str | None = None
    last_record_time: float | None = None  # ApproximateCreationDateTime of the last applied


@dataclass
class Savepoint:
    fingerprint: str
    table: str
    stream_arn: str | None = None
    snapshot_done: bool = False
    total_segments: int | None = None
    segments_done: set[int] = field(default_factory=set)
    segment_keys: dict[int, Any] = field(default_factory=dict)  # last acknowledged key per segment
    # What the snapshot's units are: None for Scan segments; "export <arn or s3://manifest>" for
    # the data files of that export, numbered in manifest order (segments_done/segment_keys).
    snapshot_source: str | None = None
    shards: dict[str, ShardPosition] = field(default_factory=dict)
    updated_at: float = 0.0
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
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
                "snapshotSource": self.snapshot_source,
                "shards": {
                    sid: {
                        "sequenceNumber": p.sequence_number,
                        "finished": p.finished,
                        "parent": p.parent,
                        "lastRecordTime": p.last_record_time,
                    }
                    for sid, p in self.shards.items()
                },
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Savepoint:
        d = orjson.loads(raw)
        if d.get("version") != VERSION:
            raise ValueError(f"savepoint version {d.get('version')} is not {VERSION}")
        return cls(
            fingerprint=d["fingerprint"],
            table=d["table"],
            stream_arn=d.get("streamArn"),
            snapshot_done=bool(d.get("snapshotDone")),
            total_segments=d.get("totalSegments"),
            segments_done=set(d.get("segmentsDone", [])),
            segment_keys={int(k): v for k, v in d.get("segmentKeys", {}).items()},
            snapshot_source=d.get("snapshotSource"),
            shards={
                sid: ShardPosition(
                    p.get("sequenceNumber"),
                    bool(p.get("finished")),
                    p.get("parent"),
                    p.get("lastRecordTime"),
                )
                for sid, p in d.get("shards", {}).items()
            },
            created_at=float(d.get("createdAt", 0.0)),
            updated_at=float(d.get("updatedAt", 0.0)),
        )


class SavepointStore:
    """Owns the savepoint file of one migration; thread-safe saves."""

    def __init__(self, cfg: Config) -> None:
        self.dir = Path(cfg.savepoints.path)
        self.interval = cfg.savepoints.interval_seconds
        self.fingerprint = cfg.fingerprint()
        self.table = cfg.source.table
        self.file = self.dir / f"savepoint-{cfg.source.table}-{self.fingerprint}.json"
        self.lock = threading.RLock()  # also held by code that mutates the savepoint
        self._last_save = 0.0
        METRICS.set_function("savepoint_age_seconds", self.age)

    def age(self) -> float | None:
        """Seconds since this process last wrote the savepoint (None before the first write)."""
        return time.monotonic() - self._last_save if self._last_save else None

    def load(self) -> Savepoint | None:
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            sp = Savepoint.from_json(raw)
        except (ValueError, KeyError, TypeError) as e:
            raise SavepointError(
                f"savepoint {self.file} is unreadable ({e}); move it away or run with --fresh"
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
            sp.stream_arn = old.stream_arn if old is not None else None
            return sp
        return self.load() or self.new()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.file.unlink()

    def save(self, sp: Savepoint) -> None:
        with self.lock:
            sp.updated_at = time.time()
            data = sp.to_json()
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".savepoint-", dir=self.dir)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.file)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            # The rename is only durable once the directory entry is.
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self._last_save = time.monotonic()

    def maybe_save(self, sp: Savepoint) -> bool:
        if time.monotonic() - self._last_save >= self.interval:
            self.save(sp)
            return True
        return False
