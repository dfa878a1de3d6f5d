"""Faults: expired iterators, trimmed streams (exit 3), injected throttling/5xx/resets, a target
outage, and kill -9 of the migrator in the snapshot and in the replay."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.changes.enable import ensure_stream
from alternator_migrator.config import load
from alternator_migrator.errors import StreamTrimmedError
from alternator_migrator.localservers import Server
from alternator_migrator.metrics import METRICS
from alternator_migrator.pipeline.replay import Replayer

from ..fakes import (
    FakeStreams,
    fake_config,
    lean_client,
    replay_setup,
    run_replay,
    target_values,
)
from ..helpers import (
    BackgroundMigration,
    batch_put,
    create_table,
    eventually,
    table_diff,
    write_config,
)
from ..proxy import FaultProxy


@pytest.fixture
def fake() -> Iterator[FakeStreams]:
    f = FakeStreams(records_per_call=3, shards_per_page=2).start()
    yield f
    f.stop()


# ---------------------------------------------------------------------- fake Streams endpoint


def test_expired_iterator_is_reacquired_after_the_last_applied_record(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("a")
    seqs = [fake.put("a", f"k{i}", i) for i in range(5)]
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    r = Replayer(lean_client(fake.url), sink, fake.arn, store, sp, out=io.StringIO())
    try:
        r.refresh()
        assert r.round().records == 3
        # The consumer was slow (iterators live 15 minutes): the next GetRecords is refused.
        # (The replayer reads one page ahead while it writes, so k3 and k4 may already be in
        # hand; the expiry then hits the read after them.)
        fake.expire_iterators()
        fake.put("a", "k0", 100)
        later = [r.round().records for _ in range(4)]
        assert sum(later) == 3 and later[-1] == 0
    finally:
        r._pool.shutdown()
        r._reads.shutdown()
    asked = [
        (b["ShardIteratorType"], b.get("SequenceNumber")) for b in fake.ops("GetShardIterator")
    ]
    # Re-acquired right after the last record read before the expiry (k2 without read-ahead,
    # k4 with it): nothing skipped, nothing re-read.
    assert asked[0] == ("TRIM_HORIZON", None)
    assert asked[1:] in ([("AFTER_SEQUENCE_NUMBER", seqs[2])], [("AFTER_SEQUENCE_NUMBER", seqs[4])])
    written = [r["PutRequest"]["Item"]["pk"]["S"] for b in sink.batches for r in b]
    assert sorted(written) == ["k0", "k0", "k1", "k2", "k3", "k4"]
    assert target_values(dst, table_name) == {
        "k0": "100",
        "k1": "1",
        "k2": "2",
        "k3": "3",
        "k4": "4",
    }
    assert (
        sp.shards["a"].sequence_number == fake.shards["a"].records[-1]["dynamodb"]["SequenceNumber"]
    )


def _trim_scenario(fake: FakeStreams, kind: str) -> dict[str, Any]:
    """Sets up the stream; returns the savepoint shard positions a previous run left."""
    fake.add_shard("a")
    seqs = [fake.put("a", f"k{i}", i) for i in range(6)]
    applied = {"a": (seqs[1], False, None)}
    if kind == "get_iterator_trimmed":
        # Retention removed records 2..3 that were never applied; only GetShardIterator tells.
        fake.shards["a"].range_follows_trim = False
        fake.trim("a", seqs[3])
    elif kind == "checkpoint_older_than_oldest":
        fake.trim("a", seqs[3])  # DescribeStream's StartingSequenceNumber moves past the savepoint
    elif kind == "get_records_trimmed":
        fake.shards["a"].get_records_trimmed = True
    elif kind == "shard_gone":
        fake.add_shard("b")
        fake.put("b", "k9", 9)
        applied["old"] = (seqs[0], False, None)  # a shard we were reading aged out entirely
    elif kind == "parent_came_and_went":
        fake.split("a", "mid")
        fake.put("mid", "k8", 8)
        fake.split("mid", "leaf")
        fake.put("leaf", "k9", 9)
        fake.remove_shard("mid")  # the whole middle generation expired while we were down
        applied = {"a": (seqs[-1], True, None)}
    else:
        raise AssertionError(kind)
    return applied


TRIM_KINDS = [
    "get_iterator_trimmed",
    "checkpoint_older_than_oldest",
    "get_records_trimmed",
    "shard_gone",
    "parent_came_and_went",
]


@pytest.mark.parametrize("kind", TRIM_KINDS)
def test_trimmed_stream_stops_and_asks_for_a_new_snapshot(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str, kind: str
) -> None:
    from alternator_migrator.state.savepoint import ShardPosition

    applied = _trim_scenario(fake, kind)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    for sid, (seq, finished, parent) in applied.items():
        sp.shards[sid] = ShardPosition(seq, finished, parent)
    before = {sid: (p.sequence_number, p.finished) for sid, p in sp.shards.items()}
    store.save(sp)

    with pytest.raises(StreamTrimmedError) as exc:
        run_replay(fake, store, sp, sink)

    assert exc.value.exit_code == 3
    assert "new snapshot" in str(exc.value)
    # Never continue silently past the gap: nothing applied, no position moved.
    assert sink.batches == []
    saved = store.load()
    assert saved is not None
    assert {sid: (p.sequence_number, p.finished) for sid, p in saved.shards.items()} == before
    if kind == "checkpoint_older_than_oldest":
        assert fake.ops("GetShardIterator") == []  # detected from DescribeStream alone


def test_cli_exits_3_when_the_stream_was_trimmed(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, table_name: str
) -> None:
    from alternator_migrator.state.savepoint import SavepointStore, ShardPosition

    applied = _trim_scenario(fake, "get_iterator_trimmed")
    cfg = fake_config(tmp_path, fake, dynalite, table_name)
    store = SavepointStore(cfg)
    sp = store.new()
    sp.stream_arn, sp.snapshot_done, sp.total_segments = fake.arn, True, 4
    sp.segments_done = {0, 1, 2, 3}
    sp.shards["a"] = ShardPosition(applied["a"][0])
    store.save(sp)

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "alternator_migrator",
            "migrate",
            "--config",
            cfg.path,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 3, p.stderr
    assert "new snapshot" in p.stderr
    assert "Resuming with the stream this migration enabled" in p.stderr
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------------- real servers, proxies

KEYSPACE = 400


def _seed(client: Any, table: str, n: int, pad: int = 100) -> None:
    create_table(client, table)
    batch_put(
        client,
        table,
        [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}, "pad": {"S": "x" * pad}} for i in range(n)],
    )


def _mutate(client: Any, table: str, rng: random.Random, n: int, *, updates: bool = True) -> None:
    """Puts, updates and deletes from one thread (moto may repeat sequence numbers otherwise)."""
    for i in range(n):
        key = {"pk": {"S": f"k{rng.randrange(KEYSPACE)}"}}
        x = rng.random()
        if x < 0.2:
            client.delete_item(TableName=table, Key=key)
        elif x < 0.5 and updates:
            client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET v = :v, m = :m",
                ExpressionAttributeValues={":v": {"N": str(-i)}, ":m": {"M": {"n": {"N": str(i)}}}},
            )
        else:
            client.put_item(
                TableName=table, Item={**key, "v": {"N": str(i)}, "s": {"SS": [f"a{i}", "b"]}}
            )


def _retries() -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, n in METRICS.counters("retries_total").items():
        cause = dict(labels).get("cause", "?")
        out[cause] = out.get(cause, 0.0) + n
    return out


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(after[k] - before.get(k, 0.0)) for k in after if after[k] > before.get(k, 0.0)}


def _background(cfg_path: Path) -> BackgroundMigration:
    """``migrate()`` in a thread of this process, stopped like Ctrl-C would."""
    return BackgroundMigration(load(cfg_path), out=io.StringIO(), stream_poll_seconds=0.1).start()


def _converged(
    src: Any, src_table: str, dst: Any, dst_table: str, bg: BackgroundMigration | None = None
) -> bool:
    if bg is not None:
        bg.check()
    try:
        diff = table_diff(src, src_table, dst, dst_table, ("pk",))
    except Exception as e:  # target table not created yet
        if "ResourceNotFound" in type(e).__name__ or "ResourceNotFound" in str(e):
            return False
        raise
    return diff == []


def _savepoint(tmp: Path) -> dict[str, Any]:
    files = list((tmp / "sp").glob("savepoint-*.json"))
    return json.loads(files[0].read_bytes()) if files else {}


def test_injected_throttling_5xx_and_resets_on_both_sides_converge(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alternator_migrator")
    _seed(src, table_name, 1500)
    faults = {"throttle": 0.10, "error500": 0.03, "reset": 0.03}
    with (
        FaultProxy(moto.url, seed=11, **faults).start() as p_src,
        FaultProxy(dynalite.url, seed=12, **faults).start() as p_dst,
    ):
        cfg = write_config(
            tmp_path / "cfg.yaml",
            source_url=p_src.url,
            source_table=table_name,
            target_url=p_dst.url,
            target_table=table_name,
            savepoints=tmp_path / "sp",
            source_extra={"scanSegments": 4},
        )
        before = _retries()
        bg = _background(cfg)
        rng = random.Random(5)
        kinds = ("throttle", "error500", "reset", "reset_after")

        def every_fault_seen() -> bool:
            # Keep the source changing until each proxy has injected each kind of fault at least
            # once (the draw is random; the assertion is not).
            _mutate(src, table_name, rng, 30)
            bg.check()
            return all(p.count(k) > 0 for p in (p_src, p_dst) for k in kinds)

        eventually(every_fault_seen, 150, 0, "every kind of fault injected on both sides")
        eventually(
            lambda: _converged(src, table_name, dst, table_name, bg), 120, 0.5, "tables equal"
        )
        result = bg.finish()
        injected = {"source": dict(p_src.injected), "target": dict(p_dst.injected)}
    retried = _delta(before, _retries())
    print(f"\ninjected {injected}\nretries by cause {retried}")
    assert result.snapshot_complete and result.replay is not None
    for side in injected.values():
        for what in ("throttle", "error500", "reset", "reset_after"):
            assert side.get(what, 0) > 0, (what, injected)
    for cause in ("throttling", "server_error", "connection"):
        assert retried.get(cause, 0) > 0, retried
    summaries = [r.getMessage() for r in caplog.records if "retries by cause" in r.getMessage()]
    assert summaries and "throttling" in summaries[-1] and "connection" in summaries[-1]


def test_target_unreachable_for_30s_mid_replay(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    _seed(src, table_name, 300)
    with FaultProxy(dynalite.url).start() as p_dst:
        cfg = write_config(
            tmp_path / "cfg.yaml",
            source_url=moto.url,
            source_table=table_name,
            target_url=p_dst.url,
            target_table=table_name,
            savepoints=tmp_path / "sp",
        )
        before = _retries()
        bg = _background(cfg)
        eventually(lambda: _savepoint(tmp_path).get("snapshotDone"), 60, 0.2, "snapshot done")
        p_dst.outage(30)
        _mutate(src, table_name, random.Random(7), 200)
        # Changes made during the outage reach the target once it is back.
        eventually(
            lambda: p_dst.count("outage") > 0 and not p_dst.in_outage, 60, 0.5, "outage over"
        )
        eventually(
            lambda: _converged(src, table_name, dst, table_name, bg), 90, 0.5, "tables equal"
        )
        result = bg.finish()
        refused = p_dst.count("outage")
    retried = _delta(before, _retries())
    print(f"\nconnections refused during the outage {refused}; retries by cause {retried}")
    assert result.replay is not None and result.replay.records > 0
    assert retried.get("connection", 0) > 0


def test_lost_answer_to_our_stream_enable_is_not_mistaken_for_a_foreign_stream(
    moto: Server, src: Any, table_name: str
) -> None:
    _seed(src, table_name, 1)
    with FaultProxy(moto.url).start() as proxy:
        proxy.lose_next_answer("UpdateTable")
        client = lean_client(proxy.url)
        desc = client.call("DescribeTable", {"TableName": table_name})["Table"]
        # The first UpdateTable enabled the stream but its answer was lost; the retry is refused
        # (moto: ResourceInUseException). That stream is ours, not someone else's.
        arn = ensure_stream(client, desc, None, poll_seconds=0.1)
        assert proxy.count("reset_after") == 1
    assert arn == src.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]


# ---------------------------------------------------------------------- kill -9 of the CLI


def _start_cli(cfg: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alternator_migrator",
                "migrate",
                "--config",
                str(cfg),
                "--no-progress",
                *extra,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _kill9(p: subprocess.Popen[bytes]) -> None:
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(10) == -signal.SIGKILL


def _applied(log_text: str) -> int:
    return sum(int(n) for n in re.findall(r"^\| \w+\s*\|\s*(\d+)\|$", log_text, re.M))


def test_kill9_during_snapshot_then_resume_converges(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    _seed(src, table_name, 3000, pad=2000)  # ~6 MB: several Scan pages per segment
    cfg = write_config(
        tmp_path / "cfg.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
        source_extra={"scanSegments": 6, "maxMapTasks": 3},
        target_extra={"writeThroughput": 2000},  # ~1000 WCU/s: the copy takes a few seconds
        top_extra={"savepoints": {"path": str(tmp_path / "sp"), "intervalSeconds": 0.2}},
    )
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    p = _start_cli(cfg, log1)
    try:
        sp = eventually(
            lambda: (s := _savepoint(tmp_path)) and (s["segmentsDone"] or s["segmentKeys"]) and s,
            90,
            0.05,
            "some snapshot progress saved",
        )
    finally:
        _kill9(p)
    sp = _savepoint(tmp_path)
    assert not sp["snapshotDone"], "killed too late to test a snapshot resume"
    _mutate(src, table_name, random.Random(3), 150)  # while the migrator is down

    p2 = _start_cli(cfg, log2, "--stop-when-caught-up", "2")
    assert p2.wait(180) == 0, log2.read_text()[-3000:]
    text = log2.read_text()
    assert "Resuming with the stream this migration enabled" in text
    assert "Resuming snapshot" in text
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
    print(
        f"\nkilled with {len(sp['segmentsDone'])} segments done, {len(sp['segmentKeys'])} partial"
    )


def test_kill9_during_replay_then_resume_converges(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    _seed(src, table_name, 300)
    cfg = write_config(
        tmp_path / "cfg.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
    )
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    p = _start_cli(cfg, log1)
    try:
        eventually(lambda: _savepoint(tmp_path).get("snapshotDone"), 60, 0.1, "snapshot done")
        rng = random.Random(9)
        _mutate(src, table_name, rng, 300, updates=False)
        eventually(
            lambda: _converged(src, table_name, dst, table_name), 60, 0.2, "replay caught up"
        )
        # Wait until a savepoint written after convergence covers every applied record.
        seen = _savepoint(tmp_path)["updatedAt"]
        eventually(lambda: _savepoint(tmp_path)["updatedAt"] > seen + 1.0, 30, 0.1, "savepoint")
        positions = {k: v["sequenceNumber"] for k, v in _savepoint(tmp_path)["shards"].items()}
        assert any(positions.values())
        # The op table sums batches for a few seconds; the stream is quiet now, so the held-back
        # counts come out shortly (a kill -9 would lose them, not the records).
        eventually(lambda: _applied(log1.read_text()) >= 250, 30, 0.2, "op table printed")
    finally:
        _kill9(p)
    _mutate(src, table_name, rng, 200, updates=False)  # while the migrator is down

    p2 = _start_cli(cfg, log2, "--stop-when-caught-up", "2")
    assert p2.wait(120) == 0, log2.read_text()[-3000:]
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
    # Resumed after the last applied record: only the changes made while it was down came again
    # (a put or a delete of an existing item is one record; deleting a missing item is none).
    first, second = _applied(log1.read_text()), _applied(log2.read_text())
    print(f"\nrecords applied before the kill {first}, after the restart {second}")
    assert first >= 250
    assert 0 < second <= 200
