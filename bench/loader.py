"""Fast bulk load of ~1 KB items into a DynamoDB-API table, for the benchmarks.

Several loader processes (the lean client, pre-serialised BatchWriteItem bodies) each write a
contiguous key range, so the load is bounded by the server rather than by one Python process.
Items are deterministic: ``pk`` = ``item-%09d``, a number, a short string and a ~950-byte pad.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from alternator_migrator.aws.client import CredentialSource, DynamoClient
from alternator_migrator.config import Credentials

REGION = "us-east-1"
# A target write budget for the snapshot benches. The plain copier has none; the migrator's
# default for an on-demand table (20,000 WCU/s, the Scylla Migrator's) is below what dynalite
# takes on a fast 2-core machine, so it would measure the budget, not the copy. Raised, as an
# operator raises it for such a target.
RAISED = {"writeThroughput": 1_000_000, "throughputWritePercent": 1.0}
ITEM_BYTES = 1000
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def lean_client(url: str, pool_size: int = 16, label: str = "bench") -> DynamoClient:
    creds = CredentialSource(Credentials("bench", "bench"), None, REGION)
    return DynamoClient(url, REGION, creds, pool_size=pool_size, label=label)


def create_table(url: str, table: str) -> None:
    """Create a ``pk`` (S) table, on demand; no-op when it already exists."""
    c = lean_client(url)
    try:
        c.call(
            "CreateTable",
            {
                "TableName": table,
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
    except Exception as e:
        if "ResourceInUse" not in str(e):
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        d = c.call("DescribeTable", {"TableName": table})["Table"]
        if d.get("TableStatus") == "ACTIVE":
            return
        time.sleep(0.1)
    raise RuntimeError(f"table {table} not ACTIVE within 30s")


def item(n: int, size: int = ITEM_BYTES) -> dict[str, Any]:
    """Item number ``n``: about ``size`` bytes as DynamoDB counts them (names + values)."""
    pk = f"item-{n:09d}"
    short = f"short string {n % 9973}"
    rot = n % len(_ALPHABET)
    # DynamoDB's item size: attribute names plus values (numbers count about a byte per digit).
    pad_len = max(1, size - (2 + len(pk)) - (1 + len(str(n))) - (1 + len(short)) - 3)
    chunk = _ALPHABET[rot:] + _ALPHABET[:rot]
    pad = (chunk * (pad_len // len(chunk) + 1))[:pad_len]
    return {
        "pk": {"S": pk},
        "n": {"N": str(n)},
        "s": {"S": short},
        "pad": {"S": pad},
    }


def _write_range(url: str, table: str, lo: int, hi: int, threads: int) -> int:
    client = lean_client(url, pool_size=threads + 2, label="loader")

    def write_batch(start: int) -> int:
        reqs: list[Any] = [
            {"PutRequest": {"Item": item(n)}} for n in range(start, min(hi, start + 25))
        ]
        while reqs:
            body = orjson.dumps({"RequestItems": {table: reqs}})
            r = client.call_raw("BatchWriteItem", body)
            reqs = r.get("UnprocessedItems", {}).get(table, [])
            if reqs:
                time.sleep(0.05)
        return min(hi, start + 25) - start

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(write_batch, range(lo, hi, 25)))


def _worker(args: tuple[str, str, int, int, int]) -> int:
    return _write_range(*args)


def load(
    url: str, table: str, start: int, stop: int, processes: int = 4, threads: int = 2
) -> float:
    """Write items ``start``..``stop``-1; returns seconds taken."""
    began = time.monotonic()
    if stop <= start:
        return 0.0
    n = stop - start
    step = max(25, -(-n // (processes * 8)))  # 8 slices per process: the slow ones even out
    step = -(-step // 25) * 25
    ranges = [(url, table, lo, min(stop, lo + step), threads) for lo in range(start, stop, step)]
    with mp.get_context("spawn").Pool(processes) as pool:
        written = sum(pool.imap_unordered(_worker, ranges))
    if written != n:
        raise RuntimeError(f"loader wrote {written} items, expected {n}")
    return time.monotonic() - began


def count(url: str, table: str, segments: int = 4) -> int:
    """Items in the table (parallel Scan with Select=COUNT)."""
    client = lean_client(url, label="counter")

    def seg(s: int) -> int:
        total = 0
        req: dict[str, Any] = {
            "TableName": table,
            "Select": "COUNT",
            "Segment": s,
            "TotalSegments": segments,
        }
        while True:
            r = client.call("Scan", req)
            total += int(r.get("Count", 0))
            if "LastEvaluatedKey" not in r:
                return total
            req["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    with ThreadPoolExecutor(segments) as pool:
        return sum(pool.map(seg, range(segments)))
