"""Peak memory of `validate` as the table grows: it must stay flat (neither table held whole).

Two dynalite servers play source and target (moto's scans are too slow at 100k items). Both
tables get the same items; `validate` runs as a child process at each size and its peak RSS
(ru_maxrss from wait4) and throughput are printed. Usage:

    .venv/bin/python bench/validate_rss.py [--sizes 10000,100000] [--item-bytes 400]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alternator_migrator.aws.client import CredentialSource, DynamoClient  # noqa: E402
from alternator_migrator.config import Credentials  # noqa: E402
from alternator_migrator.loadgen import random_item  # noqa: E402
from alternator_migrator.localservers import Server, start_dynalite  # noqa: E402

WORK = ROOT / ".bench" / "validate_rss"
TABLE = "rss"


def client(server: Server) -> DynamoClient:
    creds = CredentialSource(Credentials("bench", "bench"), None, "us-east-1")
    return DynamoClient(server.url, "us-east-1", creds, label=server.name)


def create(c: DynamoClient) -> None:
    c.call(
        "CreateTable",
        {
            "TableName": TABLE,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def write(c: DynamoClient, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 25):
        reqs: list[Any] = [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]
        while reqs:
            r = c.call("BatchWriteItem", {"RequestItems": {TABLE: reqs}})
            reqs = r.get("UnprocessedItems", {}).get(TABLE, [])


def load(clients: list[DynamoClient], start: int, stop: int, item_bytes: int) -> float:
    """The same items into every table; returns seconds taken."""
    rng = random.Random(start)
    began = time.monotonic()
    chunk = 2000
    with ThreadPoolExecutor(4) as pool:
        for lo in range(start, stop, chunk):
            items = []
            for n in range(lo, min(stop, lo + chunk)):
                it = random_item(rng, {"pk": {"S": f"key-{n:08d}"}}, large_fraction=0.0)
                it["pad"] = {"S": "p" * max(1, item_bytes - len(str(it)))}
                items.append(it)
            parts = [items[i::2] for i in range(2)]
            list(pool.map(lambda a: write(*a), [(c, p) for c in clients for p in parts]))
    return time.monotonic() - began


def measure(config: Path) -> tuple[int, float, int, str]:
    """Run validate as a child; (exit code, seconds, peak RSS in KiB, its stdout)."""
    out = WORK / "validate.out"
    began = time.monotonic()
    with out.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alternator_migrator", "validate", "--config", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - began, usage.ru_maxrss, out.read_text()


def baseline_rss() -> int:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import alternator_migrator.validate.validator, alternator_migrator.cli",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--item-bytes", type=int, default=400)
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    servers: list[Server] = []
    try:
        servers = [start_dynalite(WORK / "logs"), start_dynalite(WORK / "logs")]
        src, dst = servers
        clients = [client(src), client(dst)]
        for c in clients:
            create(c)
        config = WORK / "config.yaml"

        def side(s: Server) -> dict[str, Any]:
            return {
                "type": "dynamodb",
                "table": TABLE,
                "region": "us-east-1",
                "endpoint": {"host": "http://127.0.0.1", "port": s.port},
                "credentials": {"accessKey": "bench", "secretKey": "bench"},
            }

        config.write_text(yaml.safe_dump({"source": side(src), "target": side(dst)}))
        print(f"baseline RSS (interpreter + imports): {baseline_rss() / 1024:.0f} MiB")
        loaded = 0
        failed = False
        for size in sizes:
            took = load(clients, loaded, size, args.item_bytes)
            print(f"loaded items {loaded:,}..{size:,} into both tables in {took:.0f}s", flush=True)
            loaded = size
            rc, secs, rss, text = measure(config)
            print(
                f"validate {size:>8,} items/side: exit {rc}, {secs:6.1f}s, "
                f"{2 * size / secs:8,.0f} items/s (both sides), peak RSS {rss / 1024:6.1f} MiB",
                flush=True,
            )
            if rc != 0:
                print(text)
                failed = True
        return 1 if failed else 0
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    sys.exit(main())
