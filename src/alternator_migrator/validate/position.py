"""Where a stopped validation stands, next to the migration's savepoint:
``<savepoints.path>/<savepoint name>.validate.json`` and, beside it, the directory of its
spilled buckets. Written atomically (temp file, fsync, rename), mode 0600; one run at a time
(an OS lock the kernel drops when the process dies)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from typing import Any

import orjson

from ..config import Config
from ..errors import MigratorError
from ..state.savepoint import SavepointStore, write_atomically

log = logging.getLogger(__name__)

VERSION = 1


class PositionFile:
    def __init__(self, cfg: Config) -> None:
        base = SavepointStore(cfg).file
        self.dir = base.parent
        self.file = base.with_name(base.stem + ".validate.json")
        self.buckets = base.with_name(base.stem + ".validate")
        self.lock_file = base.with_name(base.stem + ".validate.lock")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise MigratorError(
                f"cannot use `savepoints.path` {self.dir} for validate's position ({e.strerror})"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MigratorError(
                    f"another validate of this migration holds {self.lock_file}; one at a time"
                ) from None
            yield
        finally:
            os.close(fd)

    def load(self) -> dict[str, Any] | None:
        try:
            d = orjson.loads(self.file.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as e:
            log.warning("Validate position %s is unreadable (%s); starting over", self.file, e)
            return None
        if not isinstance(d, dict) or d.get("version") != VERSION:
            log.warning("Validate position %s is of another version; starting over", self.file)
            return None
        return d

    def save(self, d: dict[str, Any]) -> None:
        write_atomically(self.file, orjson.dumps({"version": VERSION, **d}), ".validate-")

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.file.unlink()
        shutil.rmtree(self.buckets, ignore_errors=True)
