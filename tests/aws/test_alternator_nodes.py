"""Alternator node discovery against a fake 3-node cluster (forwarders on 127.0.0.1-3 in front
of one dynalite, serving /localnodes): spreading, routing around a dead node, compression."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.aws.client import CredentialSource, DynamoClient, RetryPolicy
from alternator_migrator.aws.nodes import AlternatorNodes
from alternator_migrator.config import AlternatorSettings, Credentials
from alternator_migrator.localservers import Server
from alternator_migrator.metrics import METRICS
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.state.savepoint import SavepointStore

from ..helpers import (
    BackgroundMigration,
    batch_put,
    create_table,
    eventually,
    local_config,
    table_diff,
)
from ..netfakes import FakeCluster, HttpForwarder

CREDS = CredentialSource(Credentials(access_key="AKID", secret_key="secret"), None, None)
ALTERNATOR = {"type": "alternator", "alternator": {"activeRefreshIntervalMs": 200}}


@pytest.fixture
def cluster(dynalite: Server) -> Iterator[FakeCluster]:
    c = FakeCluster(dynalite.url).start()
    yield c
    c.stop()


def items(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}, "pad": {"S": "x" * 100}}
        for i in range(start, start + n)
    ]


def node_requests(label: str, cluster: FakeCluster) -> list[float]:
    return [
        METRICS.counter("node_requests_total", endpoint=label, node=f"{h}:{cluster.port}")
        for h in cluster.hosts
    ]


def test_snapshot_spreads_batch_writes_over_all_nodes(
    moto: Server, cluster: FakeCluster, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(1500))
    cfg = local_config(tmp_path, moto, cluster, table_name, stream=False, target_extra=ALTERNATOR)
    before = node_requests("target", cluster)

    result = migrate(cfg, show_progress=False)

    assert result.snapshot_complete
    assert not table_diff(src, table_name, dst, table_name, ("pk",))
    counts, shares = cluster.counts(), cluster.shares()
    print(f"\nBatchWriteItem per node {counts}, shares {shares}")
    assert sum(counts) >= 60
    assert all(s >= 0.15 for s in shares), shares
    # Per-node metrics count what each node served.
    served = [a - b for a, b in zip(node_requests("target", cluster), before, strict=True)]
    assert all(n >= c for n, c in zip(served, counts, strict=True)), (served, counts)


def test_a_node_going_away_mid_replay_loses_nothing(
    moto: Server, cluster: FakeCluster, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(300))
    cfg = local_config(tmp_path, moto, cluster, table_name, target_extra=ALTERNATOR)
    store = SavepointStore(cfg)
    run = BackgroundMigration(cfg).start()

    def snapshot_done() -> bool:
        run.check()
        sp = store.load()
        return sp is not None and sp.snapshot_done

    eventually(snapshot_done, timeout=60, message="snapshot finished")
    for it in items(100, start=1000):  # one writer: moto's stream wants it
        src.put_item(TableName=table_name, Item=it)
    eventually(
        lambda: (
            cluster.counts()[2] > 0 and not table_diff(src, table_name, dst, table_name, ("pk",))
        ),
        timeout=60,
        message="replay reached every node",
    )
    cluster.kill(2)
    at_kill = cluster.counts()
    for i, it in enumerate(items(200, start=2000)):
        src.put_item(TableName=table_name, Item=it)
        if i % 3 == 0:
            src.delete_item(TableName=table_name, Key={"pk": {"S": f"k{i}"}})
    eventually(
        lambda: (run.check(), not table_diff(src, table_name, dst, table_name, ("pk",)))[1],
        timeout=90,
        message="target converges with one node gone",
    )
    result = run.finish()
    after = cluster.counts()
    print(f"\nBatchWriteItem per node at the kill {at_kill}, at the end {after}")
    assert result.replay is not None and result.replay.records >= 300
    assert after[2] == at_kill[2]  # nothing reached the dead node ...
    assert after[0] > at_kill[0] and after[1] > at_kill[1]  # ... the others took over


def test_a_listed_but_dead_node_is_routed_around_at_once(
    cluster: FakeCluster, dst: Any, table_name: str
) -> None:
    create_table(dst, table_name)
    c = DynamoClient(
        cluster.url, "us-east-1", CREDS, alternator=AlternatorSettings(), label="dead-node"
    )
    router = c._router
    assert isinstance(router, AlternatorNodes)
    assert router.live_nodes() == [f"{h}:{cluster.port}" for h in cluster.hosts]
    cluster.nodes[1].stop()  # gone, though /localnodes still lists it (gossip lags)
    retries: list[str] = []
    for i in range(9):
        c.call(
            "PutItem",
            {"TableName": table_name, "Item": items(1, start=i)[0]},
            retry=RetryPolicy(base=0.001, cap=0.01),
            on_retry=lambda e, n: retries.append(e.message),
        )
    assert retries == []  # a refused connection went to the next node without a retry
    assert f"127.0.0.2:{cluster.port}" not in router.live_nodes()
    assert (
        METRICS.counter("node_errors_total", endpoint="dead-node", node=f"127.0.0.2:{cluster.port}")
        >= 1
    )
    assert dst.scan(TableName=table_name, Select="COUNT")["Count"] == 9
    # Still listed, still dead: a refresh does not take it back (its keys would flap) ...
    assert router.refresh() is True
    assert f"127.0.0.2:{cluster.port}" not in router.live_nodes()
    # ... until it answers again.
    cluster.nodes[1] = HttpForwarder(
        cluster.nodes[0].upstream_url,
        host="127.0.0.2",
        port=cluster.port,
        localnodes=cluster._localnodes,
    ).start()
    assert router.refresh() is True
    assert f"127.0.0.2:{cluster.port}" in router.live_nodes()
    c.close()


def test_compression_and_datacenter_rack(cluster: FakeCluster, dst: Any, table_name: str) -> None:
    create_table(dst, table_name)
    settings = AlternatorSettings(compression=True, datacenter="dc 2", rack="r1")
    c = DynamoClient(cluster.url, "us-east-1", CREDS, alternator=settings, label="gz")
    try:
        for i in range(6):
            c.call("PutItem", {"TableName": table_name, "Item": items(1, start=i)[0]})
        got = c.call("GetItem", {"TableName": table_name, "Key": {"pk": {"S": "k3"}}})
    finally:
        c.close()
    assert got["Item"]["v"] == {"N": "3"}
    assert all(n.gzipped >= 2 for n in cluster.nodes), [n.gzipped for n in cluster.nodes]
    assert cluster.nodes[0].queries[0] == "dc=dc+2&rack=r1"


def test_endpoint_without_localnodes_is_used_as_one_node(
    dynalite: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="alternator_migrator.aws.nodes"):
        c = DynamoClient(dynalite.url, "us-east-1", CREDS, alternator=AlternatorSettings())
    try:
        assert "TableNames" in c.call("ListTables", {})
        router = c._router
        assert isinstance(router, AlternatorNodes) and router._thread is None
        assert router.live_nodes() == [dynalite.url.split("//")[1]]
    finally:
        c.close()
    lines = [r.getMessage() for r in caplog.records if "/localnodes" in r.getMessage()]
    assert len(lines) == 1 and "single node" in lines[0], lines


def test_nodes_listed_later_are_picked_up_while_busy(
    cluster: FakeCluster, dst: Any, table_name: str
) -> None:
    create_table(dst, table_name)
    cluster.down.add(2)  # not listed yet (still listening: a node that is joining)
    settings = AlternatorSettings(active_refresh_interval_ms=50)
    c = DynamoClient(cluster.url, "us-east-1", CREDS, alternator=settings, label="join")
    router = c._router
    assert isinstance(router, AlternatorNodes)
    try:
        assert len(router.live_nodes()) == 2
        cluster.down.discard(2)

        def busy_and_three() -> bool:
            c.call("PutItem", {"TableName": table_name, "Item": items(1)[0]})
            return len(router.live_nodes()) == 3

        eventually(busy_and_three, 10, message="the new node joined the rotation")
        for i in range(6):
            c.call("PutItem", {"TableName": table_name, "Item": items(1, start=i)[0]})
    finally:
        c.close()
    assert cluster.nodes[2].ops["PutItem"] >= 2


def test_https_cluster_with_private_ca(
    dynalite: Server,
    dst: Any,
    table_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ..netfakes import PrivateCA

    ca = PrivateCA(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.pem))
    create_table(dst, table_name)
    tls_cluster = FakeCluster(dynalite.url, tls=ca.server_ctx).start()
    c = DynamoClient(tls_cluster.url, "us-east-1", CREDS, alternator=AlternatorSettings())
    try:
        assert c.url.startswith("https://")
        for i in range(9):
            c.call("PutItem", {"TableName": table_name, "Item": items(1, start=i)[0]})
    finally:
        c.close()
        tls_cluster.stop()
    assert tls_cluster.counts("PutItem") == [3, 3, 3]
