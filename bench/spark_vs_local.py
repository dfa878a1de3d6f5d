"""Snapshot throughput: the local engine against the Spark engine on local[N], same table.

dynalite serves both sides (moto's Scan slows down past ~20k items); each engine copies the
same source table into its own target table. Spark's session start is reported apart from
the copy, since a cluster job pays it once whatever the table size.

    .venv/bin/python bench/spark_vs_local.py [--items 100000] [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from alternator_migrator.aws.client import CredentialSource, DynamoClient
from alternator_migrator.config import Credentials, load
from alternator_migrator.localservers import start_dynalite
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.target.sink import Sink

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".bench" / "spark_vs_local"
sys.path.insert(0, str(ROOT / "bench"))
from loader import RAISED  # noqa: E402


def client(url: str) -> DynamoClient:
    return DynamoClient(
        url, "us-east-1", CredentialSource(Credentials("bench", "bench"), None, None)
    )


def create(c: DynamoClient, table: str) -> None:
    c.call(
        "CreateTable",
        {
            "TableName": table,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def fill(c: DynamoClient, table: str, n: int, item_bytes: int) -> None:
    sink = Sink(c, table, ["pk"])
    pad = "x" * max(0, item_bytes - 60)

    def chunk(start: int) -> None:
        sink.put_items(
            {"pk": {"S": f"item-{i:08d}"}, "n": {"N": str(i)}, "pad": {"S": pad}}
            for i in range(start, min(n, start + 1000))
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(chunk, range(0, n, 1000)))


def count(c: DynamoClient, table: str) -> int:
    total, start = 0, None
    while True:
        body: dict[str, Any] = {"TableName": table, "Select": "COUNT"}
        if start:
            body["ExclusiveStartKey"] = start
        r = c.call("Scan", body)
        total += int(r["Count"])
        start = r.get("LastEvaluatedKey")
        if not start:
            return total


def config(src_url: str, dst_url: str, target: str, segments: int, tasks: int | None) -> Path:
    def side(url: str, table: str) -> dict[str, Any]:
        host, port = url.rsplit(":", 1)
        return {
            "type": "dynamodb",
            "table": table,
            "region": "us-east-1",
            "endpoint": {"host": host, "port": int(port)},
            "credentials": {"accessKey": "bench", "secretKey": "bench"},
        }

    source = {**side(src_url, "source"), "scanSegments": segments}
    if tasks:
        source["maxMapTasks"] = tasks
    cfg = {
        "source": source,
        # loader.RAISED: the default write budget would bound the local engine here.
        "target": {**side(dst_url, target), "streamChanges": False, **RAISED},
        "savepoints": {"path": str(WORK / "savepoints"), "intervalSeconds": 5},
    }
    path = WORK / f"{target}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--item-bytes", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=16, help="scanSegments for both engines")
    ap.add_argument("--master", default="local[2]", help="one master, or several comma-separated")
    ap.add_argument("--max-map-tasks", type=int, default=None, help="maxMapTasks for both")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    WORK.mkdir(parents=True, exist_ok=True)

    source = start_dynalite(WORK)
    target = start_dynalite(WORK)
    try:
        src, dst = client(source.url), client(target.url)
        create(src, "source")
        t = time.monotonic()
        fill(src, "source", args.items, args.item_bytes)
        print(f"loaded {args.items:,} items of ~{args.item_bytes} B in {time.monotonic() - t:.1f}s")

        segs, tasks = args.segments, args.max_map_tasks
        t = time.monotonic()
        migrate(
            load(config(source.url, target.url, "local", segs, tasks)),
            fresh=True,
            show_progress=False,
        )
        local_s = time.monotonic() - t
        local_n = count(dst, "local")
        print(f"segments: {segs}, maxMapTasks: {tasks or 'default'}")
        print(
            f"local engine       : {local_n:,} items in {local_s:6.1f}s = "
            f"{local_n / local_s:8,.0f} items/s"
        )
        runs: list[dict[str, Any]] = []
        ok = local_n == args.items

        from alternator_migrator.spark import migrate_spark, spark_session

        for i, master in enumerate(m.strip() for m in args.master.split(",")):
            table = f"spark{i}"
            t = time.monotonic()
            spark = spark_session(master, {"spark.ui.enabled": "false"})
            spark.sparkContext.parallelize([0], 1).count()  # start the JVM and a Python worker
            startup_s = time.monotonic() - t
            t = time.monotonic()
            migrate_spark(
                load(config(source.url, target.url, table, segs, tasks)),
                spark=spark,
                fresh=True,
                show_progress=False,
            )
            spark_s = time.monotonic() - t
            spark.stop()
            spark_n = count(dst, table)
            ok = ok and spark_n == args.items
            print(
                f"spark {master:<13}: {spark_n:,} items in {spark_s:6.1f}s = "
                f"{spark_n / spark_s:8,.0f} items/s (plus {startup_s:.1f}s session start)"
            )
            runs.append(
                {
                    "master": master,
                    "items": spark_n,
                    "seconds": spark_s,
                    "items_per_s": spark_n / spark_s,
                    "startup_s": startup_s,
                    "load": os.getloadavg()[0],
                }
            )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "items": args.items,
                        "segments": segs,
                        "max_map_tasks": tasks,
                        "local": {
                            "items": local_n,
                            "seconds": local_s,
                            "items_per_s": local_n / local_s,
                        },
                        "spark": runs,
                    },
                    indent=2,
                )
            )
        if not ok:
            print("MISMATCH: a target does not hold every source item", file=sys.stderr)
            return 1
        return 0
    finally:
        source.stop()
        target.stop()


if __name__ == "__main__":
    sys.exit(main())
