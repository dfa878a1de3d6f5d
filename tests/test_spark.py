"""The Spark engine (local[2]) against the real servers: moto source, dynalite target."""

from __future__ import annotations

import io
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.checkpoint import SavepointStore
from alternator_migrator.config import Config, load
from alternator_migrator.localservers import Server
from alternator_migrator.migrate import MigrationResult, migrate

from .helpers import batch_put, create_table, eventually, scan_all, table_diff, write_config

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("the Spark engine needs Java", allow_module_level=True)

from alternator_migrator.spark import migrate_spark, spark_session

pytestmark = pytest.mark.spark


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    # No UI: other test runs may share this machine and its port 4040.
    session = spark_session("local[2]", {"spark.ui.enabled": "false"})
    yield session
    session.stop()


def _config(
    tmp_path: Path, moto: Server, dynalite: Server, src_table: str, dst_table: str, **kw: Any
) -> Config:
    path = write_config(
        tmp_path / f"{dst_table}.yaml",
        source_url=moto.url,
        source_table=src_table,
        target_url=dynalite.url,
        target_table=dst_table,
        savepoints=tmp_path / "savepoints",
        **kw,
    )
    return load(path)


def _varied_items(n: int) -> list[dict[str, Any]]:
    """Items using every attribute type, so both engines' wire handling is exercised."""
    return [
        {
            "pk": {"S": f"item#{i % 97}"},
            "sk": {"N": str(i)},
            "name": {"S": f"name {i} é ✓"},
            "price": {"N": f"{i * 1.25:.2f}"},
            "blob": {"B": bytes([i % 256, 0, 255])},
            "flag": {"BOOL": i % 2 == 0},
            "nothing": {"NULL": True},
            "tags": {"SS": [f"t{i % 3}", f"t{i % 5 + 10}"]},
            "scores": {"NS": [str(i), str(i + 0.5)]},
            "blobs": {"BS": [b"\x00\x01", bytes([i % 256, 7])]},
            "nested": {"M": {"list": {"L": [{"N": str(i)}, {"S": "x"}, {"M": {}}]}}},
        }
        for i in range(n)
    ]


def test_snapshot_through_spark_matches_source_and_skips_finished_segments(
    spark: Any, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name, range_key=("sk", "N"))
    batch_put(src, table_name, _varied_items(1200))
    extra = {"source_extra": {"scanSegments": 6, "maxMapTasks": 2}, "stream": False}

    # A savepoint that says segments 0 and 1 are done, and a target holding them (marked, as
    # an earlier run left them; an empty target would be copied again): Spark must skip them.
    partial = _config(tmp_path, moto, dynalite, table_name, table_name + "-partial", **extra)
    done_items = [
        i
        for seg in (0, 1)
        for i in src.scan(TableName=table_name, Segment=seg, TotalSegments=6)["Items"]
    ]
    create_table(dst, table_name + "-partial", range_key=("sk", "N"))
    batch_put(dst, table_name + "-partial", [{**i, "mark": {"S": "earlier"}} for i in done_items])
    store = SavepointStore(partial)
    sp = store.new()
    sp.total_segments, sp.segments_done = 6, {0, 1}
    store.save(sp)
    result = migrate_spark(partial, spark=spark, show_progress=False)
    assert result.snapshot_complete
    skipped = {repr(i["sk"]) for i in done_items}
    target = scan_all(dst, table_name + "-partial")
    assert skipped and {repr(i["sk"]) for i in target if "mark" in i} == skipped
    assert len(target) == 1200

    full = _config(tmp_path, moto, dynalite, table_name, table_name + "-full", **extra)
    result = migrate_spark(full, spark=spark, show_progress=False)
    assert result.snapshot_complete and not result.stopped
    assert table_diff(src, table_name, dst, table_name + "-full", ("pk", "sk")) == []
    saved = SavepointStore(full).load()
    assert saved is not None and saved.snapshot_done
    assert saved.segments_done == set(range(6)) and not saved.segment_keys


