"""The replay honours the Scylla Migrator's streaming keys and skips expired images.

Driven through the fake Streams endpoint (moto cannot fail a read on demand or show the
GetRecords Limit); the target is the real dynalite.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.aws.client import DynamoError, RetryPolicy
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.replay import Replayer
from alternator_migrator.target.ttl import expiry_check

from ..fakes import FakeStreams, _Fault, lean_client, replay_setup, target_values
from ..helpers import scan_all

NO_RETRY = RetryPolicy(base=0.001, cap=0.001, max_attempts=1, deadline=1.0)


class FlakyStreams(FakeStreams):
    """GetRecords answers HTTP 500 ``failures`` times before working again."""

    failures = 0

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise _Fault("InternalServerError", "internal failure", 500)
        return super()._get_records(body)


@pytest.fixture
def fake() -> Iterator[FlakyStreams]:
    f = FlakyStreams(records_per_call=1000, shards_per_page=10).start()
    yield f
    f.stop()


def replay(fake: FakeStreams, store: Any, sp: Any, sink: Any, **kw: Any) -> Replayer:
    r = Replayer(
        lean_client(fake.url, retry=NO_RETRY),
        sink,
        fake.arn,
        store,
        sp,
        out=io.StringIO(),
        refresh_seconds=0.2,
        max_idle_sleep=0.05,
        **kw,
    )
    r.run(threading.Event(), stop_when_caught_up=0.3)
    return r


def test_records_per_poll_is_the_get_records_limit(
    tmp_path: Path, fake: FlakyStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("s0")
    for i in range(12):
        fake.put("s0", f"k{i}", i)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    replay(fake, store, sp, sink, records_per_poll=5, records_per_second=1000)
    assert target_values(dst, table_name) == {f"k{i}": str(i) for i in range(12)}
    limits = {c[1].get("Limit") for c in fake.calls if c[0] == "GetRecords"}
    assert limits == {5}


def test_rate_cap_also_bounds_the_poll(
    tmp_path: Path, fake: FlakyStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("s0")
    fake.put("s0", "k", 1)
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    r = replay(fake, store, sp, sink, records_per_second=3)
    # A poll never asks for more than one second's worth of the cap, so a stop is seen soon.
    assert r.records_per_poll == 3
    assert {c[1].get("Limit") for c in fake.calls if c[0] == "GetRecords"} == {3}


def test_failed_reads_within_the_allowance_lose_nothing(
    tmp_path: Path, fake: FlakyStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("a")
    fake.add_shard("b")
    for i in range(6):
        fake.put("a", f"a{i}", i)
        fake.put("b", f"b{i}", i)
    fake.failures = 2  # the first two reads fail, after the client's own (single) attempt
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    replay(fake, store, sp, sink, max_consecutive_errors=3)
    want = {f"{s}{i}": str(i) for s in "ab" for i in range(6)}
    assert target_values(dst, table_name) == want
    assert fake.failures == 0


def test_too_many_failed_reads_stop_the_replay(
    tmp_path: Path, fake: FlakyStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("s0")
    fake.put("s0", "k1", 1)
    fake.failures = 100
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    with pytest.raises(DynamoError, match="InternalServerError"):
        replay(fake, store, sp, sink, max_consecutive_errors=2)
    assert fake.failures == 98  # exactly the allowance was used
    assert sp.shards["s0"].sequence_number is None  # nothing claimed as applied


def test_default_is_to_stop_at_the_first_failed_read(
    tmp_path: Path, fake: FlakyStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    fake.add_shard("s0")
    fake.put("s0", "k1", 1)
    fake.failures = 1
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    with pytest.raises(DynamoError):
        replay(fake, store, sp, sink)


def test_expired_images_are_not_written_removes_still_are(
    tmp_path: Path, fake: FlakyStreams, dynalite: Server, dst: Any, table_name: str
) -> None:
    """`v` plays the TTL attribute: a day ago is expired, now + 1 day is live; 0 and 5 (more
    than five years ago) DynamoDB never expires, so they are written, not turned into deletes."""
    later, earlier = int(time.time()) + 86400, int(time.time()) - 86400
    fake.add_shard("s0")
    store, sp, sink = replay_setup(tmp_path, fake, dynalite, dst, table_name)
    dst.put_item(TableName=table_name, Item={"pk": {"S": "gone"}, "v": {"N": str(later)}})
    dst.put_item(TableName=table_name, Item={"pk": {"S": "zero"}, "v": {"N": str(later)}})
    fake.put("s0", "live", later)
    fake.put("s0", "expired", earlier)
    fake.put("s0", "was-live", later)
    fake.put("s0", "was-live", earlier)  # a live item updated to an expired TTL
    fake.put("s0", "gone", None)  # a REMOVE is applied whatever the TTL
    fake.put("s0", "text", "not a number")  # not a number: never expires
    fake.put("s0", "ancient", 5)  # more than five years ago: DynamoDB keeps it forever
    fake.put("s0", "zero", 0)  # 0: "never expires"; the older copy is overwritten, not deleted
    replay(fake, store, sp, sink, expired=expiry_check("v", time.time))
    got = {i["pk"]["S"]: i["v"] for i in scan_all(dst, table_name)}
    assert got == {
        "live": {"N": str(later)},
        "text": {"S": "not a number"},
        "ancient": {"N": "5"},
        "zero": {"N": "0"},
    }
