"""The seam between change sources and engines (issue 19): shard specs an executor turns into
readers, the one shard-advance result, and the one place the replay applies it. Pure: no
server is reached (clients point at a closed port and are never called)."""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from alternator_migrator.changes.alternator import AlternatorStreamSource
from alternator_migrator.changes.kinesis import KinesisShardReader, KinesisSource
from alternator_migrator.changes.records import Decoder, KeyClock
from alternator_migrator.changes.shards import ShardAdvance, advance_shard, open_reader
from alternator_migrator.changes.streams import (
    DynamoStreamSource,
    Page,
    Shard,
    ShardReader,
)
from alternator_migrator.pipeline.replay import Replayer
from alternator_migrator.target.sink import Element, Sink

from ..fakes import lean_client
from ..helpers import offline_savepoint

NOWHERE = "http://127.0.0.1:9"  # the discard port: never called by these tests
SHARD = Shard("shard-1", None, "100", None)


def record(pk: str, value: int | None, t: float, seq: int) -> dict[str, Any]:
    keys = {"pk": {"S": pk}}
    d: dict[str, Any] = {"Keys": keys, "SequenceNumber": str(seq)}
    d["ApproximateCreationDateTime"] = t
    if value is not None:
        d["NewImage"] = {**keys, "v": {"N": str(value)}}
    return {"eventName": "REMOVE" if value is None else "MODIFY", "dynamodb": d}


class MemorySink(Sink):
    """Remembers each write (pk -> value, None: a delete), in order; sends nothing."""

    def __init__(self) -> None:
        super().__init__(lean_client(NOWHERE, "target"), "t", ["pk"])
        self.batches: list[dict[str, str | None]] = []

    def write(self, requests: Sequence[Element]) -> int:
        batch: dict[str, str | None] = {}
        for r in requests:
            req = orjson.loads(r) if isinstance(r, bytes) else r
            if "PutRequest" in req:
                item = req["PutRequest"]["Item"]
                batch[item["pk"]["S"]] = item["v"]["N"]
            else:
                batch[req["DeleteRequest"]["Key"]["pk"]["S"]] = None
        self.batches.append(batch)
        return len(requests)

    def write_distinct(self, requests: Sequence[Element], *_: Any) -> int:
        return self.write(requests)  # one batch per page, as remembered


class ScriptedReader(ShardReader):
    """A shard whose GetRecords answers are scripted pages; the last one closes it."""

    def __init__(self, pages: list[list[dict[str, Any]]], limit: int) -> None:
        super().__init__(lean_client(NOWHERE), "arn:stream", SHARD, "99")
        self.script = list(pages)
        self.limit = limit
        self.min_interval = 0.0
        self.iterator = "it-0"

    def fetch(self, iterator: str | None) -> Page:
        page = self.script.pop(0)
        return page, (f"it-{len(self.script)}" if self.script else None)


def test_a_shard_spec_is_picklable_and_opens_the_reader_it_describes() -> None:
    source, kinesis = lean_client(NOWHERE), lean_client(NOWHERE, "kinesis")
    readers = [
        DynamoStreamSource(source, "arn:ddb").reader(SHARD, "120"),
        AlternatorStreamSource(source, "arn:alt").reader(SHARD, None),
        KinesisSource(kinesis, "arn:kin", "orders").reader(SHARD, "7"),
    ]
    readers[0].iterator = "next-page"
    for r in readers:
        spec = r.spec()
        assert pickle.loads(pickle.dumps(spec)) == spec  # shipped to executors as is
        opened = open_reader(spec, source, kinesis)
        assert type(opened) is type(r) and opened.spec() == spec
    kinds = [r.spec().kind for r in readers]
    assert kinds == ["dynamodb-streams", "alternator-streams", "kinesis"]
    assert readers[2].spec().table == "orders"
    assert isinstance(open_reader(readers[2].spec(), source, kinesis), KinesisShardReader)
    with pytest.raises(ValueError, match="Kinesis client"):
        open_reader(readers[2].spec(), source)


def test_a_shard_advance_says_where_the_reader_stands_after_its_changes() -> None:
    reader = ScriptedReader([[]], limit=10)
    changes = Decoder()(
        [record("a", 1, 20.0, 101), record("b", None, 30.0, 102), record("a", 2, 10.0, 103)],
        "shard-1",
    )
    reader.read()  # the only page: the shard closes
    a = ShardAdvance.after(reader, changes, 2, {changes[0].key: 20.0, b"other": 5.0})
    assert (a.shard_id, a.position, a.iterator, a.closed) == ("shard-1", "103", None, True)
    assert a.records == 3 and a.writes == 2 and a.counts == {"MODIFY": 2, "REMOVE": 1}
    assert a.newest == 30.0  # the newest change, not the last read
    assert a.key_times == {changes[0].key: 20.0}  # only this shard's keys
    assert pickle.loads(pickle.dumps(a)) == a
    idle = ShardAdvance.after(ScriptedReader([[]], 10), [])
    assert idle.position == "99" and idle.records == 0 and idle.newest is None


