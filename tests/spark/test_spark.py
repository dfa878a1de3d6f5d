"""The Spark engine on a real standalone cluster (a master and a worker started here with
``spark-class``, executors in their own processes) against the real servers: moto source,
dynalite target."""

from __future__ import annotations

import io
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.config import Config, load
from alternator_migrator.localservers import Server
from alternator_migrator.metrics import METRICS
from alternator_migrator.pipeline.migrate import MigrationResult, migrate
from alternator_migrator.state.savepoint import SavepointStore

from ..conftest import ROOT
from ..helpers import (
    batch_put,
    boto_client,
    create_table,
    eventually,
    scan_all,
    table_diff,
    write_config,
)

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("the Spark engine needs Java", allow_module_level=True)

from alternator_migrator.spark import migrate_spark

from .conftest import APP_ARGS, Cluster

pytestmark = pytest.mark.spark


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
    # TTL on: items that expired an hour ago are skipped by both engines.
    src.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    gone = str(int(time.time()) - 3600)
    expired = [{"pk": {"S": f"x{i}"}, "sk": {"N": "0"}, "exp": {"N": gone}} for i in range(5)]
    batch_put(src, table_name, expired)
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
    eventually(
        lambda: out.getvalue().count("Changes to be applied:") >= 2, 120, message="op tables"
    )
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
    assert "|_dynamo_op_type|count|" in out.getvalue()
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


