"""How long each cutover step waits, on the local test servers (issue 21).

Two moto servers: one plays DynamoDB (the old primary), one plays Alternator (the new
primary). A forward `migrate` runs under a light write load; the load stops (the application
is "switched off") and `cutover --yes` runs. Prints cutover's timeline line and the load
average. Usage:

    PYTHONPATH=src .venv/bin/python bench/cutover_timeline.py [--items 2000] [--settle 10]
        [--reverse-settle 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import yaml

from alternator_migrator.localservers import start_moto


def client(url: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def side(url: str, kind: str, **extra: Any) -> dict[str, Any]:
    host, port = url.rsplit(":", 1)
    return {
        "type": kind,
        "table": "Orders",
        "region": "us-east-1",
        "endpoint": {"host": host, "port": int(port)},
        "credentials": {"accessKey": "x", "secretKey": "x"},
        **extra,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--reverse-settle", type=float, default=10.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-"))
    (work / "alt").mkdir()
    old_s, new_s = start_moto(work), start_moto(work / "alt")
    try:
        old = client(old_s.url)
        old.create_table(
            TableName="Orders",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(0, args.items, 25):
            reqs = [
                {"PutRequest": {"Item": {"pk": {"S": f"k{j}"}, "v": {"N": "0"}}}}
                for j in range(i, min(i + 25, args.items))
            ]
            old.batch_write_item(RequestItems={"Orders": reqs})
        fwd, rev = work / "forward.yaml", work / "reverse.yaml"
        fwd.write_text(
            yaml.safe_dump(
                {
                    "source": side(old_s.url, "dynamodb"),
                    "target": side(new_s.url, "alternator", streamChanges=True),
                    "savepoints": {"path": str(work / "sp-fwd")},
                }
            )
        )
        rev.write_text(
            yaml.safe_dump(
                {
                    "source": side(
                        new_s.url, "alternator", streamsSettleSeconds=args.reverse_settle
                    ),
                    "target": side(old_s.url, "dynamodb", streamChanges=True),
                    "savepoints": {"path": str(work / "sp-rev")},
                }
            )
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cli = [sys.executable, "-m", "alternator_migrator"]
        with (work / "forward.log").open("wb") as fh:
            forward = subprocess.Popen(
                [*cli, "migrate", "--config", str(fwd), "--no-progress"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
            )
        stop = threading.Event()

        def app() -> None:  # about 20 writes/s, as the Scylla Migrator's own test did
            n = 0
            while not stop.wait(0.05):
                old.put_item(
                    TableName="Orders", Item={"pk": {"S": f"k{n % args.items}"}, "v": {"N": str(n)}}
                )
                n += 1

        writer = threading.Thread(target=app, daemon=True)
        writer.start()
        deadline = time.monotonic() + 120
        while b"Starting to transfer changes" not in (work / "forward.log").read_bytes():
            if time.monotonic() > deadline or forward.poll() is not None:
                raise SystemExit("the forward run did not reach the replay")
            time.sleep(0.2)
        time.sleep(5)  # replay under load for a while
        stop.set()  # the application is switched off just before cutover
        writer.join()
        t0 = time.monotonic()
        done = subprocess.run(
            [
                *(*cli, "cutover", "--config", str(fwd), "--reverse-config", str(rev)),
                *("--yes", "--settle", str(args.settle)),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        total = time.monotonic() - t0
        line = next((x for x in done.stdout.splitlines() if x.startswith("Cutover timeline")), "")
        print(
            f"items {args.items}, --settle {args.settle:g}, reverse settle {args.reverse_settle:g}"
        )
        print(line or done.stdout + done.stderr)
        print(
            f"cutover command total {total:.1f}s (exit {done.returncode}); forward exit {forward.wait(60)}"
        )
        print("load:", os.getloadavg())
    finally:
        old_s.stop()
        new_s.stop()


if __name__ == "__main__":
    main()