def test_advance_shard_writes_page_by_page_in_order_and_newest_wins_across_pages() -> None:
    pages = [
        # a's two changes swapped, b's first change
        [record("a", 2, 20.0, 101), record("a", 1, 10.0, 102), record("b", 1, 11.0, 103)],
        # a late duplicate of a's older change, b's next change, c (older than the clock)
        [record("a", 1, 10.0, 104), record("b", 2, 21.0, 105), record("c", 9, 1.0, 106)],
        [record("c", None, 40.0, 107)],
    ]
    clock = KeyClock()
    c_key = Decoder()([record("c", 0, 0.0, 1)], None)[0].key
    clock.note(c_key, 30.0)  # what the driver's clock knew of c
    sink = MemorySink()
    adv = advance_shard(ScriptedReader(pages, limit=3), sink, Decoder(), 100, clock=clock)
    assert sink.batches == [{"a": "2", "b": "1"}, {"b": "2"}, {"c": None}]
    assert adv.position == "107" and adv.closed and adv.records == 7 and adv.writes == 4
    assert adv.newest == 40.0 and adv.counts == {"MODIFY": 6, "REMOVE": 1}
    assert sorted(adv.key_times.values()) == [20.0, 21.0, 40.0]
    # Ordered source: the last change per key of each page, nothing judged by time.
    sink = MemorySink()
    adv = advance_shard(ScriptedReader(pages, limit=3), sink, Decoder(), 100)
    assert sink.batches == [{"a": "1", "b": "1"}, {"a": "1", "b": "2", "c": "9"}, {"c": None}]
    assert adv.key_times == {}
    # A batch ends at max_records (whole pages), or at a page short of the limit.
    adv = advance_shard(ScriptedReader(pages, limit=3), MemorySink(), Decoder(), 3)
    assert adv.position == "103" and adv.iterator == "it-2" and not adv.closed
    adv = advance_shard(ScriptedReader(pages, limit=4), MemorySink(), Decoder(), 100)
    assert adv.position == "103" and not adv.closed


class Unordered:
    """A change source that may duplicate and reorder (as Kinesis); never listed here."""

    kind = "kinesis"
    arn = "arn:kin"
    ordered = False
    retention = "a while"

    def list_shards(self) -> list[Shard]:
        raise AssertionError("not listed in this test")

    def reader(self, shard: Shard, position: str | None) -> ShardReader:
        r = ShardReader(lean_client(NOWHERE), self.arn, shard, position)
        r.kind = self.kind
        return r


def test_settle_applies_advances_from_any_engine_in_one_place(tmp_path: Path) -> None:
    _, store, sp = offline_savepoint(tmp_path, NOWHERE)
    sp.recent_changes = {'{"pk":{"S":"a"}}': 50.0}  # saved by an earlier run
    r = Replayer(
        lean_client(NOWHERE),
        MemorySink(),
        "arn:kin",
        store,
        sp,
        out=io.StringIO(),
        changes=Unordered(),
        clock=lambda: 100.0,
    )
    assert r.key_clock is not None and r.key_clock.get(b'{"pk":{"S":"a"}}') == 50.0
    one, two = (
        ShardReader(lean_client(NOWHERE), "arn:kin", Shard(s, None, "1", None), "5")
        for s in ("s1", "s2")
    )
    two.newest = 95.0
    key_a, key_b = b'{"pk":{"S":"a"}}', b'{"pk":{"S":"b"}}'
    advances = [  # as executors return them (two shards may hold one key)
        ShardAdvance("s1", "9", "it", False, True, 4, 3, {"MODIFY": 4}, 90.0, {key_a: 60.0}),
        ShardAdvance(
            "s2", "7", None, True, False, 2, 1, {"REMOVE": 2}, 80.0, {key_a: 55.0, key_b: 80.0}
        ),
    ]
    result = r.settle([one, two], advances)
    assert (one.position, one.iterator, one.drained, one.closed) == ("9", "it", True, False)
    assert (two.position, two.iterator, two.closed) == ("7", None, True)
    assert one.newest == 90.0 and two.newest == 95.0  # never moves back
    assert (result.records, result.writes) == (6, 4)
    assert result.counts == {"MODIFY": 4, "REMOVE": 2}
    assert result.lag_seconds == 10.0
    assert r.key_clock.get(key_a) == 60.0 and r.key_clock.get(key_b) == 80.0
    # The clock reaches the savepoint as the local engine keeps it (``recentChanges``).
    r._keep_key_clock()
    assert sp.recent_changes == {key_b.decode(): 80.0, key_a.decode(): 60.0}
    r.writer.shutdown()
    r.reads.shutdown()