def test_kinesis_replay_on_spark_is_newest_wins_across_executors_and_a_restart(
    spark: Any, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    """Changes from a Kinesis data stream (duplicated, out of order, one item's changes over
    both shards) replayed on executors; then stale copies put into the stream while stopped
    are refused after a restart, by the key clock the driver saved and ships."""
    import orjson

    from alternator_migrator.validate import validate

    from ..changes.test_kinesis_moto import churn, kinesis_target
    from ..kinesis_fakes import KinesisBridge, item_change
    from ..proxy import FaultProxy

    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": "0"}} for i in range(40)])
    stream = f"{table_name}-changes"
    kinesis = boto_client(moto.url, "kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    bridge = KinesisBridge(moto.url, table_name, stream)
    proxy = FaultProxy(moto.url).start()  # answers for DynamoDB's streaming destination
    proxy.intercept = bridge.intercept
    try:
        cfg = _config(
            tmp_path, proxy, dynalite, table_name, table_name, target_extra=kinesis_target(bridge)
        )
        stop, done = threading.Event(), []
        runner = threading.Thread(
            target=lambda: done.append(
                migrate_spark(
                    cfg,
                    stop,
                    spark=spark,
                    out=io.StringIO(),
                    show_progress=False,
                    stream_poll_seconds=0.05,
                )
            ),
            daemon=True,
        )
        runner.start()
        eventually(lambda: bridge.status == "ACTIVE", 120, message="destination active")
        rng = random.Random(11)
        churn(src, table_name, rng, 60)

        def converged() -> bool:
            assert runner.is_alive() or done, "the run ended early"
            return bridge.idle() and table_diff(src, table_name, dst, table_name, ("pk",)) == []

        eventually(converged, 120, interval=0.5, message="target converged")
        stop.set()
        runner.join(60)
        assert done and done[0].replay is not None and done[0].replay.records > 0
        assert bridge.duplicates > 0 and bridge.swapped_same_item > 0
        saved = SavepointStore(cfg).load()
        assert saved is not None and saved.recent_changes  # the driver's clock, saved

        # While stopped: a stale copy of each of a few keys' older states (what a late
        # duplicate is), and one fresh change. Applied, a stale copy would win on the target.
        bridge.stop()
        stale = sorted(saved.recent_changes.items())[:5]
        records = [
            item_change(table_name, orjson.loads(k)["pk"]["S"], -1, int(t * 1e6) - 1)
            for k, t in stale
        ]
        src.put_item(TableName=table_name, Item={"pk": {"S": "fresh"}, "v": {"N": "1"}})
        records.append(item_change(table_name, "fresh", 1, int(time.time() * 1e6)))
        kinesis.put_records(
            StreamName=stream,
            Records=[
                {"Data": orjson.dumps(r), "PartitionKey": str(i)} for i, r in enumerate(records)
            ],
        )
        again = migrate_spark(
            cfg, spark=spark, stop_when_caught_up=1.0, show_progress=False, out=io.StringIO()
        )
        # (Late duplicates the bridge sent after the first run stopped may come too.)
        assert again.replay is not None and again.replay.records >= len(records)
        assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
        assert validate(cfg, out=io.StringIO()).identical
    finally:
        bridge.stop()
        proxy.stop()
    assert not bridge.errors, bridge.errors


# --------------------------------------------------------------------------- the Spark route


def test_submit_refuses_to_run_anything_but_migrate_on_spark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alternator_migrator.cli import main as cli_main
    from alternator_migrator.spark.submit import main as submit_main

    cfg = str(tmp_path / "any.yaml")  # never read: refused before
    for argv, names in (
        (["status", "--config", cfg], "only `migrate`"),
        (["--log-format", "text", "migrate", "--config", cfg, "--engine", "local"], "--engine"),
    ):
        assert submit_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            len(err) == 1 and err[0].startswith("alternator-migrator: error:") and names in err[0]
        )
    # --conf is checked before the config file is read.
    for argv in (
        ["migrate", "--config", cfg, "--engine", "spark", "--conf", "spark.log.level"],
        ["migrate", "--config", cfg, "--conf", "spark.log.level=INFO"],
    ):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--conf" in err[0]


class _Lines:
    """A child's merged output, read as it comes (spark-submit merges Python's stderr in)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout
        self.thread = threading.Thread(
            target=lambda: self.lines.extend(ln.decode(errors="replace") for ln in stdout),
            daemon=True,
        )
        self.thread.start()

    def text(self) -> str:
        return "".join(self.lines)

    def shows(self, what: str, proc: subprocess.Popen[bytes]) -> bool:
        assert proc.poll() is None, f"exited {proc.returncode}: {self.text()[-3000:]}"
        return what in self.text()


def test_spark_submit_with_options_before_the_command_runs_on_the_cluster_and_resumes(
    cluster: Cluster,
    spark: Any,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
) -> None:
    """spark-submit ... submit.py --log-format text migrate ...: Spark runs it (not the driver
    alone), a Ctrl-C stops it cleanly with exit 0, and a restart converges."""
    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": "0"}} for i in range(200)])
    cfg_file = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
    )
    cmd = [
        str(Path(sys.executable).parent / "spark-submit"),
        *("--master", cluster.url, "--conf", "spark.ui.enabled=false", *APP_ARGS),
        str(ROOT / "src" / "alternator_migrator" / "spark" / "submit.py"),
        *("--log-format", "text", "migrate", "--config", str(cfg_file)),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cluster.env,
        start_new_session=True,
    )
    out = _Lines(proc)
    rng = random.Random(7)
    try:
        eventually(lambda: out.shows("Starting to transfer changes", proc), 120)
        for i in range(40):
            _mutate(src, table_name, rng, i)
        eventually(lambda: out.shows("Changes to be applied:", proc), 60)
        # All of them applied before the stop, so that the restart has only the later ones.
        eventually(
            lambda: table_diff(src, table_name, dst, table_name, ("pk",)) == [],
            60,
            interval=0.5,
            message="live changes applied",
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the JVM and our driver
        rc = proc.wait(60)
        out.thread.join(10)
    text = out.text()
    assert rc == 0, text[-3000:]
    assert "Snapshot on Spark:" in text and "Stop requested (SIGINT)" in text
    assert "|_dynamo_op_type|count|" in text
    assert " INFO DAGScheduler" not in text and " INFO TaskSetManager" not in text  # WARN level

    # Changes made while stopped; the restart (same savepoint) applies them and converges.
    for i in range(40, 80):
        _mutate(src, table_name, rng, i)
    cfg = load(cfg_file)
    again = migrate_spark(cfg, spark=spark, stop_when_caught_up=1.0, show_progress=False)
    # Only what changed while stopped (a delete of a missing key makes no record on moto),
    # not the stream again from its start.
    assert again.replay is not None and 0 < again.replay.records <= 40
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []


def test_executors_missing_a_dependency_stop_the_run_before_any_table_is_touched(
    cluster: Cluster, moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    # An executor Python of the right version with nothing installed (what a worker's plain
    # `python3` usually is).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "bare"], check=True)
    create_table(src, table_name)
    cfg_file = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
    )
    r = subprocess.run(
        [
            sys.executable,
            *("-m", "alternator_migrator", "migrate", "--config", str(cfg_file)),
            *("--engine", "spark", "--master", cluster.url),
            *("--conf", f"spark.pyspark.python={tmp_path / 'bare' / 'bin' / 'python'}"),
            *("--conf", "spark.ui.enabled=false", *APP_ARGS),
        ],
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=180,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("alternator-migrator:")]
    assert len(ours) == 1 and "Traceback" not in r.stderr
    assert "cannot import" in ours[0] and "spark.pyspark.python" in ours[0]
    # Nothing was touched: no target table, no stream on the source.
    assert table_name not in boto_client(dynalite.url).list_tables()["TableNames"]
    assert "LatestStreamArn" not in src.describe_table(TableName=table_name)["Table"]


def test_snapshot_counts_move_while_a_segment_is_still_running(
    spark: Any, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    # 4 KB items: a 1 MB Scan page holds about 250, so the segment is copied page by page.
    pad = {"S": "p" * 4000}
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "pad": pad} for i in range(600)])
    # One segment, written at 100 items/s (4 WCU each): it runs for seconds, and its task
    # returns only at the end.
    cfg = _config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        table_name,
        stream=False,
        source_extra={"scanSegments": 1},
        target_extra={"writeThroughput": 400, "throughputWritePercent": 1.0},
    )

    def counts() -> tuple[float, float, float]:
        c = METRICS.snapshot()[0]
        return tuple(  # type: ignore[return-value]
            c.get((n, ()), 0.0)
            for n in ("items_copied_total", "items_scanned_total", "segments_done_total")
        )

    copied0, scanned0, segments0 = counts()
    done: list[MigrationResult] = []
    runner = threading.Thread(
        target=lambda: done.append(migrate_spark(cfg, spark=spark, show_progress=False)),
        daemon=True,
    )
    runner.start()
    live = eventually(
        lambda: (c := counts())[0] > copied0 and c[2] == segments0 and c,
        60,
        interval=0.2,
        message="items copied counted before the segment ended",
    )
    assert live[1] > scanned0
    runner.join(120)
    assert done and done[0].snapshot_complete
    copied, _, segments = counts()
    assert (copied - copied0, segments - segments0) == (600, 1)  # no double counting


def test_streaming_tuning_keys_are_said_not_to_apply_on_spark(
    tmp_path: Path, moto: Server, dynalite: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Not silently ignored: one warning naming the keys (no Spark session is needed for it)."""
    from alternator_migrator.spark.runner import _warn_local_only_keys

    cfg = _config(
        tmp_path,
        moto,
        dynalite,
        "t",
        "t2",
        source_extra={"streamingMaxRecordsPerSecond": 50, "streamingPollingPoolSize": 2},
    )
    with caplog.at_level(logging.WARNING):
        _warn_local_only_keys(cfg)
    lines = [r.getMessage() for r in caplog.records if "not applied by the Spark" in r.getMessage()]
    assert len(lines) == 1
    assert "source.streamingPollingPoolSize" in lines[0]
    assert "source.streamingMaxRecordsPerSecond" in lines[0]


def test_skipped_segments_on_spark_leave_the_snapshot_incomplete_until_copied(
    cluster: Cluster,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
) -> None:
    """The Scylla Migrator's two-part skipSegments run, through the CLI on the cluster: part 1
    never says the snapshot is complete (its last line, status, the savepoint), part 2 on the
    same savepoint copies what is left and validate then exits 0."""
    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i:03d}"}, "v": {"N": str(i)}} for i in range(90)])

    def run(*args: str, skip: list[int] | None = None) -> subprocess.CompletedProcess[str]:
        cfg_file = write_config(
            tmp_path / "c.yaml",
            source_url=moto.url,
            source_table=table_name,
            target_url=dynalite.url,
            target_table=table_name,
            savepoints=tmp_path / "sp",
            stream=False,
            source_extra={"scanSegments": 3},
            top_extra={"skipSegments": skip or []},
        )
        spark_args = [
            *("--engine", "spark", "--master", cluster.url, "--no-progress"),
            *("--conf", "spark.ui.enabled=false", *APP_ARGS),
        ]
        return subprocess.run(
            [
                *(sys.executable, "-m", "alternator_migrator", "--log-format", "text", *args),
                *("--config", str(cfg_file)),
                *(spark_args if args[0] == "migrate" else []),
            ],
            capture_output=True,
            text=True,
            env=cluster.env,
            timeout=240,
        )

    def our_last_line(stderr: str) -> str:
        ours = [ln for ln in stderr.splitlines() if " alternator_migrator." in ln]
        return ours[-1] if ours else ""

    part1 = run("migrate", skip=[1, 2])
    assert part1.returncode == 0, part1.stderr[-3000:]
    assert "Snapshot on Spark: 3 segments (1 to copy)" in part1.stderr
    assert "Snapshot incomplete: 2 of 3 segments never copied" in our_last_line(part1.stderr)
    assert "Done transferring table snapshot" not in part1.stderr
    sp = SavepointStore(load(tmp_path / "c.yaml")).load()
    assert sp is not None and not sp.snapshot_done and sp.segments_done == {0}
    status = run("status", skip=[1, 2])
    assert "Snapshot INCOMPLETE: segments 1, 2 never copied" in status.stdout, status.stdout
    assert run("validate", skip=[1, 2]).returncode == 1

    part2 = run("migrate", skip=[0])
    assert part2.returncode == 0, part2.stderr[-3000:]
    assert "Snapshot on Spark: 3 segments (2 to copy)" in part2.stderr
    assert our_last_line(part2.stderr).endswith("Done transferring table snapshot")
    sp = SavepointStore(load(tmp_path / "c.yaml")).load()
    assert sp is not None and sp.snapshot_done and sp.segments_done == {0, 1, 2}
    assert run("validate").returncode == 0


