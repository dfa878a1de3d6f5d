"""The Spark replay's driver side, pure (issue 19): it ships shard specs, and the advances its
tasks return go through the local engine's ``settle``. A recording stand-in for the
SparkContext runs the partitions in this process; no pyspark, no server."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.changes.records import Decoder
from alternator_migrator.changes.shards import ShardAdvance
from alternator_migrator.changes.streams import Shard, ShardSpec
from alternator_migrator.pipeline.migrate import Job
from alternator_migrator.spark import runner
from alternator_migrator.spark.tasks import ReplayContext, ShardOutcome

from ..changes.test_shards import NOWHERE, MemorySink, Unordered, record
from ..fakes import lean_client
from ..helpers import offline_savepoint


class Ordered(Unordered):
    kind = "dynamodb-streams"
    ordered = True


class Partitions:
    """parallelize(...).mapPartitions(f).collect() as Spark slices it: contiguous runs."""

    def __init__(self, sc: FakeContext, data: list[Any], n: int, f: Any = None) -> None:
        self.sc, self.data, self.n, self.f = sc, data, n, f

    def mapPartitions(self, f: Any) -> Partitions:
        return Partitions(self.sc, self.data, self.n, f)

    def collect(self) -> list[Any]:
        d, n = self.data, self.n
        parts = [d[i * len(d) // n : (i + 1) * len(d) // n] for i in range(n)]
        self.sc.jobs.append(parts)
        return [x for p in parts for x in self.f(iter(p))]


class FakeContext:
    defaultParallelism = 4

    def __init__(self) -> None:
        self.jobs: list[list[list[ShardSpec]]] = []

    def setJobDescription(self, text: str) -> None:
        pass

    def parallelize(self, data: Iterable[Any], n: int) -> Partitions:
        return Partitions(self, list(data), n)


class FakeSession:
    def __init__(self) -> None:
        self.sparkContext = FakeContext()


KEY_A = Decoder()([record("a", 1, 1.0, 1)], None)[0].key


def replayer(tmp_path: Path, changes: Unordered) -> runner.SparkReplayer:
    cfg, store, sp = offline_savepoint(tmp_path, NOWHERE)
    sp.recent_changes = {KEY_A.decode(): 50.0}  # what an earlier run (either engine) saved
    job = Job(
        cfg,
        lean_client(NOWHERE),
        lean_client(NOWHERE, "target"),
        {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]},
        {},
        store,
        sp,
        MemorySink(),
        threading.Event(),
        io.StringIO(),
        False,
        changes=changes,
    )
    return runner.SparkReplayer(runner.SparkEngine(FakeSession()), job, changes.arn)


@pytest.mark.parametrize("changes", [Unordered(), Ordered()], ids=["kinesis", "streams"])
def test_spark_replay_ships_specs_and_settles_what_tasks_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: Unordered
) -> None:
    contexts: list[ReplayContext] = []

    def task(ctx: ReplayContext, specs: Iterable[ShardSpec]) -> Iterator[ShardOutcome]:
        contexts.append(ctx)
        for s in specs:
            times = {KEY_A: 60.0, s.shard.shard_id.encode(): 70.0} if ctx.key_times else {}
            yield ShardOutcome(
                ShardAdvance(
                    s.shard.shard_id, "9", "it", False, True, 2, 1, {"MODIFY": 2}, 70.0, times
                )
            )

    monkeypatch.setattr(runner, "replay_shards", task)
    r = replayer(tmp_path, changes)
    ready = [changes.reader(Shard(s, None, "1", None), "5") for s in ("s1", "s2", "s3")]
    result = r.apply(ready)
    sc = r.engine.sc
    shipped = [spec.shard.shard_id for part in sc.jobs[0] for spec in part]
    assert shipped == ["s1", "s2", "s3"] and {c.max_records for c in contexts} == {5000}
    assert all(spec.position == "5" and spec.kind == changes.kind for p in sc.jobs[0] for spec in p)
    assert (result.records, result.writes, result.counts) == (6, 3, {"MODIFY": 6})
    assert all(
        (x.position, x.iterator, x.drained, x.newest) == ("9", "it", True, 70.0) for x in ready
    )
    if changes.ordered:
        # Shards in parallel tasks (one key's changes are in one shard of a batch).
        assert len(sc.jobs[0]) == 3 and all(c.key_times is None for c in contexts)
        assert r.key_clock is None
    else:
        # Kinesis: one task holds every ready shard, with the driver's clock; the times the
        # task applied are merged into it, and the savepoint keeps them.
        assert len(sc.jobs[0]) == 1 and contexts[0].key_times == {KEY_A.decode(): 50.0}
        assert r.key_clock is not None and r.key_clock.get(KEY_A) == 60.0
        assert r.key_clock.get(b"s3") == 70.0
        r._keep_key_clock()
        assert r.sp.recent_changes[KEY_A.decode()] == 60.0
    r.writer.shutdown()
    r.reads.shutdown()
