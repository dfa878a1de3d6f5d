"""One coordinator per item, through the CLI: a live migration into a 3-node cluster whose
nodes' clocks are 300 ms apart and keep, per item, the newest stamp (tests/skew_cluster.py),
while a dozen hot items change ~3 times a second (puts, updates, deletes) during the replay.

With key affinity the target ends equal to the source and no write is lost; with the test-only
round-robin switch the same run loses acknowledged writes (the failure affinity prevents); a
node lost and brought back mid-replay (keys move, then move back, behind the clock-skew guard)
still ends equal."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.aws.nodes import ROUND_ROBIN_WRITES_ENV
from alternator_migrator.loadgen import KeySpace, LoadgenOptions
from alternator_migrator.loadgen import run as loadgen
from alternator_migrator.localservers import Server

from ..helpers import batch_put, create_table, eventually, read_savepoint, start_cli, write_config
from ..skew_cluster import SkewCluster

HOT = 12
MUTATION_SECONDS = 8.0


@pytest.fixture
def cluster(dynalite: Server) -> Iterator[SkewCluster]:
    c = SkewCluster(dynalite.url, clock_offsets_ms=(0, -300, 300)).start()
    yield c
    c.stop()


def live_migration(
    tmp_path: Path,
    moto: Server,
    cluster: SkewCluster,
    src: Any,
    table: str,
    *,
    env: dict[str, str] | None = None,
    during: Callable[[], None] | None = None,
) -> tuple[str, int, str]:
    """Snapshot, then replay while the hot items change; returns (migrate log, validate exit
    code, validate output)."""
    create_table(src, table)
    space = KeySpace(src.describe_table(TableName=table)["Table"], HOT)
    cold = [{"pk": {"S": f"cold-{i:04d}"}, "v": {"N": str(i)}} for i in range(150)]
    hot = [{**space.key(n), "v": {"N": "0"}} for n in range(HOT)]
    batch_put(src, table, cold + hot)
    cfg = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table,
        target_url=cluster.url,
        target_table=table,
        savepoints=tmp_path / "sp",
        source_extra={"streamingPollIntervalSeconds": 0.2},
        target_extra={"type": "alternator", "alternator": {"activeRefreshIntervalMs": 200}},
    )
    log = tmp_path / "migrate.log"
    proc = start_cli(["migrate", "--config", str(cfg), "--stop-when-caught-up", "4"], log, env)
    try:
        eventually(
            lambda: proc.poll() is None and read_savepoint(tmp_path / "sp").get("snapshotDone"),
            timeout=60,
            message="snapshot done",
        )
        opts = LoadgenOptions(
            endpoint=moto.url,
            table=table,
            keys=HOT,
            rate=(3.0 * HOT, 3.0 * HOT),  # ~3 changes per item per second
            duration=MUTATION_SECONDS,
            seed=18,
            mix={"put": 50.0, "update": 25.0, "delete": 25.0},
            large_fraction=0.0,
        )
        if during is not None:
            t = threading.Thread(target=during, daemon=True)
            t.start()
        stats = loadgen(opts, out=open(os.devnull, "w"))  # noqa: SIM115
        assert stats.total >= 150 and stats.counts["delete"] >= 20, stats
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    v = subprocess.run(
        [sys.executable, "-m", "alternator_migrator", "validate", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return log.read_text(), v.returncode, v.stdout + v.stderr


def test_key_affinity_keeps_a_skewed_cluster_equal_to_the_source(
    tmp_path: Path, moto: Server, cluster: SkewCluster, src: Any, dst: Any, table_name: str
) -> None:
    # The target table exists, tagged as Alternator tags a table's write isolation.
    create_table(dst, table_name)
    arn = dst.describe_table(TableName=table_name)["Table"]["TableArn"]
    dst.tag_resource(
        ResourceArn=arn, Tags=[{"Key": "system:write_isolation", "Value": "forbid_rmw"}]
    )
    log, rc, report = live_migration(tmp_path, moto, cluster, src, table_name)
    print(f"\naffinity: applied {cluster.applied}, lost {cluster.lost}, per node {cluster.ops()}")
    assert (
        "Target write isolation: forbid_rmw (tag system:write_isolation: no LWT; last write "
        "wins by the coordinator's clock); ordering relies on one coordinator per item (key "
        "affinity over 3 nodes, clock-skew guard 1000 ms)"
    ) in log
    assert cluster.lost == 0, sorted(cluster.lost_keys)
    assert rc == 0, report
    assert all(n > 0 for n in cluster.ops()), cluster.ops()  # the writes did spread


def test_round_robin_writes_lose_updates_on_a_skewed_cluster(
    tmp_path: Path, moto: Server, cluster: SkewCluster, src: Any, table_name: str
) -> None:
    """The test switch restores the old round-robin writes: the same run provably fails."""
    env = {ROUND_ROBIN_WRITES_ENV: "1"}
    log, rc, _ = live_migration(tmp_path, moto, cluster, src, table_name, env=env)
    print(f"\nround-robin: applied {cluster.applied}, lost {cluster.lost}, validate exit {rc}")
    assert "writes round-robin over 3 nodes" in log
    assert cluster.lost > 0  # acknowledged by a node, never applied: an older stamp


def test_node_lost_and_back_under_skew_ends_equal(
    tmp_path: Path, moto: Server, cluster: SkewCluster, src: Any, table_name: str
) -> None:
    """The node whose clock is 300 ms ahead leaves mid-replay and comes back: its keys move to
    nodes whose clocks are behind, then home again; the clock-skew guard keeps every write."""
    home: list[int] = []

    def lose_and_return() -> None:
        start = cluster.applied
        eventually(lambda: cluster.applied >= start + 40, 30, message="replay under way")
        cluster.take_down(2, still_listed=True)  # dead, and listed for a while (gossip lags)
        eventually(lambda: cluster.applied >= start + 70, 30, message="replay around node 3")
        cluster.unlist(2)
        eventually(lambda: cluster.applied >= start + 100, 30, message="replay without node 3")
        cluster.bring_back(2)
        home.append(cluster.ops()[2])

    log, rc, report = live_migration(
        tmp_path, moto, cluster, src, table_name, during=lose_and_return
    )
    print(f"\nnode loss: applied {cluster.applied}, lost {cluster.lost}, per node {cluster.ops()}")
    assert cluster.lost == 0, sorted(cluster.lost_keys)
    assert rc == 0, report
    assert home and cluster.ops()[2] > home[0]  # keys went home to the node that came back
    assert "target nodes: 127.0.0.1" in log  # the node set changes were logged
    assert "(clock-skew guard)" in log  # and keys that moved were held
    assert "Target write isolation: not exposed (no system:write_isolation tag)" in log