def test_many_tables_share_the_cluster_in_one_run(
    spark: Any, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    """A multi-table config on Spark: both tables' segments run as tasks of one session."""
    import io

    import yaml

    from alternator_migrator.spark import migrate_spark_tables

    a, b = f"{table_name[:40]}-a", f"{table_name[:40]}-b"
    create_table(src, a, range_key=("sk", "N"))
    create_table(src, b, hash_key=("id", "N"))
    batch_put(src, a, _varied_items(300))
    batch_put(src, b, [{"id": {"N": str(i)}, "v": {"S": "x" * i}} for i in range(250)])
    path = write_config(
        tmp_path / "estate.yaml",
        source_url=moto.url,
        source_table="unused",
        target_url=dynalite.url,
        target_table="unused",
        savepoints=tmp_path / "savepoints",
        stream=False,
        source_extra={"scanSegments": 3},
    )
    data = yaml.safe_load(path.read_text())
    del data["source"]["table"], data["target"]["table"]
    data["tables"] = [a, {"source": b, "target": f"{b}-copy"}]
    data["maxTablesInParallel"] = 2
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = io.StringIO()
    code = migrate_spark_tables(load(path), threading.Event(), spark=spark, out=out)
    assert code == 0, out.getvalue()
    assert "All 2 tables ran" in out.getvalue()
    assert table_diff(src, a, dst, a, ("pk", "sk")) == []
    assert table_diff(src, b, dst, f"{b}-copy", ("id",)) == []


def test_an_export_snapshot_runs_on_spark_reading_each_data_file_once(
    spark: Any, moto: Server, dynalite: Server, dst: Any, table_name: str, tmp_path: Path
) -> None:
    """Data files are Spark tasks: each is read from S3 once, by an executor, no Scan at all;
    a second run reads nothing again (the savepoint says every file is done)."""
    from collections import Counter as Count

    import yaml

    from ..helpers import boto_client, write_aws_export
    from ..proxy import FaultProxy

    s3 = boto_client(moto.url, "s3")
    bucket = f"b{abs(hash(table_name)) % 10**8}"
    s3.create_bucket(Bucket=bucket)
    files = [[{"pk": {"S": f"f{f}-{i}"}, "n": {"N": str(i)}} for i in range(150)] for f in range(3)]
    manifest = write_aws_export(s3, bucket, "exports", "01715685260608-5park000", files)
    seen: Count[str] = Count()

    def count(op: str, path: str, body: bytes) -> bytes:
        seen["data GET" if "/data/" in path else op or "other"] += 1
        return body

    with FaultProxy(moto.url) as proxy:
        proxy.on_answer = count
        proxy.start()
        host, port = proxy.url.rsplit(":", 1)
        path = write_config(
            tmp_path / "export.yaml",
            source_url=proxy.url,
            source_table="unused",
            target_url=dynalite.url,
            target_table=table_name,
            savepoints=tmp_path / "savepoints",
            stream=False,
        )
        data = yaml.safe_load(path.read_text())
        data["source"] = {
            "type": "dynamodb-s3-export",
            "bucket": bucket,
            "manifestKey": manifest,
            "region": "us-east-1",
            "endpoint": {"host": host, "port": int(port)},
            "credentials": {"accessKey": "AKIDS3", "secretKey": "s3-secret"},
            "usePathStyleAccess": True,
            # On demand: a description without a billing mode makes a PROVISIONED target of
            # 5 WCU, and the write budget derived from it (half, shared by the tasks) held
            # this test's 450 items to about one write a second per task: six minutes.
            "tableDescription": {
                "attributeDefinitions": [{"name": "pk", "type": "S"}],
                "keySchema": [{"name": "pk", "type": "HASH"}],
                "billingMode": "PAY_PER_REQUEST",
            },
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        cfg = load(path)
        first = migrate_spark(cfg, spark=spark, show_progress=False)
        assert first.snapshot_complete
        assert seen["data GET"] == 3 and seen["Scan"] == 0, seen
        items = scan_all(dst, table_name)
        assert sorted(i["pk"]["S"] for i in items) == sorted(
            it["pk"]["S"] for f in files for it in f
        )
        saved = SavepointStore(cfg).load()
        assert saved is not None and saved.snapshot_done and saved.segments_done == {0, 1, 2}
        again = migrate_spark(cfg, spark=spark, show_progress=False)
        assert again.snapshot_complete and seen["data GET"] == 3, seen
