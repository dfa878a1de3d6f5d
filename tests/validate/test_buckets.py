"""The key-hash bucket store of validate (validate/buckets.py), without servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alternator_migrator.validate.buckets import BucketStore, bucket_of


def _recs(n: int, lo: int = 0, tag: str = "v") -> list[tuple[int, str, str]]:
    out = []
    for i in range(lo, lo + n):
        k = f"key-{i:05d}"
        out.append((bucket_of(k, 4), k, tag + "x" * 100))
    return out


def _all(store: BucketStore) -> tuple[dict[str, str], dict[str, str]]:
    src: dict[str, str] = {}
    tgt: dict[str, str] = {}
    for b in range(store.buckets):
        for s, t in store.parts(b):
            assert not (src.keys() & s.keys())  # a key lives in one bucket and one part
            src.update(s)
            tgt.update(t)
    return src, tgt


def test_small_stays_in_memory_and_reads_back(tmp_path: Path) -> None:
    store = BucketStore(tmp_path / "b", 4, budget=1 << 20)
    store.add(0, _recs(50))
    store.add(1, _recs(40, 10))
    assert not (tmp_path / "b").exists()
    src, tgt = _all(store)
    assert len(src) == 50 and len(tgt) == 40
    assert set(tgt) <= set(src) | {f"key-{i:05d}" for i in range(50, 60)}


def test_over_budget_spills_to_files_and_a_later_record_wins(tmp_path: Path) -> None:
    store = BucketStore(tmp_path / "b", 4, budget=5_000)
    store.add(0, _recs(200))
    assert store.spilled > 0 and list((tmp_path / "b").glob("s*.bin"))
    store.add(0, _recs(10, tag="new"))  # a segment scanned again after a resume
    src, _ = _all(store)
    assert len(src) == 200
    assert all(src[f"key-{i:05d}"].startswith("new") for i in range(10))
    assert src["key-00010"].startswith("v")


def test_a_bucket_too_large_for_the_budget_is_split_and_still_complete(tmp_path: Path) -> None:
    store = BucketStore(tmp_path / "b", 1, budget=8_000)  # one bucket: ~25 KB per side
    store.add(0, [(0, k, v) for _, k, v in _recs(120)])
    store.add(1, [(0, k, v) for _, k, v in _recs(120, 60)])
    parts = list(store.parts(0))
    assert len(parts) > 1
    src = {k: v for s, _ in parts for k, v in s.items()}
    tgt = {k: v for _, t in parts for k, v in t.items()}
    assert len(src) == 120 and len(tgt) == 120
    # Matching works within each part: a key is on both sides of the same part or on one.
    both = sum(len(s.keys() & t.keys()) for s, t in parts)
    assert both == 60


def test_restore_drops_what_was_written_after_the_position(tmp_path: Path) -> None:
    store = BucketStore(tmp_path / "b", 4, budget=1)  # every add spills
    store.add(0, _recs(20))
    sizes = store.flush()
    store.add(0, _recs(20, 20))
    # A torn record at the end of one file, as a kill in the middle of a write leaves.
    some = next(iter((tmp_path / "b").glob("s*.bin")))
    with some.open("ab") as f:
        f.write(b'[["key-99999","torn')
    again = BucketStore(tmp_path / "b", 4, budget=1)
    again.restore(sizes)
    assert {p.name: os.path.getsize(p) for p in (tmp_path / "b").glob("*.bin")} == sizes
    src, _ = _all(again)
    assert sorted(src) == [f"key-{i:05d}" for i in range(20)]
    again.close()
    assert not (tmp_path / "b").exists()


def test_a_torn_last_line_is_not_read(tmp_path: Path) -> None:
    store = BucketStore(tmp_path / "b", 1, budget=1)
    store.add(0, [(0, "a", "1"), (0, "b", "2")])
    with (tmp_path / "b" / "s00000.bin").open("ab") as f:
        f.write(b'[["c","3"]')  # no newline: the write was cut
    src = {k: v for s, _ in store.parts(0) for k, v in s.items()}
    assert src == {"a": "1", "b": "2"}


def test_the_item_logs_read_back_what_was_appended_and_resume_at_the_position(
    tmp_path: Path,
) -> None:
    store = BucketStore(tmp_path / "b", 4, budget=1 << 20)
    a = store.log(0, b'{"pk":{"S":"a"}}')
    b = store.log(0, bytearray(b'{"pk":{"S":"b"}}'))
    t = store.log(1, b'{"pk":{"S":"t"}}')
    assert (a, b, t) == (0, 16, 0)
    assert (
        store.read(0, b, 16) == b'{"pk":{"S":"b"}}' and store.read(1, 0, 16) == b'{"pk":{"S":"t"}}'
    )
    sizes = store.flush()
    assert sizes["log-s.bin"] == 32 and sizes["log-t.bin"] == 16
    store.log(0, b"written after the position")
    again = BucketStore(tmp_path / "b", 4, budget=1 << 20)
    again.restore(sizes)
    assert again.read(0, 0, 16) == b'{"pk":{"S":"a"}}'
    assert again.log(0, b"next") == 32  # appended where the position ends
    with pytest.raises(OSError):
        again.read(0, 30, 16)  # past the end: never a short item
    store.close()
    again.close()
    assert not (tmp_path / "b").exists()
