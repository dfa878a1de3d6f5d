"""The baseline of issue 6: a plain boto3 table copier.

One process, ``--segments`` threads (default 4); thread *i* scans segment *i* of
``TotalSegments=--segments`` and writes every page with BatchWriteItem, 25 items at a time,
resending ``UnprocessedItems`` until none are left. No pipelining, no tuning: what a developer
would write in an afternoon. Prints one JSON line: items copied and seconds spent copying.

    python bench/plain_copier.py --source URL --target URL --table T [--target-table T2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config as BotoConfig


def make_client(url: str, threads: int) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=BotoConfig(
            max_pool_connections=threads * 2,
            retries={"max_attempts": 10, "mode": "standard"},
        ),
    )


def copy_segment(
    src: Any, dst: Any, table: str, target_table: str, segment: int, total: int
) -> int:
    copied = 0
    kwargs: dict[str, Any] = {"TableName": table, "Segment": segment, "TotalSegments": total}
    while True:
        page = src.scan(**kwargs)
        items = page.get("Items", [])
        for i in range(0, len(items), 25):
            requests: dict[str, Any] = {
                target_table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]
            }
            attempt = 0
            while requests:
                r = dst.batch_write_item(RequestItems=requests)
                requests = r.get("UnprocessedItems") or {}
                if requests:
                    attempt += 1
                    time.sleep(min(1.0, 0.05 * 2**attempt))
        copied += len(items)
        if "LastEvaluatedKey" not in page:
            return copied
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="source endpoint URL")
    ap.add_argument("--target", required=True, help="target endpoint URL")
    ap.add_argument("--table", required=True)
    ap.add_argument("--target-table", default=None)
    ap.add_argument("--segments", type=int, default=4)
    args = ap.parse_args()
    target_table = args.target_table or args.table
    # boto3 clients are thread-safe; one per side, as most such scripts do.
    src = make_client(args.source, args.segments)
    dst = make_client(args.target, args.segments)
    began = time.monotonic()
    with ThreadPoolExecutor(args.segments) as pool:
        counts = list(
            pool.map(
                lambda s: copy_segment(src, dst, args.table, target_table, s, args.segments),
                range(args.segments),
            )
        )
    seconds = time.monotonic() - began
    print(json.dumps({"items": sum(counts), "copy_seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
