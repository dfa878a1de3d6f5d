"""Savepoints and resuming: private atomic files, fingerprints, partial segments, shard positions,
only-acknowledged checkpoints, stream reuse and --fresh."""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.aws.client import RetryPolicy
from alternator_migrator.config import Config, load
from alternator_migrator.errors import SavepointError, WriteError
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.snapshot.copier import ScanPlan, ScanSource, SnapshotCopier, plan_scan
from alternator_migrator.snapshot.ledger import SnapshotLedger
from alternator_migrator.state.savepoint import Savepoint, SavepointStore
from alternator_migrator.target.sink import Sink, key_id

from ..fakes import (
    FakeStreams,
    RecordingSink,
    lean_client,
    replay_setup,
    run_replay,
    target_values,
)
from ..helpers import batch_put, create_table, scan_all, table_diff, write_config
from ..proxy import FaultProxy

SECRETS = ("AKIDSOURCE", "source-secret-do-not-log", "AKIDTARGET", "target-secret-do-not-log")
FAST_FAIL = RetryPolicy(base=0.01, cap=0.05, max_attempts=4, deadline=1.0)


@pytest.fixture
def fake() -> Iterator[FakeStreams]:
    f = FakeStreams(records_per_call=3).start()
    yield f
    f.stop()


def _config(tmp_path: Path, source_url: str, table: str, target_url: str, **kw: Any) -> Path:
    return write_config(
        tmp_path / "cfg.yaml",
        source_url=source_url,
        source_table=table,
        target_url=target_url,
        target_table=table,
        savepoints=tmp_path / "sp",
        **kw,
    )


def _seed(client: Any, table: str, n: int) -> None:
    create_table(client, table)
    batch_put(client, table, [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(n)])


def _segment(client: Any, table: str, seg: int, total: int) -> list[dict[str, Any]]:
    """One scan segment's items, in scan order."""
    items: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"TableName": table, "Segment": seg, "TotalSegments": total}
    while True:
        r = client.scan(**kw)
        items.extend(r["Items"])
        if "LastEvaluatedKey" not in r:
            return items
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def _keys(items: list[dict[str, Any]]) -> set[str]:
    return {i["pk"]["S"] for i in items}


# ---------------------------------------------------------------------- the file itself


