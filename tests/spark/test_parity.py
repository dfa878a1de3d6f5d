"""Engine parity (issue 19's acceptance matrix): {Scan, export} snapshot x {DynamoDB Streams,
Kinesis, no change source} x {local engine, Spark on the real standalone cluster}.

Each cell runs both engines at once, each on its own source table (``-L`` for the local
engine, ``-S`` for Spark; moto gives a table one stream, so two runs cannot share one) holding
the same items and receiving the same live changes in the same order. Both must then give:

- the same target, equal to its source (items compared by value, as ``table_diff``);
- the same savepoint, once what is specific to a run is taken out: times (``createdAt``,
  ``updatedAt``, ``lastRecordTime``, the values of ``recentChanges``), names and ARNs (tables,
  stream, export, the fingerprint of the config that names them), shard ids (another table's
  stream has other ones). A shard's position is compared as its place in its shard: unread,
  the shard's last record, or its ordinal among the shard's records (both tables' streams
  hold the same records in the same order). Everything else is compared as written:
  format version, snapshot done, snapshot kind, segment counts, segments done, positions of
  unfinished segments, shard parents and finished flags, the keys of ``recentChanges``;
- ``validate`` exit 0.

And a run killed with ``kill -9`` mid-snapshot (the CLI in a child process) resumes on the
other engine, from the same savepoint file, to the same end.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from alternator_migrator.cli import main as cli_main
from alternator_migrator.config import Config, load
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import MigrationResult, migrate

from ..helpers import (
    aws_export_answers,
    batch_put,
    boto_client,
    create_table,
    eventually,
    every_type_item,
    normalize,
    read_savepoint,
    scan_all,
    table_diff,
    write_config,
)
from ..kinesis_fakes import KinesisBridge
from ..proxy import FaultProxy
from .conftest import APP_ARGS, Cluster

pytest.importorskip("pyspark")
if __import__("shutil").which("java") is None:
    pytest.skip("the Spark engine needs Java", allow_module_level=True)

from alternator_migrator.spark import migrate_spark

pytestmark = pytest.mark.spark

ITEMS = 200  # small: the matrix is about engines agreeing, not about volume
CHANGES = 60  # live changes per table
ENGINES = ("local", "spark")


# --------------------------------------------------------------------------- sources


class Sources:
    """The two engines' source tables (same items, same changes) behind one proxy, which makes
    moto's exports look like AWS's and stands in for DynamoDB's Kinesis destination."""

    def __init__(self, moto: Server, src: Any, base: str, changes: str) -> None:
        self.moto, self.src = moto, src
        self.tables = {e: f"{base[:44]}-{e[0].upper()}" for e in ENGINES}
        self.s3 = boto_client(moto.url, "s3")
        self.bucket = f"parity-{abs(hash(base)) % 10**10}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.bridges: dict[str, KinesisBridge] = {}
        for e, table in self.tables.items():
            create_table(self.src, table)
            batch_put(self.src, table, [every_type_item(i) for i in range(ITEMS)])
            if changes == "kinesis":
                name = f"{table}-changes"
                boto_client(moto.url, "kinesis").create_stream(StreamName=name, ShardCount=2)
                self.bridges[e] = KinesisBridge(moto.url, table, name)
        by_table = {b.table: b for b in self.bridges.values()}

        def intercept(op: str, body: bytes) -> dict[str, Any] | None:
            if "KinesisStreamingDestination" not in op:
                return None
            return by_table[orjson.loads(body)["TableName"]].intercept(op, body)

        self.proxy = FaultProxy(moto.url)
        self.proxy.intercept = intercept
        self.proxy.on_answer = aws_export_answers(self.s3)
        self.proxy.start()
        self.rng = random.Random(11)
        self.present = {f"item#{i}" for i in range(ITEMS)}
        self.made = 0

    def close(self) -> None:
        for b in self.bridges.values():
            b.stop()
        self.proxy.stop()
        for b in self.bridges.values():
            assert not b.errors, b.errors

    def change(self, n: int) -> None:
        """``n`` changes, each applied to every table in turn. Each one changes the item (a new
        ``v``; deletes only of present keys), so each is exactly one stream record on moto."""
        for _ in range(n):
            self.made += 1
            key = f"item#{self.rng.randrange(ITEMS + 20)}"
            kind = self.rng.random()
            for table in self.tables.values():
                if kind < 0.2 and key in self.present:
                    self.src.delete_item(TableName=table, Key={"pk": {"S": key}})
                elif kind < 0.5:
                    self.src.update_item(
                        TableName=table,
                        Key={"pk": {"S": key}},
                        UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": str(self.made)}},
                    )
                else:
                    item = {**every_type_item(self.made), "pk": {"S": key}}
                    self.src.put_item(TableName=table, Item={**item, "v": {"N": str(self.made)}})
            if kind < 0.2 and key in self.present:
                self.present.discard(key)
            else:
                self.present.add(key)


