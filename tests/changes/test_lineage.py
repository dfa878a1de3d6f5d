"""Replay order and shard lineage against the fake Streams endpoint (moto never splits a shard)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.replay import Replayer

from ..fakes import FakeStreams, lean_client, replay_setup, run_replay, target_values
from ..helpers import eventually


@pytest.fixture
def fake() -> Iterator[FakeStreams]:
    f = FakeStreams(records_per_call=3, shards_per_page=1).start()
    yield f
    f.stop()


def get_records_shard(body: dict[str, Any]) -> str:
    return str(body["ShardIterator"]).split("-", 2)[2]


def build_split_tree(fake: FakeStreams) -> None:
    """s0 splits into s1 and s2; s1 splits again into s3. The same keys change across levels."""
    fake.add_shard("s0")
    for pk, v in [("k1", 1), ("k2", 1), ("k3", 1), ("k1", 2), ("k5", 1)]:
        fake.put("s0", pk, v)
    fake.split("s0", "s1", "s2")
    fake.put("s1", "k1", 3)
    fake.put("s1", "k2", None)  # REMOVE after the parent's INSERT
    fake.put("s2", "k3", 3)
    fake.put("s2", "k4", 1)
    fake.split("s1", "s3")
    fake.put("s3", "k1", 4)
    fake.put("s3", "k2", 5)  # re-created in the grandchild


def test_split_shards_parents_applied_first(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    build_split_tree(fake)
    # List children before their parents: lineage must come from ParentShardId, not listing order.
    fake.shards = dict(reversed(list(fake.shards.items())))
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)

    r, out = run_replay(fake, store, sp, sink)

    # A child read before its parent finished would leave k3=1 (parent's older image) or
    # lose the REMOVE/re-create of k2.
    assert target_values(dst, table_name) == {"k1": "4", "k2": "5", "k3": "3", "k4": "1", "k5": "1"}
    # Each child's first iterator was asked for only after its parent's last page (no next iterator).
    calls = fake.calls
    for child, parent in [("s1", "s0"), ("s2", "s0"), ("s3", "s1")]:
        first_child = min(
            i
            for i, (op, b) in enumerate(calls)
            if op == "GetShardIterator" and b["ShardId"] == child
        )
        last_parent = max(
            i
            for i, (op, b) in enumerate(calls)
            if op == "GetRecords" and get_records_shard(b) == parent
        )
        assert first_child > last_parent, (child, parent)
    # Pagination of DescribeStream (one shard per page) found the whole tree.
    assert any("ExclusiveStartShardId" in b for b in fake.ops("DescribeStream"))
    # The savepoint records the closed parents as finished and the open leaves by last sequence.
    saved = store.load()
    assert saved is not None
    assert saved.shards["s0"].finished and saved.shards["s1"].finished
    assert not saved.shards["s2"].finished and not saved.shards["s3"].finished
    assert (
        saved.shards["s3"].sequence_number
        == fake.shards["s3"].records[-1]["dynamodb"]["SequenceNumber"]
    )
    assert saved.shards["s3"].parent == "s1"
    assert r.stats.counts == {"INSERT": 6, "MODIFY": 4, "REMOVE": 1}
    assert "| DELETE        |    1|" in out


def test_per_key_order_within_a_shard_across_pages(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("a")
    # 3 records per GetRecords page: each key's changes straddle page boundaries.
    for i in range(20):
        fake.put("a", f"k{i % 4}", i)
    fake.put("a", "k0", None)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    run_replay(fake, store, sp, sink)
    assert target_values(dst, table_name) == {"k1": "17", "k2": "18", "k3": "19"}
    # Within one batch a key appears at most once (collapsed to its last change).
    for batch in sink.batches:
        keys = [
            str(
                r.get("PutRequest", {}).get("Item", {}).get("pk") or r["DeleteRequest"]["Key"]["pk"]
            )
            for r in batch
        ]
        assert len(keys) == len(set(keys))


def test_a_memory_budget_smaller_than_the_stream_reads_shards_in_turn(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    # A budget for one page per round: with 5 readable shards at a time, rounds take them in
    # turn; lineage, per-key order and the op counts stay as with every shard in every round.
    build_split_tree(fake)
    for sid in ("w1", "w2", "w3"):
        fake.add_shard(sid)
        for i in range(4):
            fake.put(sid, f"{sid}-k{i % 2}", i)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)

    r, _ = run_replay(fake, store, sp, sink, memory_budget=1)

    want = {"k1": "4", "k2": "5", "k3": "3", "k4": "1", "k5": "1"}
    want |= {f"{sid}-k{i}": str(i + 2) for sid in ("w1", "w2", "w3") for i in (0, 1)}
    assert target_values(dst, table_name) == want
    assert r.stats.counts == {"INSERT": 12, "MODIFY": 10, "REMOVE": 1}
    # Each round read one shard: never two GetRecords of different shards in one round.
    assert r.stats.rounds >= len(fake.ops("GetRecords")) // 2


def test_parent_that_aged_out_before_the_migration_is_not_waited_for(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    # The stream is older than this migration: the child's parent is already gone.
    fake.add_shard("orphan", parent="long-gone")
    fake.put("orphan", "k1", 7)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    run_replay(fake, store, sp, sink)
    assert target_values(dst, table_name) == {"k1": "7"}


def test_new_children_discovered_while_running(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("r0")
    fake.put("r0", "k1", 1)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    stop = threading.Event()
    r = Replayer(
        lean_client(fake.url),
        sink,
        fake.arn,
        store,
        sp,
        out=io.StringIO(),
        refresh_seconds=0.1,
        max_idle_sleep=0.05,
    )
    t = threading.Thread(target=r.run, args=(stop,), daemon=True)
    t.start()
    try:
        eventually(lambda: target_values(dst, table_name) == {"k1": "1"}, 20)
        # The shard rolls over while the replay is running; the child holds a later change.
        fake.split("r0", "r1")
        fake.put("r1", "k1", 2)
        fake.put("r1", "k2", 1)
        eventually(lambda: target_values(dst, table_name) == {"k1": "2", "k2": "1"}, 20)
        eventually(lambda: sp.shards.get("r0") is not None and sp.shards["r0"].finished, 20)
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
