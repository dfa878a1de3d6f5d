"""Kinesis Data Streams as the change source (issue 15): newest-wins per key, lineage after
resharding on a scripted endpoint, saved positions, the endpoint and the destination."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from alternator_migrator.aws.client import (
    KINESIS_API,
    CredentialSource,
    DynamoClient,
    RetryPolicy,
    kinesis_url,
)
from alternator_migrator.changes.kinesis import (
    KinesisSource,
    decode,
    ensure_destination,
    to_seconds,
)
from alternator_migrator.changes.records import Change, Decoder
from alternator_migrator.config import Credentials, Endpoint, SourceConfig
from alternator_migrator.errors import StreamRecordError, StreamTrimmedError
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.replay import KeyClock, Replayer, newest_per_key
from alternator_migrator.state.savepoint import Savepoint
from alternator_migrator.target.sink import key_id

from ..fakes import RecordingSink, lean_client, replay_setup, target_values
from ..kinesis_fakes import FakeKinesis, item_change

TABLE_KEYS = {"pk": {"S": "a"}}


def rec(pk: str, value: int | None, t: float) -> dict[str, Any]:
    """A decoded change record (as the replay sees it), ``t`` in seconds."""
    keys = {"pk": {"S": pk}}
    d: dict[str, Any] = {"Keys": keys, "SequenceNumber": "1", "ApproximateCreationDateTime": t}
    if value is not None:
        d["NewImage"] = {**keys, "v": {"N": str(value)}}
    return {"eventName": "REMOVE" if value is None else "MODIFY", "dynamodb": d}


def values(records: list[Change]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for c in records:
        img = orjson.loads(c.put)["PutRequest"]["Item"] if c.put is not None else None
        out[orjson.loads(c.key)["pk"]["S"]] = img["v"]["N"] if img else None
    return out


def changes(records: list[dict[str, Any]]) -> list[Change]:
    """As the replay holds them once read."""
    return Decoder()(records, "shard-1")


# ---------------------------------------------------------------------- newest-wins


def test_newest_per_key_survives_duplicates_and_reorderings() -> None:
    clock = KeyClock()
    # One batch: a's two changes swapped, b duplicated (an old copy after the newer change).
    batch = [rec("a", 2, 20.0), rec("a", 1, 10.0), rec("b", 1, 11.0), rec("b", 2, 21.0)]
    batch += [rec("b", 1, 11.0), rec("c", None, 30.0), rec("c", 5, 29.0)]
    keep, times = newest_per_key(changes(batch), clock)
    assert values(keep) == {"a": "2", "b": "2", "c": None}
    for k, t in times.items():
        clock.note(k, t)
    # A later batch brings a stale duplicate of each (from another shard, or resent): dropped.
    later = [rec("a", 1, 10.0), rec("b", 1, 11.0), rec("c", 5, 29.0), rec("d", 1, 5.0)]
    keep, _ = newest_per_key(changes(later), clock)
    assert values(keep) == {"d": "1"}
    # Equal times: the record read later wins (a duplicate is the same change).
    keep, _ = newest_per_key(changes([rec("a", 7, 20.0), rec("a", 8, 20.0)]), clock)
    assert values(keep) == {"a": "8"}


def test_key_clock_is_bounded_and_keeps_the_newest() -> None:
    clock = KeyClock(capacity=3)
    for i, pk in enumerate("abcd"):
        clock.note(key_id({"pk": {"S": pk}}), float(i))
    assert len(clock) == 3 and clock.get(key_id({"pk": {"S": "a"}})) is None
    b = key_id({"pk": {"S": "b"}})
    clock.note(b, 0.5)  # older than what it has: the newest stays
    assert clock.get(b) == 1.0


def test_kinesis_record_decoding() -> None:
    import base64

    import orjson

    change = item_change("t", "a", 3, 1_700_000_000_123_456)
    raw = {"SequenceNumber": "49" + "0" * 50, "Data": base64.b64encode(orjson.dumps(change))}
    r = decode(raw, "t", "shardId-0")
    assert r is not None
    assert r["dynamodb"]["SequenceNumber"] == raw["SequenceNumber"]
    assert r["dynamodb"]["ApproximateCreationDateTime"] == pytest.approx(1_700_000_000.123456)
    assert decode(raw, "another-table", "shardId-0") is None  # one stream, several tables
    assert to_seconds(1_700_000_000_123) == pytest.approx(1_700_000_000.123)  # milliseconds
    assert to_seconds(1_700_000_000) == 1_700_000_000  # seconds (DynamoDB Streams)
    with pytest.raises(StreamRecordError, match="not a DynamoDB change record"):
        decode({"SequenceNumber": "1", "Data": base64.b64encode(b"plain text")}, "t", "s")


# ---------------------------------------------------------------------- endpoint


def test_kinesis_endpoint_follows_the_source() -> None:
    creds = Credentials("AKID", "secret")
    aws = SourceConfig(table="t", region="eu-west-1", credentials=creds)
    assert kinesis_url(aws, {}) == "https://kinesis.eu-west-1.amazonaws.com"
    cn = SourceConfig(table="t", region="cn-north-1", credentials=creds)
    assert kinesis_url(cn, {}) == "https://kinesis.cn-north-1.amazonaws.com.cn"
    local = SourceConfig(table="t", endpoint=Endpoint("http://127.0.0.1", 5000), credentials=creds)
    assert kinesis_url(local, {}) == "http://127.0.0.1:5000"  # one port serves every service
    env = {"AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567"}
    assert kinesis_url(local, env) == "http://127.0.0.1:4567"
    assert kinesis_url(aws, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"


# ---------------------------------------------------------------------- scripted endpoint


@pytest.fixture()
def fk() -> Iterator[FakeKinesis]:
    f = FakeKinesis().start()
    yield f
    f.stop()


def kclient(url: str) -> DynamoClient:
    return DynamoClient(
        url,
        "us-east-1",
        CredentialSource(Credentials("AKIDTEST", "test-secret"), None, "us-east-1"),
        retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.05),
        api=KINESIS_API,
    )


def kinesis_replay(
    fk: FakeKinesis, store: Any, sp: Savepoint, sink: Any, table: str
) -> tuple[Replayer, KinesisSource]:
    client = kclient(fk.url)
    changes = KinesisSource(client, fk.arn, table)
    r = Replayer(
        lean_client(fk.url),
        sink,
        fk.arn,
        store,
        sp,
        out=io.StringIO(),
        refresh_seconds=0.1,
        max_idle_sleep=0.02,
        changes=changes,
    )
    return r, changes


def written_order(sink: RecordingSink) -> list[str]:
    return [pk for pk, _, _ in writes(sink)]


def writes(sink: RecordingSink) -> list[tuple[str, str | None, int]]:
    """(key, value written or None for a delete, batch number), in write order."""
    out = []
    for n, batch in enumerate(sink.batches):
        for req in batch:
            item = req.get("PutRequest", {}).get("Item")
            key = item or req["DeleteRequest"]["Key"]
            out.append((key["pk"]["S"], item["v"]["N"] if item else None, n))
    return out


def test_lineage_split_and_merge_with_reorderings(
    tmp_path: Path, fk: FakeKinesis, dynalite: Server, dst: Any, table_name: str
) -> None:
    t = table_name
    us = iter(range(1_700_000_000_000_000, 1_800_000_000_000_000, 1000))
    stamps = {n: next(us) for n in range(40)}
    fk.add_shard("A")
    fk.put("A", item_change(t, "x", 1, stamps[1]))
    fk.put("A", item_change(t, "y", 1, stamps[3]))  # y's first two changes swapped
    fk.put("A", item_change(t, "y", 9, stamps[2]))
    fk.split("A", "B", "C")
    fk.put("B", item_change(t, "x", 2, stamps[5]))
    fk.put("B", item_change(t, "parent-first", 1, stamps[6]))
    fk.put("C", item_change(t, "x", 1, stamps[1]))  # a late duplicate of A's first change
    fk.put("C", item_change(t, "z", 1, stamps[7]))
    fk.put("C", item_change(t, "z", None, stamps[8]))
    fk.merge("B", "C", "D")
    fk.put("D", item_change(t, "x", 3, stamps[10]))
    fk.put("D", item_change(t, "z", 4, stamps[11]))
    fk.put("D", item_change(t, "y", 9, stamps[2]))  # resent long after: must not win
    store, sp, sink = replay_setup_kinesis(tmp_path, fk, dynalite, dst, t)
    r, _ = kinesis_replay(fk, store, sp, sink, t)
    r.run(threading.Event(), stop_when_caught_up=0.3)
    assert target_values(dst, t) == {"x": "3", "y": "1", "z": "4", "parent-first": "1"}
    batch = {(k, v): n for k, v, n in writes(sink)}
    # B and C are read only once A is done, D only once both its parents are.
    assert batch[("x", "1")] < batch[("parent-first", "1")] < batch[("x", "3")]
    assert ("y", "9") not in batch  # the older change never overwrote the newer one
    saved = Savepoint.from_json(store.file.read_bytes())
    assert {s for s, p in saved.shards.items() if p.finished} == {"A", "B", "C"}
    assert saved.shards["D"].parent == "B" and saved.shards["D"].adjacent_parent == "C"
    assert saved.shards["D"].sequence_number == fk.shards["D"].records[-1]["SequenceNumber"]
    # The Kinesis JSON protocol, signed for the `kinesis` service.
    _, _, headers = next(c for c in fk.calls if c[0] == "GetRecords")
    assert headers["x-amz-target"] == "Kinesis_20131202.GetRecords"
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert "/us-east-1/kinesis/aws4_request" in headers["authorization"]


def replay_setup_kinesis(
    tmp_path: Path, fk: FakeKinesis, dynalite: Server, dst: Any, table: str
) -> tuple[Any, Savepoint, RecordingSink]:
    store, sp, sink = replay_setup(tmp_path, _Named(table), dynalite, dst, table)  # type: ignore[arg-type]
    sp.stream_arn = fk.arn
    return store, sp, sink


class _Named:
    """replay_setup wants a fake with a URL and an ARN for its config: any will do here."""

    def __init__(self, table: str) -> None:
        self.url = "http://127.0.0.1:9"
        self.arn = "unused"
        self.table = table


def test_resume_reads_after_the_saved_kinesis_positions(
    tmp_path: Path, fk: FakeKinesis, dynalite: Server, dst: Any, table_name: str
) -> None:
    t = table_name
    fk.add_shard("A")
    for i in range(5):
        fk.put("A", item_change(t, f"k{i}", i, 1_700_000_000_000_000 + i))
    store, sp, sink = replay_setup_kinesis(tmp_path, fk, dynalite, dst, t)
    r, _ = kinesis_replay(fk, store, sp, sink, t)
    r.run(threading.Event(), stop_when_caught_up=0.2)
    saved = Savepoint.from_json(store.file.read_bytes())
    at = saved.shards["A"].sequence_number
    assert at == fk.shards["A"].records[-1]["SequenceNumber"]
    fk.put("A", item_change(t, "k0", 100, 1_700_000_000_100_000))
    # A stale duplicate of k1 read only after the restart still loses to what was applied.
    fk.put("A", item_change(t, "k1", 999, 1_699_999_999_000_000))
    assert key_id({"pk": {"S": "k1"}}).decode() in saved.recent_changes
    fk.calls.clear()
    sink2 = RecordingSink(lean_client(dynalite.url, "target"), t, ["pk"])
    r2, _ = kinesis_replay(fk, store, Savepoint.from_json(store.file.read_bytes()), sink2, t)
    r2.run(threading.Event(), stop_when_caught_up=0.2)
    its = fk.ops("GetShardIterator")
    assert its and all(
        b["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER" and b["StartingSequenceNumber"] == at
        for b in its
    )
    assert written_order(sink2) == ["k0"]  # only the new record: nothing re-read
    values = target_values(dst, t)
    assert values["k0"] == "100" and values["k1"] == "1"


def test_destination_enabled_then_waited_for(fk: FakeKinesis) -> None:
    client = lean_client(fk.url)
    ensure_destination(client, "t", fk.arn, resuming=False, poll_seconds=0, sleep=lambda s: None)
    enable = fk.ops("EnableKinesisStreamingDestination")
    assert len(enable) == 1 and enable[0]["StreamArn"] == fk.arn
    assert fk.destinations[fk.arn] == "ACTIVE"
    # Already ACTIVE: nothing to enable.
    ensure_destination(client, "t", fk.arn, resuming=True, sleep=lambda s: None)
    assert len(fk.ops("EnableKinesisStreamingDestination")) == 1
    # Disabled since positions were saved: changes made meanwhile never reached the stream.
    fk.destinations[fk.arn] = "DISABLED"
    with pytest.raises(StreamTrimmedError, match="DISABLED"):
        ensure_destination(client, "t", fk.arn, resuming=True, sleep=lambda s: None)


def test_status_probes_kinesis_shards(fk: FakeKinesis) -> None:
    from alternator_migrator.state.savepoint import ShardPosition
    from alternator_migrator.status import _shards

    fk.add_shard("A")
    seqs = [fk.put("A", item_change("t", f"k{i}", i, 1_700_000_000_000_000 + i)) for i in range(3)]
    fk.split("A", "B", "C")
    sp = Savepoint(fingerprint="f", table="t", stream_arn=fk.arn)
    sp.shards["A"] = ShardPosition(seqs[1], False, None, 1_700_000_000.0)
    got = {s.shard_id: s for s in _shards(KinesisSource(kclient(fk.url), fk.arn, "t"), sp, 0.0)}
    assert got["A"].pending is True and got["B"].pending is False
    assert got["B"].parent == "A"
    sp.shards["A"].sequence_number = seqs[2]
    got = {s.shard_id: s for s in _shards(KinesisSource(kclient(fk.url), fk.arn, "t"), sp, 0.0)}
    assert got["A"].pending is False


def test_a_reader_decodes_pages_from_their_bytes_and_refuses_what_is_no_change(
    fk: FakeKinesis,
) -> None:
    pytest.importorskip("msgspec")
    from alternator_migrator.changes.records import page_decoder

    fk.per_call = 10
    fk.add_shard("A")
    fk.put("A", item_change("t", "a", 1, 1_700_000_000_000_001))
    fk.put("A", item_change("other", "a", 9, 1_700_000_000_000_002))  # another table's
    fk.put("A", item_change("t", "b", None, 1_700_000_000_000_003))
    source = KinesisSource(kclient(fk.url), fk.arn, "t")
    reader = source.reader(source.list_shards()[0], None)
    reader.pages = page_decoder(Decoder())
    got = reader.read()
    assert values(got) == {"a": "1", "b": None}
    assert [c.time for c in got] == pytest.approx([1_700_000_000.000001, 1_700_000_000.000003])
    assert [c.seq for c in got] == [r["SequenceNumber"] for r in fk.shards["A"].records[::2]]
    # Data that is not a DynamoDB change record: refused by name, nothing applied.
    fk.put("A", {"hello": "world"})
    with pytest.raises(StreamRecordError, match="not a DynamoDB change record"):
        reader.read()
