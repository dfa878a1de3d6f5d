"""The cutover's marks next to the two savepoints of a migration with a way back.

After a cutover two runs share two tables: the forward run (old primary -> new) and the
reverse run (new primary -> old). Run at the same time they would copy each other's writes
back and forth, so each savepoint gets a small mark beside it
(``cutover-<table>-<fingerprint>.json``) naming the other run's lock file: a run refuses to
start while the other holds its lock. The reverse mark also says whether the cutover
finished: a reverse start position recorded by a cutover that was stopped before it stopped
the forward run must not be replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import SavepointError
from .savepoint import SavepointStore

log = logging.getLogger(__name__)

RECORDED = "recorded"  # the reverse start position is in the reverse savepoint
DONE = "done"  # the forward run was stopped: the application may write to the new primary


@dataclass
class Mark:
    role: str  # "forward" or "reverse"
    stage: str  # RECORDED or DONE
    at: float  # when the stage was reached (our clock)
    peer_lock: str  # the other run's lock file

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"role": self.role, "stage": self.stage, "at": self.at, "peerLock": self.peer_lock},
            option=orjson.OPT_INDENT_2,
        )


def mark_file(store: SavepointStore) -> Path:
    # Not `savepoint-*`: tools (and operators) that look for the savepoint by that name.
    return store.file.with_name("cutover-" + store.file.name.removeprefix("savepoint-"))


def read_mark(store: SavepointStore) -> Mark | None:
    path = mark_file(store)
    try:
        d: Any = orjson.loads(path.read_bytes())
        return Mark(str(d["role"]), str(d["stage"]), float(d["at"]), str(d["peerLock"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SavepointError(
            f"cutover mark {path} is unusable ({e}); remove it and run cutover again"
        ) from None


def write_mark(store: SavepointStore, mark: Mark) -> None:
    """Atomically, as the savepoint itself (write, fsync, rename)."""
    path = mark_file(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cutover-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(mark.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_mark(store: SavepointStore) -> None:
    with contextlib.suppress(FileNotFoundError):
        mark_file(store).unlink()


def lock_holder(lock_file: Path | str) -> int | None:
    """The pid of the run that holds this savepoint lock; None when no run holds it.

    Probes with a non-blocking flock that is released at once, so it never keeps a run out
    for more than an instant."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(raw) if raw.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_peer(store: SavepointStore) -> None:
    """Refuse to run while the other direction runs, or on an unfinished cutover's position."""
    mark = read_mark(store)
    if mark is None:
        return
    if mark.role == "reverse" and mark.stage != DONE:
        raise SavepointError(
            f"the cutover that recorded this reverse run's start position ({mark_file(store)}) "
            "has not finished: the forward run may still copy into this run's source. Run "
            "`alternator-migrator cutover` again to finish it"
        )
    pid = lock_holder(mark.peer_lock)
    if pid is not None:
        other = "forward" if mark.role == "reverse" else "reverse"
        raise SavepointError(
            f"the {other} run of this migration is running (pid {pid}, lock {mark.peer_lock}); "
            "both at once would copy each other's writes back and forth: stop it first "
            "(it saves and exits on SIGTERM)"
        )
    if mark.role == "forward":
        log.warning(
            "This migration was cut over (mark %s): running it again copies the source's changes, "
            "the reverse run's included, to the target. That is right after a rollback (the "
            "application writes to the source again); otherwise stop this run",
            mark_file(store),
        )
