"""Replay of a stream backlog: the local engine (reads the next pages while it writes) against
the Spark engine (each task reads its shard's pages, then writes them), same backlog size.

moto is the source (the only local server with Streams), dynalite the target. For each engine:
a table with a stream, a first run to enable it and catch up, then ``--records`` changes made
while the migrator is stopped, then the timed run that drains them
(``--stop-when-caught-up``). Where the time goes is printed as well: GetRecords alone
(reading the same backlog without writing) and the Spark job overhead (an empty job).

    .venv/bin/python bench/spark_replay_backlog.py [--records 20000] [--master spark://...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alternator_migrator.config import load  # noqa: E402
from alternator_migrator.localservers import start_dynalite, start_moto  # noqa: E402
from alternator_migrator.pipeline.migrate import migrate  # noqa: E402
from tests.helpers import batch_put, boto_client, create_table  # noqa: E402


def config(work: Path, moto: str, dynalite: str, table: str) -> Path:
    def ep(url: str) -> dict[str, Any]:
        host, port = url.rsplit(":", 1)
        return {"host": host, "port": int(port)}

    creds = {"accessKey": "bench", "secretKey": "bench"}
    path = work / f"{table}.yaml"
    cfg = {
        "source": {"type": "dynamodb", "table": table, "region": "us-east-1"}
        | {"endpoint": ep(moto), "credentials": creds},
        "target": {"type": "dynamodb", "table": table, "region": "us-east-1"}
        | {"endpoint": ep(dynalite), "credentials": creds, "streamChanges": True},
        "savepoints": {"path": str(work / "sp"), "intervalSeconds": 5},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def backlog(src: Any, table: str, n: int) -> None:
    pad = {"S": "x" * 200}
    batch_put(
        src,
        table,
        [{"pk": {"S": f"k{i % 5000}"}, "n": {"N": str(i)}, "pad": pad} for i in range(n)],
    )


def read_only(src: Any, table: str) -> tuple[int, float]:
    """GetRecords over the whole stream (TRIM_HORIZON), no writes."""
    arn = src.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = boto_client(src.meta.endpoint_url, "dynamodbstreams")
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    t0, n = time.monotonic(), 0
    for sh in shards:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = streams.get_records(ShardIterator=it, Limit=1000)
            n += len(r["Records"])
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return n, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="replay-backlog-"))
    moto, dyn = start_moto(work / "logs"), start_dynalite(work / "logs")
    try:
        src = boto_client(moto.url)
        from alternator_migrator.spark import migrate_spark, spark_session

        t0 = time.monotonic()
        spark = spark_session(args.master, {"spark.ui.enabled": "false"})
        print(f"spark session: {time.monotonic() - t0:.1f}s")
        sc = spark.sparkContext
        t0 = time.monotonic()
        for _ in range(5):
            sc.parallelize([0], 1).map(lambda x: x).collect()
        print(f"empty Spark job: {(time.monotonic() - t0) / 5 * 1000:.0f} ms")
        for engine in ("local", "spark"):
            table = f"backlog-{engine}"
            create_table(src, table)
            cfg = load(config(work, moto.url, dyn.url, table))

            def run(cfg: Any = cfg, engine: str = engine) -> Any:
                if engine == "local":
                    return migrate(cfg, stop_when_caught_up=0.5, show_progress=False)
                return migrate_spark(cfg, spark=spark, stop_when_caught_up=0.5, show_progress=False)

            run()  # enables the stream, nothing to copy
            backlog(src, table, args.records)
            t0 = time.monotonic()
            result = run()
            took = time.monotonic() - t0 - 0.5  # minus the quiet time that ends it
            n = result.replay.records if result.replay else 0
            print(f"{engine}: {n} records in {took:.1f}s = {n / took:,.0f} records/s")
            n, secs = read_only(src, table)
            print(f"  GetRecords alone (boto3): {n} records in {secs:.1f}s = {n / secs:,.0f}/s")
        spark.stop()
    finally:
        moto.stop()
        dyn.stop()


if __name__ == "__main__":
    main()
