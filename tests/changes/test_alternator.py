"""Alternator Streams as a change source, against the scripted Alternator endpoint: many shards,
generations replaced on a topology change (listed late), records shown only after a window,
MODIFY for every write, REMOVE for TTL expirations, eventSource scylladb:alternator."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.changes.alternator import (
    AlternatorStreamSource,
    GenerationShard,
    with_generation_barrier,
)
from alternator_migrator.changes.streams import Shard
from alternator_migrator.config import load
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.pipeline.replay import Replayer
from alternator_migrator.state.savepoint import SavepointStore
from alternator_migrator.status import status

from ..alternator_fakes import AlternatorStreams
from ..fakes import lean_client, replay_setup, target_values
from ..helpers import create_table, eventually, write_config


@pytest.fixture
def alt() -> Iterator[AlternatorStreams]:
    f = AlternatorStreams(records_per_call=4, shards_per_page=5).start()
    yield f
    f.stop()


def test_each_generation_waits_for_the_whole_previous_one() -> None:
    shards = [
        Shard("a1", None, "100", "150"),
        Shard("a2", None, "100", "150"),
        Shard("b1", "a1", "200", "250"),
        Shard("b2", "a1", "200", None),
        Shard("c1", "b2", "300", None),
    ]
    out = {s.shard_id: s for s in with_generation_barrier(shards)}
    assert all(isinstance(s, GenerationShard) for s in out.values())
    assert out["a1"].parents == ()
    # b2 names only a1, yet a2 may hold older changes of b2's keys: it waits for both.
    assert set(out["b2"].parents) == {"a1", "a2"}
    assert set(out["c1"].parents) == {"b1", "b2"}


def _replayer(alt: AlternatorStreams, store: Any, sp: Any, sink: Any) -> Replayer:
    client = lean_client(alt.url)
    return Replayer(
        client,
        sink,
        alt.arn,
        store,
        sp,
        out=io.StringIO(),
        refresh_seconds=0.1,
        max_idle_sleep=0.05,
        changes=AlternatorStreamSource(client, alt.arn, settle_seconds=0.0),
    )


def test_topology_change_many_shards_late_listing(
    tmp_path: Path, alt: AlternatorStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    first = alt.new_generation(12)
    for i in range(30):
        alt.write(f"k{i}", 1)
    # Topology change: every key moves to a shard of a new generation, listed only later.
    second = alt.new_generation(7, hidden=True)
    for i in range(30):
        alt.write(f"k{i}", 2)
    alt.write("k3", None, ttl=True)  # a TTL expiration
    alt.write("k4", 3, as_remove_modify=True)  # a PutItem streamed as REMOVE + MODIFY
    store, sp, sink = replay_setup(tmp_path, alt, dynalite, dst, table_name)
    r = _replayer(alt, store, sp, sink)
    stop = threading.Event()
    t = threading.Thread(target=r.run, args=(stop,), daemon=True)
    t.start()
    try:
        eventually(lambda: all(s in sp.shards and sp.shards[s].finished for s in first), 30)
        assert target_values(dst, table_name) == {f"k{i}": "1" for i in range(30)}
        alt.reveal()
        want = {f"k{i}": "2" for i in range(30) if i not in (3, 4)} | {"k4": "3"}
        eventually(lambda: target_values(dst, table_name) == want, 30)
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    # Every write is a MODIFY in Alternator; the expiration and the PutItem's REMOVE are REMOVEs.
    assert r.stats.counts == {"MODIFY": 61, "REMOVE": 2}
    # No shard of the new generation was read before every old one had been read to its end.
    calls = alt.calls
    last_old = max(
        i
        for i, (op, b) in enumerate(calls)
        if op == "GetRecords" and any(s in b["ShardIterator"] for s in first)
    )
    first_new = min(
        i for i, (op, b) in enumerate(calls) if op == "GetShardIterator" and b["ShardId"] in second
    )
    assert first_new > last_old
    assert any("ExclusiveStartShardId" in b for b in alt.ops("DescribeStream"))


def _alt_config(
    tmp_path: Path, alt: AlternatorStreams, dynalite: Server, table: str, settle: float
) -> Any:
    return load(
        write_config(
            tmp_path / f"alt-{settle}.yaml",
            source_url=alt.url,
            source_table=alt.table,
            target_url=dynalite.url,
            target_table=table,
            savepoints=tmp_path / "sp",
            source_extra={"type": "alternator", "streamsSettleSeconds": settle},
            target_extra={"skipInitialSnapshotTransfer": True},
            top_extra={"savepoints": {"path": str(tmp_path / "sp"), "intervalSeconds": 300}},
        )
    )


def test_caught_up_waits_out_the_settle_window(
    tmp_path: Path, dynalite: Server, dst: Any, table_name: str
) -> None:
    # Records show 1.5 s after the write: a replay that called an empty read "caught up"
    # would stop before seeing them.
    alt = AlternatorStreams(delay=1.5).start()
    try:
        alt.new_generation(4)
        create_table(dst, table_name)
        cfg = _alt_config(tmp_path, alt, dynalite, table_name, 2.0)
        assert cfg.source.settle_seconds == 2.0
        store = SavepointStore(cfg)
        sp = store.new()
        sp.stream_arn = alt.arn  # the fake's stream is "ours" (enabled by this migration)
        store.save(sp)
        for i in range(10):
            alt.write(f"k{i}", i)
        result = migrate(cfg, stop_when_caught_up=0.1, show_progress=False, out=io.StringIO())
        assert result.replay is not None
        assert target_values(dst, table_name) == {f"k{i}": str(i) for i in range(10)}
        # The caught-up replay saved its positions at once (intervalSeconds is 300 here).
        saved = store.load()
        assert saved is not None and any(p.sequence_number for p in saved.shards.values())
        # status: drained, but the newest change is not yet two windows old under a long
        # window; under a short one it is.
        assert status(_alt_config(tmp_path, alt, dynalite, table_name, 60.0)).caught_up is False
        eventually(
            lambda: status(_alt_config(tmp_path, alt, dynalite, table_name, 0.5)).caught_up, 20
        )
    finally:
        alt.stop()


def test_defaults_of_the_settle_window(tmp_path: Path) -> None:
    def cfg(kind: str) -> Any:
        return load(
            write_config(
                tmp_path / f"{kind}.yaml",
                source_url="http://127.0.0.1:1",
                source_table="t",
                target_url="http://127.0.0.1:2",
                target_table="t",
                savepoints=tmp_path / "sp",
                source_extra={"type": kind},
            )
        )

    assert cfg("alternator").source.settle_seconds == 10.0
    assert cfg("dynamodb").source.settle_seconds == 0.0


def test_positions_older_than_the_streams_retention_are_refused() -> None:
    from alternator_migrator.changes.alternator import check_retention
    from alternator_migrator.errors import StreamTrimmedError

    now = 1_000_000.0
    check_retention(now - 3600, now, "sp.json")  # an hour ago: fine
    check_retention(0.0, now, "sp.json")  # never written: nothing to lose
    with pytest.raises(StreamTrimmedError, match="24 hours"):
        check_retention(now - 24 * 3600, now, "sp.json")


def test_stream_reads_of_an_alternator_source_use_node_discovery(
    tmp_path: Path, alt: AlternatorStreams, dynalite: Server
) -> None:
    from alternator_migrator.aws.client import source_client
    from alternator_migrator.aws.nodes import AlternatorNodes

    cfg = _alt_config(tmp_path, alt, dynalite, "t", 0.0)
    with source_client(cfg.source) as client:
        # GetRecords and friends go through the same node router as the table calls.
        assert isinstance(client._router, AlternatorNodes)
        assert client._streams_router is client._router