def test_savepoint_file_is_private_atomic_and_holds_no_secret(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    _seed(src, table_name, 50)
    cfg = load(_config(tmp_path, moto.url, table_name, dynalite.url))
    migrate(cfg, stop_when_caught_up=0.3, out=io.StringIO(), show_progress=False)

    store = SavepointStore(cfg)
    files = [p for p in (tmp_path / "sp").iterdir() if p != store.lock_file]
    assert [p.name for p in files] == [store.file.name]  # no temp file left behind
    f = files[0]
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    raw = f.read_text()
    for secret in SECRETS:
        assert secret not in raw
    sp = SavepointStore(cfg).load()
    assert sp is not None and sp.snapshot_done and sp.stream_arn
    assert sp.fingerprint == cfg.fingerprint()
    assert sp.shards  # the stream position is saved too


def test_savepoint_of_another_migration_is_refused(tmp_path: Path) -> None:
    a = load(_config(tmp_path, "http://127.0.0.1:1", "t1", "http://127.0.0.1:2"))
    b_path = write_config(
        tmp_path / "b.yaml",
        source_url="http://127.0.0.1:1",
        source_table="t1",
        target_url="http://127.0.0.1:3",  # another target: another migration
        target_table="t1",
        savepoints=tmp_path / "sp",
    )
    b = load(b_path)
    assert a.fingerprint() != b.fingerprint()
    store_a, store_b = SavepointStore(a), SavepointStore(b)
    sp = store_a.new()
    sp.total_segments, sp.segments_done = 4, {0, 1}
    store_a.save(sp)
    os.replace(store_a.file, store_b.file)  # e.g. copied by hand
    with pytest.raises(SavepointError, match="another migration"):
        store_b.load()
    # Rotating credentials is still the same migration.
    rotated = write_config(
        tmp_path / "c.yaml",
        source_url="http://127.0.0.1:1",
        source_table="t1",
        target_url="http://127.0.0.1:2",
        target_table="t1",
        savepoints=tmp_path / "sp",
        source_extra={"credentials": {"accessKey": "NEWKEY", "secretKey": "new-secret"}},
    )
    assert load(rotated).fingerprint() == a.fingerprint()


# ---------------------------------------------------------------------- snapshot


def _copy(
    cfg: Config, store: SavepointStore, sp: Savepoint, plan: ScanPlan, url: str, sink: Sink
) -> bool:
    """The local engine's snapshot step: the ledger's to-do list through the copier."""
    ledger = SnapshotLedger(cfg, sp, store, plan.total_segments)
    with ledger:
        units = ScanSource(lean_client(url), cfg, plan)
        SnapshotCopier(units, sink, ledger, plan, threading.Event()).run(ledger.todo())
    return ledger.outcome().complete


def test_snapshot_skips_finished_segments_and_resumes_partial_ones(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    _seed(src, table_name, 400)
    create_table(dst, table_name)
    cfg = load(_config(tmp_path, moto.url, table_name, dynalite.url, stream=False))
    store = SavepointStore(cfg)
    sp = store.new()
    total = 4
    sp.total_segments = total
    sp.segments_done = {0}
    first = src.scan(TableName=table_name, Segment=1, TotalSegments=total, Limit=7)
    sp.segment_keys = {1: first["LastEvaluatedKey"]}
    store.save(sp)

    resumed = store.load()
    assert resumed is not None
    sink = Sink(lean_client(dynalite.url, "target"), table_name, ["pk"])
    plan = plan_scan(cfg, {}, resumed.total_segments)
    assert plan.total_segments == total
    assert _copy(cfg, store, resumed, plan, moto.url, sink)
    expected = _keys(_segment(src, table_name, 1, total)) - _keys(first["Items"])
    for seg in (2, 3):
        expected |= _keys(_segment(src, table_name, seg, total))
    # Exactly the unfinished work: no item of segment 0, none before segment 1's saved key.
    assert _keys(scan_all(dst, table_name)) == expected
    saved = store.load()
    assert saved is not None
    assert saved.segments_done == {0, 1, 2, 3} and saved.segment_keys == {}


def test_snapshot_checkpoints_only_acknowledged_pages(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    _seed(src, table_name, 1200)
    create_table(dst, table_name)
    cfg = load(
        _config(
            tmp_path,
            moto.url,
            table_name,
            dynalite.url,
            stream=False,
            source_extra={"scanSegments": 16, "maxMapTasks": 1},
        )
    )
    store = SavepointStore(cfg)
    sp = store.new()
    plan = plan_scan(cfg, {}, None)
    sp.total_segments = plan.total_segments
    with FaultProxy(dynalite.url).start() as proxy:
        proxy.outage_after(20, 60)  # the target goes away after 20 of the 48 batches
        sink = Sink(lean_client(proxy.url, "target"), table_name, ["pk"], retry=FAST_FAIL)
        with pytest.raises(WriteError):
            _copy(cfg, store, sp, plan, moto.url, sink)

    saved = store.load()
    assert saved is not None
    assert 0 < len(saved.segments_done) < plan.total_segments
    in_target = _keys(scan_all(dst, table_name))
    for seg in saved.segments_done:
        assert _keys(_segment(src, table_name, seg, plan.total_segments)) <= in_target, seg
    for seg, key in saved.segment_keys.items():
        items = _segment(src, table_name, seg, plan.total_segments)
        upto = [key_id({"pk": i["pk"]}) for i in items].index(key_id(key))
        assert _keys(items[: upto + 1]) <= in_target, seg

    # Resuming against a healthy target completes the copy.
    sink = Sink(lean_client(dynalite.url, "target"), table_name, ["pk"])
    assert _copy(cfg, store, saved, plan, moto.url, sink)
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []


# ---------------------------------------------------------------------- replay


def test_replay_resumes_after_the_last_applied_record_and_finds_new_shards(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("s0")
    for i in range(4):
        fake.put("s0", f"k{i}", i)
    fake.split("s0", "s1")
    fake.put("s1", "k0", 10)
    last_applied = fake.put("s1", "k1", 11)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    run_replay(fake, store, sp, sink)
    assert target_values(dst, table_name) == {"k0": "10", "k1": "11", "k2": "2", "k3": "3"}

    # While stopped: more changes, and the shard splits again.
    fake.put("s1", "k2", 12)
    fake.split("s1", "s2")
    fake.put("s2", "k3", 13)
    fake.put("s2", "k9", 19)
    n_calls = len(fake.calls)
    resumed = store.load()
    assert resumed is not None
    assert resumed.shards["s0"].finished and resumed.shards["s1"].sequence_number == last_applied
    sink2 = RecordingSink(lean_client(dynalite.url, "target"), table_name, ["pk"])
    run_replay(fake, store, resumed, sink2)

    later = [(op, b) for op, b in fake.calls[n_calls:] if op == "GetShardIterator"]
    asked = {b["ShardId"]: (b["ShardIteratorType"], b.get("SequenceNumber")) for _, b in later}
    assert asked == {
        "s1": ("AFTER_SEQUENCE_NUMBER", last_applied),  # not from scratch
        "s2": ("TRIM_HORIZON", None),  # discovered
    }  # and the finished s0 is not read again
    written = sorted(r["PutRequest"]["Item"]["pk"]["S"] for b in sink2.batches for r in b)
    assert written == ["k2", "k3", "k9"]
    assert target_values(dst, table_name) == {
        "k0": "10",
        "k1": "11",
        "k2": "12",
        "k3": "13",
        "k9": "19",
    }


def test_replay_checkpoints_only_what_the_target_acknowledged(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("a")
    seqs = [fake.put("a", f"k{i}", i) for i in range(6)]
    store, sp, _ = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    with FaultProxy(dynalite.url).start() as proxy:
        proxy.outage_after(1, 60)  # the first round's batch lands, the second one cannot
        sink = Sink(lean_client(proxy.url, "target"), table_name, ["pk"], retry=FAST_FAIL)
        with pytest.raises(WriteError):
            run_replay(fake, store, sp, sink)
    saved = store.load()
    assert saved is not None
    assert saved.shards["a"].sequence_number == seqs[2]
    assert target_values(dst, table_name) == {"k0": "0", "k1": "1", "k2": "2"}

    sink2 = RecordingSink(lean_client(dynalite.url, "target"), table_name, ["pk"])
    run_replay(fake, store, saved, sink2)
    assert target_values(dst, table_name) == {f"k{i}": str(i) for i in range(6)}
    assert fake.ops("GetShardIterator")[-1]["SequenceNumber"] == seqs[2]


# ---------------------------------------------------------------------- the whole pipeline


def test_restart_reuses_our_stream_and_fresh_starts_over(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alternator_migrator")
    _seed(src, table_name, 200)
    cfg = load(_config(tmp_path, moto.url, table_name, dynalite.url))

    def run(fresh: bool = False) -> Any:
        return migrate(
            cfg,
            fresh=fresh,
            stop_when_caught_up=0.3,
            out=io.StringIO(),
            stream_poll_seconds=0.1,
            show_progress=False,
        )

    first = run()
    assert first.stream_arn and table_diff(src, table_name, dst, table_name, ("pk",)) == []
    # Damage the target behind the migrator's back: only a new snapshot repairs it.
    dst.put_item(TableName=table_name, Item={"pk": {"S": "k1"}, "v": {"N": "-999"}})
    src.put_item(TableName=table_name, Item={"pk": {"S": "k2"}, "v": {"N": "222"}})

    second = run()  # the stream this migration enabled is ours: no "already has a stream"
    assert second.stream_arn == first.stream_arn
    assert "Snapshot already done" in caplog.text
    diff = table_diff(src, table_name, dst, table_name, ("pk",))
    assert len(diff) == 1 and "'k1'" in diff[0]  # finished snapshot not redone; k2 replayed

    third = run(fresh=True)
    assert third.stream_arn == first.stream_arn
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
