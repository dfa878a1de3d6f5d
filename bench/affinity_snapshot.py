"""Snapshot throughput into a 3-node Alternator stand-in: round-robin writes vs key affinity.

Source: dynalite loaded with N x 1 KB items. Target: a fresh dynalite behind three forwarders
on 127.0.0.1-3 serving /localnodes (tests/netfakes.py FakeCluster, in this process). The
migrator CLI runs as a child, ``type: alternator`` target, once per mode, alternating:

- ``round-robin``: the test-only switch ALTERNATOR_MIGRATOR_TEST_ROUND_ROBIN_WRITES=1 (every
  BatchWriteItem to the next node, as before key affinity);
- ``affinity``: every write of an item to its rendezvous node, batches split per node.

Reports items/s (child start to exit), client CPU per item, BatchWriteItem per node and its
share (bar: each of 3 nodes >= 15%), mean items per BatchWriteItem, and the load average.
The forwarders are Python threads in this process: the same cost in both modes.

    .venv/bin/python bench/affinity_snapshot.py [--items 30000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from loader import count, create_table, load  # noqa: E402
from run import TABLE, migrator_cmd, run_child, write_config  # noqa: E402

from alternator_migrator.aws.nodes import ROUND_ROBIN_WRITES_ENV  # noqa: E402
from alternator_migrator.localservers import Server, start_dynalite  # noqa: E402
from tests.netfakes import FakeCluster  # noqa: E402

WORK = ROOT / ".bench" / "affinity"


def one_run(mode: str, source: Server, items: int) -> dict[str, Any]:
    target = start_dynalite(WORK / "logs")
    cluster = FakeCluster(target.url).start()
    try:
        create_table(target.url, TABLE)
        cfg = write_config(
            WORK / f"{mode}.yaml",
            source,
            target,
            WORK / "savepoints",
            target_extra={
                "type": "alternator",
                "endpoint": {"host": "http://127.0.0.1", "port": cluster.port},
                "maxItemsPerBatch": 25,  # dynalite refuses more, as DynamoDB does
                "alternator": {"activeRefreshIntervalMs": 1000},
            },
        )
        if mode == "round-robin":
            os.environ[ROUND_ROBIN_WRITES_ENV] = "1"
        load0 = os.getloadavg()[0]
        try:
            child = run_child([*migrator_cmd(cfg), "--no-progress"], WORK / f"{mode}.log")
        finally:
            os.environ.pop(ROUND_ROBIN_WRITES_ENV, None)
        copied = count(target.url, TABLE)
        batches = cluster.counts()
    finally:
        cluster.stop()
        target.stop()
    return {
        "mode": mode,
        "rc": child.rc,
        "copied": copied,
        "items_per_s": copied / child.wall,
        "cpu_us_per_item": child.cpu / max(1, copied) * 1e6,
        "batches": batches,
        "shares": [round(b / max(1, sum(batches)), 3) for b in batches],
        "items_per_batch": copied / max(1, sum(batches)),
        "load": (load0, os.getloadavg()[0]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    source = start_dynalite(WORK / "logs")
    results = []
    try:
        create_table(source.url, TABLE)
        took = load(source.url, TABLE, 0, args.items)
        print(f"loaded {args.items:,} items in {took:.1f}s; load average {os.getloadavg()}")
        for _ in range(args.repeat):
            for mode in ("round-robin", "affinity"):
                r = one_run(mode, source, args.items)
                results.append(r)
                print(
                    f"{r['mode']:<12} rc={r['rc']} copied={r['copied']:,} "
                    f"{r['items_per_s']:,.0f} items/s  {r['cpu_us_per_item']:.0f} us/item  "
                    f"BatchWriteItem per node {r['batches']} shares {r['shares']}  "
                    f"{r['items_per_batch']:.1f} items/batch  load {r['load'][0]:.2f}->"
                    f"{r['load'][1]:.2f}",
                    flush=True,
                )
                time.sleep(1)
    finally:
        source.stop()
    for mode in ("round-robin", "affinity"):
        rates = [r["items_per_s"] for r in results if r["mode"] == mode]
        print(f"{mode:<12} mean {sum(rates) / len(rates):,.0f} items/s over {len(rates)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
