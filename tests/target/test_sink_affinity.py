"""The sink's key affinity against the skewed-clock stand-in (no migration around it): a key whose
node is lost gets its next write through a node whose clock is behind; without the clock-skew
guard that write is acknowledged and lost, with it the write waits and lands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from alternator_migrator.aws.client import CredentialSource, DynamoClient
from alternator_migrator.config.model import AlternatorSettings, Credentials
from alternator_migrator.localservers import Server
from alternator_migrator.target.sink import Sink

from ..helpers import create_table
from ..skew_cluster import SkewCluster

CREDS = CredentialSource(Credentials(access_key="AKID", secret_key="secret"), None, None)


@pytest.fixture
def cluster(dynalite: Server) -> Iterator[SkewCluster]:
    # Node 3's clock is 1 s ahead of node 1's and 2 s ahead of node 2's.
    c = SkewCluster(dynalite.url, clock_offsets_ms=(0, -1000, 1000)).start()
    yield c
    c.stop()


def lose_the_owner_between_two_writes(
    cluster: SkewCluster, dst: Any, table: str, guard_ms: int
) -> tuple[bool, Sink]:
    """Put an item owned by node 3, take node 3 down, delete the item at once; returns
    whether the item is still on the target."""
    create_table(dst, table)
    settings = AlternatorSettings(clock_skew_guard_ms=guard_ms)
    client = DynamoClient(cluster.url, "us-east-1", CREDS, alternator=settings, label="target")
    try:
        aff = client.affinity
        assert aff is not None
        key = next(
            {"pk": {"S": f"k{i}"}}
            for i in range(1000)
            if aff.owner(orjson.dumps({"S": f"k{i}"})).netloc.startswith("127.0.0.3:")
        )
        sink = Sink(client, table, ["pk"])
        sink.write([sink.put({**key, "v": {"N": "1"}})])
        assert cluster.ops()[2] == 1
        cluster.take_down(2)
        sink.write([sink.delete(key)])
    finally:
        client.close()
    return "Item" in dst.get_item(TableName=table, Key=key, ConsistentRead=True), sink


def test_without_the_guard_a_moved_key_loses_its_next_write(
    cluster: SkewCluster, dst: Any, table_name: str
) -> None:
    still_there, sink = lose_the_owner_between_two_writes(cluster, dst, table_name, guard_ms=0)
    assert cluster.lost == 1 and still_there  # the delete was acknowledged and had no effect
    assert sink.held_seconds == 0.0


def test_the_guard_holds_a_moved_key_until_the_clocks_cannot_reorder_it(
    cluster: SkewCluster, dst: Any, table_name: str
) -> None:
    still_there, sink = lose_the_owner_between_two_writes(cluster, dst, table_name, guard_ms=2500)
    assert cluster.lost == 0 and not still_there
    assert sink.held_seconds > 0  # it was held, not lucky
