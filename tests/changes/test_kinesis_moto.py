"""Acceptance on moto (issue 15): a live migration whose changes come from a Kinesis data
stream, with duplicates, reorderings and a shard split mid-replay; and kill -9 during the
replay, then a restart that resumes from the saved Kinesis positions.

moto has no DynamoDB Kinesis streaming destination: ``KinesisBridge`` answers for it through
the fault proxy (the migrator's source endpoint) and forwards the table's changes into moto's
Kinesis stream, which the migrator reads at that same endpoint.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from alternator_migrator.localservers import Server

from ..helpers import (
    BackgroundMigration,
    batch_put,
    boto_client,
    create_table,
    eventually,
    local_config,
    read_savepoint,
    start_cli,
    table_diff,
    write_config,
)
from ..kinesis_fakes import KinesisBridge
from ..proxy import FaultProxy

HALF = str(2**126)  # inside shard 0's hash range of a 2-shard stream
PARENT = "shardId-000000000000"


@pytest.fixture()
def setup(moto: Server, src: Any, table_name: str) -> Iterator[tuple[KinesisBridge, FaultProxy]]:
    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": "0"}} for i in range(40)])
    name = f"{table_name}-changes"
    boto_client(moto.url, "kinesis").create_stream(StreamName=name, ShardCount=2)
    bridge = KinesisBridge(moto.url, table_name, name)
    proxy = FaultProxy(moto.url).start()
    seen: list[tuple[str, dict[str, Any]]] = []

    def intercept(op: str, body: bytes) -> dict[str, Any] | None:
        if op in ("GetShardIterator", "ListShards"):
            seen.append((op, orjson.loads(body)))
        return bridge.intercept(op, body)

    proxy.intercept = intercept
    proxy.seen = seen  # type: ignore[attr-defined]
    yield bridge, proxy
    bridge.stop()
    proxy.stop()
    assert not bridge.errors, bridge.errors


def kinesis_target(bridge: KinesisBridge) -> dict[str, Any]:
    return {"streamChanges": {"type": "kinesis", "streamArn": bridge.arn, "appName": "t"}}


def churn(src: Any, table: str, rng: random.Random, n: int) -> None:
    """Several changes per item, deletes included, in quick succession."""
    for _ in range(n):
        pk = f"k{rng.randrange(50)}"
        if rng.random() < 0.15:
            src.delete_item(TableName=table, Key={"pk": {"S": pk}})
        else:
            v = str(rng.randrange(10**6))
            src.put_item(TableName=table, Item={"pk": {"S": pk}, "v": {"N": v}})
            src.update_item(
                TableName=table,
                Key={"pk": {"S": pk}},
                UpdateExpression="SET w = :w",
                ExpressionAttributeValues={":w": {"S": v}},
            )


def converged(src: Any, dst: Any, table: str, bridge: KinesisBridge) -> bool:
    if not bridge.idle():
        return False
    diff = table_diff(src, table, dst, table, ("pk",))
    assert not diff, diff[:5]
    return True


def replaying(sp_dir: Path, bridge: KinesisBridge) -> bool:
    assert not bridge.errors, f"the bridge stopped: {bridge.errors!r}"
    sp = read_savepoint(sp_dir)
    shards = sp.get("shards", {})
    assert sp.get("snapshotDone") and any(p.get("sequenceNumber") for p in shards.values()), (
        f"snapshot done: {sp.get('snapshotDone')}, shards: {shards}; bridge read "
        f"{bridge.read}, sent {bridge.sent}"
    )
    return True


def split_seen(sp_dir: Path) -> bool:
    shards = read_savepoint(sp_dir).get("shards", {})
    parent = shards.get(PARENT, {})
    children = [p for p in shards.values() if p.get("parent") == PARENT]
    assert parent.get("finished") and len(children) == 2, shards
    return True


def test_live_migration_from_kinesis_with_a_split_mid_replay(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    setup: tuple[KinesisBridge, FaultProxy],
) -> None:
    bridge, proxy = setup
    cfg = local_config(tmp_path, proxy, dynalite, table_name, target_extra=kinesis_target(bridge))
    run = BackgroundMigration(cfg, stream_poll_seconds=0.05).start()
    try:
        rng = random.Random(3)
        eventually(lambda: bridge.status == "ACTIVE", timeout=60)  # changes captured from here
        churn(src, table_name, rng, 60)
        eventually(lambda: run.check() or replaying(tmp_path / "sp", bridge), timeout=60)
        churn(src, table_name, rng, 40)
        # The split shard has a position: moto's emptied parent ends where it was read to.
        eventually(lambda: read_savepoint(tmp_path / "sp")["shards"][PARENT]["sequenceNumber"])
        bridge.avoid_hashes_below = 2**127  # see KinesisBridge: moto would still fill shard 0
        boto_client(moto.url, "kinesis").split_shard(
            StreamName=bridge.name, ShardToSplit=PARENT, NewStartingHashKey=HALF
        )
        churn(src, table_name, rng, 60)
        # The parent is read to its end, then its children are read (parents first).
        eventually(lambda: run.check() or split_seen(tmp_path / "sp"), timeout=60)
        eventually(lambda: run.check() or converged(src, dst, table_name, bridge), timeout=90)
    finally:
        run.stop.set()
    run.finish()
    assert bridge.duplicates > 0 and bridge.swapped_same_item > 0
    assert split_seen(tmp_path / "sp")


def test_kill_9_during_the_replay_resumes_from_saved_kinesis_positions(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    setup: tuple[KinesisBridge, FaultProxy],
) -> None:
    bridge, proxy = setup
    cfg = write_config(
        tmp_path / "c.yaml",
        source_url=proxy.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
        target_extra=kinesis_target(bridge),
    )
    log = tmp_path / "run.log"
    p = start_cli(["migrate", "--config", str(cfg), "--no-progress"], log)
    try:
        rng = random.Random(5)
        eventually(lambda: bridge.status == "ACTIVE", timeout=60)  # changes captured from here
        churn(src, table_name, rng, 80)
        eventually(lambda: replaying(tmp_path / "sp", bridge), timeout=60)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    saved = {
        sid: pos["sequenceNumber"]
        for sid, pos in read_savepoint(tmp_path / "sp")["shards"].items()
        if pos["sequenceNumber"]
    }
    assert saved
    churn(src, table_name, rng, 40)
    seen: list[tuple[str, dict[str, Any]]] = proxy.seen  # type: ignore[attr-defined]
    seen.clear()
    p = start_cli(["migrate", "--config", str(cfg), "--no-progress"], log)
    try:
        eventually(lambda: converged(src, dst, table_name, bridge), timeout=90)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    assert p.returncode == 0, log.read_text()[-2000:]
    # Each shard with a saved position was read on from it, not from the stream's start.
    asked = {b["ShardId"]: b for op, b in seen if op == "GetShardIterator"}
    for sid, seq in saved.items():
        first = next(b for op, b in seen if op == "GetShardIterator" and b["ShardId"] == sid)
        assert first["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER", first
        assert first["StartingSequenceNumber"] == seq
    assert asked
    assert "Snapshot already done" in log.read_text()
