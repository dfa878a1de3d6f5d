"""Both sides' items by hash bucket: in memory while small, spilled to one file per bucket and
side past a byte budget, so memory stays flat however large the tables are.

A record is (key text, value text). Each page's records of a bucket are held as one JSON line,
which is what a spill appends to the bucket's file; lines are read back by orjson in C (a
record at a time in Python was most of the comparing time). A bucket is read back whole (file
first, then memory; a later record of a key replaces an earlier one, which is what a
re-scanned segment after a resume produces). A bucket too large for the budget is split again
by a second hash, in files, before it is read. No I/O but local files: tested without servers.

Each side also has an item log (``log``, ``read``): the items' JSON appended as scanned, never
held in memory. The validator keeps a digest and the item's place in the log as a record's
value, so a record is ~60 bytes whatever the item's size, and comparing reads back only the
items whose digests differ.
"""

from __future__ import annotations

import os
import shutil
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

Record = tuple[str, str]
Side = dict[str, str]

OVERHEAD = 50  # bytes of the Python object around one line held in memory
MAX_DEPTH = 4  # splits of a split: only keys that hash alike on every salt get this deep


def bucket_of(key: str, buckets: int, salt: int = 0) -> int:
    return zlib.crc32(key.encode(), salt) % buckets


class BucketStore:
    """``buckets`` buckets of two sides (0: source, 1: target) within ``budget`` bytes."""

    def __init__(self, directory: Path, buckets: int, budget: int, depth: int = 0) -> None:
        self.dir = directory
        self.buckets = buckets
        self.budget = budget
        self.depth = depth
        # Per side and bucket, lines of JSON [[key, value], ...] as a spill writes them.
        self._mem: list[list[list[bytes]]] = [[[] for _ in range(buckets)] for _ in range(2)]
        self._held = 0  # bytes held in memory (with OVERHEAD per line)
        self._msize = [[0] * buckets for _ in range(2)]  # the same per bucket and side
        self._fsize = [[0] * buckets for _ in range(2)]  # bytes in each file
        self._paths = [
            [str(self.dir / f"{'st'[s]}{b:05d}.bin") for b in range(buckets)] for s in (0, 1)
        ]
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.spilled = 0  # bytes written to files so far, for the log
        self._log_paths = [self.dir / f"log-{'st'[s]}.bin" for s in (0, 1)]
        self._log_fd = [-1, -1]  # appended with os.write: no buffer, seen by os.pread at once
        self._log_size = [0, 0]
        self._log_lock = threading.Lock()

    def log(self, side: int, data: bytes | bytearray) -> int:
        """Append ``data`` to the side's item log; returns where it begins (for ``read``)."""
        with self._log_lock:
            fd = self._log_fd[side]
            if fd < 0:
                self.dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._log_paths[side], os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                self._log_fd[side] = fd
            at = self._log_size[side]
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._log_size[side] += len(data)
            return at

    def read(self, side: int, offset: int, length: int) -> bytes:
        """Bytes of the side's item log (``log`` returned where they begin)."""
        fd = self._log_fd[side]
        if fd < 0:  # a resumed run that has not logged anything yet
            with self._log_lock:
                if self._log_fd[side] < 0:
                    self._log_fd[side] = os.open(self._log_paths[side], os.O_RDWR | os.O_APPEND)
                fd = self._log_fd[side]
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise OSError(f"{self._log_paths[side]} ends before {offset + length} bytes")
        return data

    def close_logs(self) -> None:
        """The item logs' descriptors closed (``log`` and ``read`` open them again)."""
        with self._log_lock:
            for side, fd in enumerate(self._log_fd):
                if fd >= 0:
                    os.close(fd)
                    self._log_fd[side] = -1

    def add(self, side: int, records: list[tuple[int, str, str]]) -> None:
        """(bucket, key, item) records of one side."""
        groups: dict[int, list[Record]] = {}
        for b, k, v in records:
            got = groups.get(b)
            if got is None:
                groups[b] = [(k, v)]
            else:
                got.append((k, v))
        # Held as the lines a spill writes: a few large bytes per page instead of small
        # objects per record, which would pin the allocator's arenas that each page's
        # objects were freed from. Copied: orjson keeps KiBs behind a small result.
        dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        lines = [(b, bytes(memoryview(dumps(recs, option=opt)))) for b, recs in groups.items()]
        with self._lock:
            mem, msize, size = self._mem[side], self._msize[side], 0
            for b, line in lines:
                mem[b].append(line)
                n = len(line) + OVERHEAD
                msize[b] += n
                size += n
            self._held += size
            # Half the budget: the scanners fill memory again while a spill is written.
            if self._held <= self.budget // 2:
                return
            # Taken under the lock, written outside it, so the scanners go on meanwhile; the
            # write lock, taken before the first is let go, keeps batches in the order taken.
            self._write_lock.acquire()
            taken = self._take()
        try:
            self._write(taken)
        finally:
            self._write_lock.release()

    def _take(self) -> list[list[list[bytes]]]:
        taken, self._held = self._mem, 0
        self._mem = [[[] for _ in range(self.buckets)] for _ in range(2)]
        self._msize = [[0] * self.buckets for _ in range(2)]
        return taken

    def _write(self, taken: list[list[list[bytes]]]) -> None:
        """Lines taken from memory to the files (caller holds the write lock)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for side, mem in enumerate(taken):
            for b, lines in enumerate(mem):
                if lines:
                    data = b"".join(lines)
                    with open(self._paths[side][b], "ab") as f:
                        f.write(data)
                    self._fsize[side][b] += len(data)
                    self.spilled += len(data)
                    mem[b] = []

    def flush(self) -> dict[str, int]:
        """Write what memory holds, fsync, and return each file's size: a position to resume
        from (``restore``)."""
        with self._lock, self._write_lock, self._log_lock:
            self._write(self._take())
            sizes: dict[str, int] = {}
            if self.dir.exists():
                for p in sorted(self.dir.glob("*.bin")):
                    with p.open("rb+") as f:
                        os.fsync(f.fileno())
                    sizes[p.name] = p.stat().st_size
            return sizes

    def restore(self, sizes: dict[str, int]) -> None:
        """Back to a position ``flush`` returned: later bytes (maybe a torn record) go."""
        self.close_logs()
        if not self.dir.exists():
            return
        for side, log in enumerate(self._log_paths):
            self._log_size[side] = sizes.get(log.name, 0)
        for p in self.dir.glob("*.bin"):
            keep = sizes.get(p.name, 0)
            if keep == 0:
                p.unlink()
            elif p.stat().st_size > keep:
                os.truncate(p, keep)
        for side in (0, 1):
            for b, path in enumerate(self._paths[side]):
                self._fsize[side][b] = sizes.get(os.path.basename(path), 0)

    def _forget(self, bucket: int) -> None:
        """The bucket's records in memory go; its files stay until ``close``: a position saved
        before it was compared still finds them after a kill."""
        for side in (0, 1):
            self._held -= self._msize[side][bucket]
            self._msize[side][bucket] = 0
            self._mem[side][bucket] = []

    def _size(self, bucket: int) -> int:
        return sum(self._msize[s][bucket] + self._fsize[s][bucket] for s in (0, 1))

    def _lines(self, side: int, bucket: int) -> Iterator[list[Any]]:
        """The bucket's spilled batches of [key, item] pairs, then what memory holds."""
        if self._fsize[side][bucket]:
            with open(self._paths[side][bucket], "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # torn by a kill mid-write: its segment is scanned again
                    yield orjson.loads(line)
        for line in self._mem[side][bucket]:
            yield orjson.loads(line)

    def _load(self, side: int, bucket: int) -> Side:
        out: Side = {}
        for batch in self._lines(side, bucket):
            out.update(batch)  # a later record of a key wins
        return out

    def parts(self, bucket: int) -> Iterator[tuple[Side, Side]]:
        """The bucket's two sides as {key: item} maps, in parts that fit the budget (one part
        unless the bucket is too large), then the bucket is dropped."""
        with self._lock:
            size = self._size(bucket)
        if size <= self.budget // 2 or self.depth >= MAX_DEPTH:
            with self._lock:
                src = self._load(0, bucket)
                tgt = self._load(1, bucket)
                self._forget(bucket)
            yield src, tgt
            return
        n = min(4096, 2 * -(-size // max(1, self.budget // 2)))
        sub = BucketStore(self.dir / f"split-{bucket}", n, self.budget, self.depth + 1)
        salt = self.depth + 1
        try:
            for side in (0, 1):
                for recs in self._lines(side, bucket):
                    sub.add(side, [(bucket_of(k, n, salt), k, v) for k, v in recs])
            with self._lock:
                self._forget(bucket)
            for b in range(n):
                yield from sub.parts(b)
        finally:
            sub.close()

    def close(self) -> None:
        """Forget everything, files included."""
        with self._lock:
            self._take()
        self.close_logs()
        shutil.rmtree(self.dir, ignore_errors=True)