def test_spark_and_local_engines_give_identical_targets(
    spark: Any, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name, range_key=("sk", "N"))
    batch_put(src, table_name, _varied_items(800))
    kw: dict[str, Any] = {
        "stream": False,
        "source_extra": {"scanSegments": 4},
        "top_extra": {"renames": [{"from": "name", "to": "title"}]},
    }
    local_cfg = _config(tmp_path, moto, dynalite, table_name, table_name + "-local", **kw)
    spark_cfg = _config(tmp_path, moto, dynalite, table_name, table_name + "-spark", **kw)
    assert migrate(local_cfg, show_progress=False).snapshot_complete
    assert migrate_spark(spark_cfg, spark=spark, show_progress=False).snapshot_complete

    spark_items = scan_all(dst, table_name + "-spark")
    assert len(spark_items) == 800 and all("title" in i and "name" not in i for i in spark_items)
    keys = ("pk", "sk")
    assert table_diff(dst, table_name + "-local", dst, table_name + "-spark", keys) == []


def _mutate(src: Any, table: str, rng: random.Random, i: int) -> None:
    # PutItem and DeleteItem only: each emits exactly one stream record on moto.
    key = {"pk": {"S": f"k{rng.randrange(150)}"}}
    if rng.random() < 0.25:
        src.delete_item(TableName=table, Key=key)
    else:
        src.put_item(TableName=table, Item={**key, "v": {"N": str(i)}, "pad": {"S": "p" * 100}})


def test_live_replay_through_spark_converges_and_resumes(
    spark: Any, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": "0"}} for i in range(100)])
    cfg = _config(tmp_path, moto, dynalite, table_name, table_name, source_extra={"maxMapTasks": 2})
    rng = random.Random(5)
    out = io.StringIO()
    stop, stop_load = threading.Event(), threading.Event()
    done: list[MigrationResult] = []
    mutations = 0

    def load_source() -> None:
        nonlocal mutations
        while not stop_load.is_set():
            _mutate(src, table_name, rng, mutations)
            mutations += 1
            stop_load.wait(0.005)  # pacing only: a steady trickle, not a burst

    loader = threading.Thread(target=load_source, daemon=True)
    loader.start()
    runner = threading.Thread(
        target=lambda: done.append(
            migrate_spark(
                cfg, stop, spark=spark, out=out, show_progress=False, stream_poll_seconds=0.1
            )
        ),
        daemon=True,
    )
    runner.start()
    # The load keeps going while batches are applied; then it stops and the target converges.
    eventually(lambda: out.getvalue().count("\n") >= 4, 120, message="replay batches printed")
    stop_load.set()
    loader.join()
    eventually(
        lambda: table_diff(src, table_name, dst, table_name, ("pk",)) == [],
        120,
        interval=0.5,
        message="target converged",
    )
    stop.set()
    runner.join(60)
    assert done and done[0].snapshot_complete and done[0].stopped
    assert done[0].replay is not None and done[0].replay.records > 0
    assert "| DELETE" in out.getvalue() and "| MODIFY" in out.getvalue()
    saved = SavepointStore(cfg).load()
    assert saved is not None and saved.stream_arn == done[0].stream_arn
    assert all(p.sequence_number for p in saved.shards.values())

    # Changes made while stopped: the restart applies exactly those, not the stream again.
    # (New keys, so that every delete removes an item: moto records no deletes of nothing.)
    for i in range(30):
        src.put_item(TableName=table_name, Item={"pk": {"S": f"r{i}"}, "v": {"N": str(i)}})
    for i in range(10):
        src.delete_item(TableName=table_name, Key={"pk": {"S": f"r{i}"}})
    again = migrate_spark(cfg, spark=spark, stop_when_caught_up=1.0, show_progress=False, out=out)
    assert again.replay is not None and again.replay.records == 40
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