def _config(
    tmp: Path, sources: Sources, dynalite: Server, engine: str, snapshot: str, changes: str
) -> Path:
    table = sources.tables[engine]
    source_extra: dict[str, Any] = {"scanSegments": 4, "maxMapTasks": 2}
    if snapshot == "export":
        source_extra = {
            "snapshotFrom": "export",
            "exportBucket": sources.bucket,
            "exportPrefix": f"mig-{engine}",
        }
    target_extra: dict[str, Any] = {}
    if changes == "kinesis":
        arn = sources.bridges[engine].arn
        target_extra = {"streamChanges": {"type": "kinesis", "streamArn": arn, "appName": "t"}}
    return write_config(
        tmp / f"{engine}.yaml",
        source_url=sources.proxy.url,
        source_table=table,
        target_url=dynalite.url,
        target_table=table,
        savepoints=tmp / f"sp-{engine}",
        stream=changes != "none",
        source_extra=source_extra,
        target_extra=target_extra,
        top_extra={"savepoints": {"path": str(tmp / f"sp-{engine}"), "intervalSeconds": 0.2}},
    )


# --------------------------------------------------------------------------- runs


class Run:
    """One engine's ``migrate`` in a thread; a failure is kept and raised by ``check``."""

    def __init__(self, engine: str, cfg: Config, spark: Any, **kw: Any) -> None:
        self.engine, self.cfg = engine, cfg
        self.stop = threading.Event()
        self.result: MigrationResult | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        go: Callable[[], MigrationResult]
        if engine == "local":
            go = lambda: migrate(cfg, self.stop, show_progress=False, **kw)  # noqa: E731
        else:
            go = lambda: migrate_spark(cfg, self.stop, spark=spark, show_progress=False, **kw)  # noqa: E731

        def body() -> None:
            t0 = time.monotonic()
            try:
                self.result = go()
            except BaseException as e:  # raised in the test by check()
                self.error = e
            self.seconds = time.monotonic() - t0

        self.thread = threading.Thread(target=body, name=f"migrate-{engine}", daemon=True)
        self.thread.start()

    def check(self) -> bool:
        if self.error is not None:
            # Not an AssertionError: ``eventually`` would keep waiting on one.
            raise RuntimeError(f"the {self.engine} run failed: {self.error!r}") from self.error
        return True

    def finish(self) -> MigrationResult:
        self.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), f"the {self.engine} run did not stop"
        self.check()
        assert self.result is not None
        return self.result


def _saved(cfg_path: Path) -> dict[str, Any]:
    return read_savepoint(cfg_path.parent / f"sp-{cfg_path.stem}")  # as _config names it


