"""Both sides' items by hash bucket: in memory while small, spilled to one file per bucket and
side past a byte budget, so memory stays flat however large the tables are.

A record is (key text, item JSON text); a spill writes one JSON line per bucket and side, read
back by orjson in C (a record at a time in Python was most of the comparing time). A bucket is read back whole (file first, then memory; a
later record of a key replaces an earlier one, which is what a re-scanned segment after a
resume produces). A bucket too large for the budget is split again by a second hash, in files,
before it is read. No I/O but local files: tested without servers.
"""

from __future__ import annotations

import contextlib
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

OVERHEAD = 170  # bytes of Python objects around one record held in memory (two str, a tuple)
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
        self._mem: list[list[list[Record]]] = [[[] for _ in range(buckets)] for _ in range(2)]
        self._held = 0  # bytes held in memory (with OVERHEAD per record)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.spilled = 0  # bytes written to files so far, for the log

    def _path(self, side: int, bucket: int) -> Path:
        return self.dir / f"{'st'[side]}{bucket:05d}.bin"

    def add(self, side: int, records: list[tuple[int, str, str]]) -> None:
        """(bucket, key, item) records of one side."""
        size = sum(len(k) + len(v) for _, k, v in records) + OVERHEAD * len(records)
        with self._lock:
            mem = self._mem[side]
            for b, k, v in records:
                mem[b].append((k, v))
            self._held += size
            if self._held <= self.budget:
                return
            # Taken under the lock, written outside it, so the scanners go on meanwhile; the
            # write lock, taken before the first is let go, keeps batches in the order taken.
            self._write_lock.acquire()
            taken = self._take()
        try:
            self._write(taken)
        finally:
            self._write_lock.release()

    def _take(self) -> list[list[list[Record]]]:
        taken, self._held = self._mem, 0
        self._mem = [[[] for _ in range(self.buckets)] for _ in range(2)]
        return taken

    def _write(self, taken: list[list[list[Record]]]) -> None:
        """Records taken from memory to the files (caller holds the write lock)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for side, mem in enumerate(taken):
            for b, recs in enumerate(mem):
                if recs:
                    data = orjson.dumps(recs) + b"\n"
                    with self._path(side, b).open("ab") as f:
                        f.write(data)
                    self.spilled += len(data)
                    mem[b] = []

    def flush(self) -> dict[str, int]:
        """Write what memory holds, fsync, and return each file's size: a position to resume
        from (``restore``)."""
        with self._lock, self._write_lock:
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
        if not self.dir.exists():
            return
        for p in self.dir.glob("*.bin"):
            keep = sizes.get(p.name, 0)
            if keep == 0:
                p.unlink()
            elif p.stat().st_size > keep:
                os.truncate(p, keep)

    def drop(self, bucket: int) -> None:
        with self._lock:
            for side in (0, 1):
                self._drop_side(side, bucket)

    def _drop_side(self, side: int, bucket: int) -> None:
        recs = self._mem[side][bucket]
        self._held -= sum(len(k) + len(v) for k, v in recs) + OVERHEAD * len(recs)
        self._mem[side][bucket] = []
        with contextlib.suppress(FileNotFoundError):
            self._path(side, bucket).unlink()

    def _size(self, bucket: int) -> int:
        total = 0
        for side in (0, 1):
            p = self._path(side, bucket)
            total += p.stat().st_size if p.exists() else 0
            recs = self._mem[side][bucket]
            total += sum(len(k) + len(v) for k, v in recs) + OVERHEAD * len(recs)
        return total

    def _lines(self, side: int, bucket: int) -> Iterator[list[Any]]:
        """The bucket's spilled batches of [key, item] pairs, then what memory holds."""
        p = self._path(side, bucket)
        if p.exists():
            with p.open("rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # torn by a kill mid-write: its segment is scanned again
                    yield orjson.loads(line)
        yield self._mem[side][bucket]

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
                self._drop_side(0, bucket)
                self._drop_side(1, bucket)
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
                self._drop_side(0, bucket)
                self._drop_side(1, bucket)
            for b in range(n):
                yield from sub.parts(b)
        finally:
            sub.close()

    def close(self) -> None:
        """Forget everything, files included."""
        with self._lock:
            self._mem = [[[] for _ in range(self.buckets)] for _ in range(2)]
            self._held = 0
        shutil.rmtree(self.dir, ignore_errors=True)
