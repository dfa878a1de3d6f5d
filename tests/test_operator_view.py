"""What an operator reads: the op-count table, `status` before and after a run, resumed progress."""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.pipeline.replay import OpTable, format_op_table
from alternator_migrator.progress import SnapshotProgress
from alternator_migrator.state.savepoint import SavepointStore
from alternator_migrator.status import print_status, status

from .helpers import create_table, local_config


def test_op_table_has_the_scylla_migrator_shape_with_a_header() -> None:
    assert format_op_table(Counter({"REMOVE": 2, "MODIFY": 5})) == "\n".join(
        [
            "Changes to be applied:",
            "+---------------+-----+",
            "|_dynamo_op_type|count|",
            "+---------------+-----+",
            "| MODIFY        |    5|",
            "| DELETE        |    2|",
            "+---------------+-----+",
        ]
    )
    wide = format_op_table(Counter({"INSERT": 1234567}))
    assert "| INSERT        |1234567|" in wide and "|_dynamo_op_type|  count|" in wide
    assert format_op_table(Counter()) == ""
    # A table of a multi-table run names its table; the rest of the shape is the same.
    named = format_op_table(Counter({"MODIFY": 5}), "orders").splitlines()
    assert named[0] == "Changes to be applied to orders:"
    assert named[1:] == format_op_table(Counter({"MODIFY": 5})).splitlines()[1:]


def test_op_table_prints_at_most_every_few_seconds_summing_batches_and_always_at_stop() -> None:
    now = [100.0]
    out = io.StringIO()
    table = OpTable(out, every=5.0, clock=lambda: now[0])

    def tables() -> list[str]:
        return out.getvalue().split("Changes to be applied:\n")[1:]

    table.add(Counter({"INSERT": 1}))  # the first batch is shown at once
    for _ in range(100):  # a hundred batches within the next seconds: summed, not printed
        now[0] += 0.04
        table.add(Counter({"MODIFY": 1, "REMOVE": 1}))
    assert len(tables()) == 1 and "| INSERT        |    1|" in tables()[0]
    now[0] += 1.1  # 5.1 s after the first table: the next batch prints the whole sum
    table.add(Counter({"MODIFY": 1}))
    assert len(tables()) == 2
    assert "| MODIFY        |  101|" in tables()[1] and "| DELETE        |  100|" in tables()[1]
    table.add(Counter({"REMOVE": 3}))
    assert len(tables()) == 2
    now[0] += 5.0  # the stream went quiet: the next (empty) round prints what was held back
    table.add(Counter())
    assert len(tables()) == 3 and "| DELETE        |    3|" in tables()[2]
    table.add(Counter())  # nothing pending: nothing printed
    table.add(Counter({"INSERT": 2}))
    assert len(tables()) == 3
    table.flush()  # at stop: what is left is shown, however recent the last table
    assert len(tables()) == 4 and "| INSERT        |    2|" in tables()[3]
    table.flush()  # nothing left: nothing printed
    assert len(tables()) == 4


def test_status_before_any_run_says_no_savepoint_yet(
    moto: Server, dynalite: Server, tmp_path: Path
) -> None:
    cfg = local_config(tmp_path, moto, dynalite, "never-run")
    out = io.StringIO()
    print_status(status(cfg), out)
    assert "no savepoint yet" in out.getvalue()
    assert "unknown" not in out.getvalue()


def test_status_of_a_drained_stream_is_caught_up_with_lag_zero(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    cfg = local_config(tmp_path, moto, dynalite, table_name)
    migrate(cfg, stop_when_caught_up=0.5, show_progress=False)  # enables the stream
    src.put_item(TableName=table_name, Item={"pk": {"S": "a"}})
    migrate(cfg, stop_when_caught_up=0.5, show_progress=False)  # applies it, drains the shard
    # The source then stays idle for ten minutes: its last record grows old, nothing waits.
    store = SavepointStore(cfg)
    sp = store.load()
    assert sp is not None and sp.shards
    for pos in sp.shards.values():
        assert pos.last_record_time is not None
        pos.last_record_time = time.time() - 600
    store.save(sp)

    st = status(cfg)
    assert st.caught_up is True
    assert [s.lag_seconds for s in st.shards] == [0.0] * len(st.shards)
    out = io.StringIO()
    print_status(st, out)
    text = out.getvalue()
    assert "caught up  lag     0.0s" in text and "Caught up: yes (lag 0.0s)" in text

    # A record arrives: the shard is behind, and its lag is the age of what was applied.
    src.put_item(TableName=table_name, Item={"pk": {"S": "b"}})
    behind = status(cfg)
    assert behind.caught_up is False
    assert all(s.lag_seconds is not None and s.lag_seconds > 500 for s in behind.shards)


def test_progress_after_a_resume_counts_the_segments_done_before() -> None:
    # 8 segments of ~125 items; a previous run finished 4 of them.
    out = io.StringIO()
    p = SnapshotProgress(8, segments_done=4, estimated_items=1000, stream=out)
    assert p.line().startswith("Snapshot:  50.0% | 500 items (0 this run)")
    p.add_items(250)
    p.segment_done()
    p.segment_done()
    assert "75.0% | 750 items (250 this run)" in p.line() and "segments 6/8" in p.line()
    p.add_items(240)  # ItemCount is an estimate: a little off
    p.segment_done()
    p.segment_done()
    assert "100.0% | 990 items (490 this run)" in p.line() and "segments 8/8" in p.line()