def _records(
    moto: Server, sp: dict[str, Any], bridge: KinesisBridge | None
) -> dict[str, list[str]]:
    """Every shard's sequence numbers, in order, read straight from moto."""
    out: dict[str, list[str]] = {}
    if bridge is None and not sp.get("streamArn"):
        return out  # no change source
    if bridge is not None:
        kinesis = boto_client(moto.url, "kinesis")
        for shard in kinesis.list_shards(StreamName=bridge.name)["Shards"]:
            it = kinesis.get_shard_iterator(
                StreamName=bridge.name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            seqs: list[str] = []
            while it:
                r = kinesis.get_records(ShardIterator=it, Limit=1000)
                seqs += [x["SequenceNumber"] for x in r["Records"]]
                it = r.get("NextShardIterator") if r["Records"] else None
            out[shard["ShardId"]] = seqs
        return out
    streams = boto_client(moto.url, "dynamodbstreams")
    for shard in streams.describe_stream(StreamArn=sp["streamArn"])["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=sp["streamArn"], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        seqs = []
        while it:
            r = streams.get_records(ShardIterator=it, Limit=1000)
            seqs += [x["dynamodb"]["SequenceNumber"] for x in r["Records"]]
            it = r.get("NextShardIterator") if r["Records"] else None
        out[shard["ShardId"]] = seqs
    return out


def comparable(sp: dict[str, Any], records: dict[str, list[str]]) -> dict[str, Any]:
    """A savepoint without what is specific to its run (see the module's docstring)."""

    def place(shard: str, seq: str | None) -> str | int | None:
        seqs = records.get(shard, [])
        if seq is None:
            return None
        if seqs and seq == seqs[-1]:
            return "end"
        return seqs.index(seq) + 1 if seq in seqs else f"not in the shard: {seq}"

    origin = sp.get("snapshotSource")
    return {
        "fields": sorted(sp),
        "version": sp["version"],
        "snapshotDone": sp["snapshotDone"],
        "snapshotKind": origin.split(" ")[0] if origin else "scan",
        "totalSegments": sp["totalSegments"],
        "segmentsDone": sp["segmentsDone"],
        "segmentKeys": sp["segmentKeys"],
        "streamEnabling": sp["streamEnabling"],
        "hasStream": sp["streamArn"] is not None,
        "shards": sorted(
            (
                repr(place(sid, p["sequenceNumber"])),
                p["finished"],
                p["parent"] is not None,
                p.get("adjacentParent") is not None,
            )
            for sid, p in sp["shards"].items()
        ),
        "recentChanges": sorted(sp.get("recentChanges", {})),
    }


def _target(dst: Any, table: str) -> dict[str, Any]:
    return {i["pk"]["S"]: normalize(i) for i in scan_all(dst, table)}


def _validate(cfg_path: Path) -> int:
    return cli_main(["--log-format", "text", "validate", "--config", str(cfg_path)])


# --------------------------------------------------------------------------- the matrix


def _cell(snapshot: str, changes: str, *marks: Any) -> Any:
    return pytest.param(snapshot, changes, marks=marks, id=f"{snapshot}-{changes}")


@pytest.mark.parametrize(
    ("snapshot", "changes"),
    [
        # In `make test`: each snapshot kind and each change source on Spark at least once.
        _cell("scan", "streams"),
        _cell("export", "none"),
        _cell("scan", "kinesis"),
        # `make test-all`.
        _cell("scan", "none", pytest.mark.slow),
        _cell("export", "streams", pytest.mark.slow),
        _cell("export", "kinesis", pytest.mark.slow),
    ],
)
def test_both_engines_give_the_same_target_and_savepoint(
    snapshot: str,
    changes: str,
    spark: Any,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    sources = Sources(moto, src, table_name, changes)
    request.addfinalizer(sources.close)  # after validate, which reads through its proxy
    paths = {e: _config(tmp_path, sources, dynalite, e, snapshot, changes) for e in ENGINES}
    runs: dict[str, Run] = {}
    try:
        for e in ENGINES:
            runs[e] = Run(e, load(paths[e]), spark, stream_poll_seconds=0.1)

        def ready(e: str) -> bool:
            runs[e].check()
            sp = _saved(paths[e])
            if changes == "kinesis":
                listening = sources.bridges[e].status == "ACTIVE"
            else:
                listening = changes == "none" or bool(sp.get("streamArn"))
            # moto builds an export by walking the table unlocked: change it only after. Without
            # a change source the run ends with its snapshot.
            during = snapshot == "scan" and changes != "none"
            return listening and (during or bool(sp.get("snapshotDone")))

        for e in ENGINES:
            eventually(lambda e=e: ready(e), 120, 0.05, message=f"{e} run listening")
        if changes != "none":
            # On a Scan, while Spark's snapshot is still running (it takes seconds).
            sources.change(CHANGES)

            def converged(e: str) -> bool:
                runs[e].check()
                if e in sources.bridges and not sources.bridges[e].idle():
                    return False
                t = sources.tables[e]
                return not table_diff(src, t, dst, t, ("pk",))

            for e in ENGINES:
                eventually(lambda e=e: converged(e), 120, 0.2, message=f"{e} target converged")
        results = {e: runs[e].finish() for e in ENGINES}
    finally:
        for r in runs.values():
            r.stop.set()
        for r in runs.values():
            r.thread.join(60)

    for e, result in results.items():
        assert result.snapshot_complete, e
        if changes != "none":
            assert result.replay is not None and result.replay.records >= CHANGES, (e, result)
    # Identical targets, each equal to its source.
    targets = {e: _target(dst, sources.tables[e]) for e in ENGINES}
    for e, t in sources.tables.items():
        assert table_diff(src, t, dst, t, ("pk",)) == [], e
    assert targets["local"] == targets["spark"]
    assert len(targets["local"]) == len(sources.present)
    # The same savepoint.
    saved = {e: _saved(paths[e]) for e in ENGINES}
    same = {
        e: comparable(saved[e], _records(moto, saved[e], sources.bridges.get(e))) for e in ENGINES
    }
    assert same["local"] == same["spark"]
    assert same["local"]["snapshotDone"] and same["local"]["snapshotKind"] == snapshot
    if changes != "none":
        assert same["local"]["shards"] and all(s[0] == "'end'" for s in same["local"]["shards"])
    # validate agrees with both.
    for e in ENGINES:
        assert _validate(paths[e]) == 0, (e, capsys.readouterr())
    print(
        f"parity {snapshot}-{changes}: "
        + ", ".join(f"{e} {r.seconds:.1f}s" for e, r in runs.items())
    )


# --------------------------------------------------------------------------- kill -9, other engine


def _app_count(cluster: Cluster) -> int:
    with urllib.request.urlopen(f"{cluster.ui}/json", timeout=5) as r:
        return len(json.load(r).get("activeapps", []))


@contextlib.contextmanager
def _cli_migrate(cfg_path: Path, engine: str, cluster: Cluster, log: Path) -> Iterator[Any]:
    """``alternator-migrator migrate`` in a child process (its own process group: a Spark
    driver's JVM is killed with it)."""
    spark_args = [
        *("--engine", "spark", "--master", cluster.url),
        *("--conf", "spark.ui.enabled=false", *APP_ARGS),
    ]
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "alternator_migrator", "--log-format", "text"),
                *("migrate", "--config", str(cfg_path), "--no-progress"),
                *(spark_args if engine == "spark" else []),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**cluster.env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


@pytest.mark.parametrize(
    ("first", "then"),
    [("local", "spark"), pytest.param("spark", "local", marks=pytest.mark.slow)],
    ids=["local-then-spark", "spark-then-local"],
)
def test_a_run_killed_mid_snapshot_resumes_on_the_other_engine(
    first: str,
    then: str,
    cluster: Cluster,
    spark: Any,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, [every_type_item(i) for i in range(600)])
    cfg_path = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
        source_extra={"scanSegments": 6, "maxMapTasks": 2},
        # ~100 items/s: the snapshot takes seconds, segment after segment.
        target_extra={"writeThroughput": 200},
        top_extra={"savepoints": {"path": str(tmp_path / "sp"), "intervalSeconds": 0.2}},
    )
    log = tmp_path / "first.log"
    with _cli_migrate(cfg_path, first, cluster, log) as proc:

        def mid_snapshot() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            sp = read_savepoint(tmp_path / "sp")
            assert not sp.get("snapshotDone"), "the snapshot ended before the kill"
            return bool(sp.get("segmentsDone"))

        eventually(mid_snapshot, 180, 0.05, message=f"{first} run mid-snapshot")
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    killed = read_savepoint(tmp_path / "sp")
    assert killed["streamArn"] and 0 < len(killed["segmentsDone"]) < 6
    if first == "spark":
        # A driver's death ends its executors (the master sees it go); until then one may
        # still be writing its segment's old images.
        eventually(lambda: _app_count(cluster) <= 1, 60, 0.5, message="killed app gone")

    # Changes while nothing runs: the resumed run copies the rest and replays them.
    rng = random.Random(3)
    for i in range(30):
        key = {"pk": {"S": f"item#{rng.randrange(600)}"}}
        src.update_item(
            TableName=table_name,
            Key=key,
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": str(i)}},
        )
    cfg = load(cfg_path)
    kw: dict[str, Any] = {"stop_when_caught_up": 1.0, "show_progress": False}
    result = (
        migrate_spark(cfg, spark=spark, stream_poll_seconds=0.1, **kw)
        if then == "spark"
        else migrate(cfg, stream_poll_seconds=0.1, **kw)
    )
    assert result.snapshot_complete
    assert result.replay is not None and result.replay.records == 30
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
    sp = read_savepoint(tmp_path / "sp")
    assert sp["snapshotDone"] and sp["segmentsDone"] == list(range(6)) and not sp["segmentKeys"]
    assert sp["streamArn"] == killed["streamArn"]  # the same stream, not a new one
    same = comparable(sp, _records(moto, sp, None))
    assert same["shards"] and all(s[0] == "'end'" for s in same["shards"])
    assert _validate(cfg_path) == 0
