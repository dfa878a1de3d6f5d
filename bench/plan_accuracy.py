"""How close `plan`'s snapshot estimate comes to a measured snapshot, on the local servers.

Each scenario loads N items of ~1 KB into a source table, asks `plan` for the snapshot's
duration (make_plan, the function behind `alternator-migrator plan`), then runs `migrate`
(snapshot only: streamChanges false) and times it from the call to its return: schema,
snapshot, everything. A budget low enough to dominate is configured, since `plan` estimates
budgets, not the test servers' own speed:

- read:  moto source, readThroughput 40 x 0.5 = 20 RCU/s. moto's ConsumedCapacity is fake (1.0
  per page), so the source sets removeConsumedCapacity: true and the copier charges the bytes
  it reads, half a unit per 4 KB, as it does for Alternator; the plan's model is the same.
- read2: the same read budget with dynalite as the source, which charges Scan pages itself
  (realistic ConsumedCapacity: half a unit per 4 KB of the page), as DynamoDB does.
- write: dynalite source (it reports realistic ConsumedCapacity, and like moto no size: the
  plan samples), writeThroughput 300 x 0.5 = 150 WCU/s; dynalite's target also charges
  realistic write units (1 per KB started per item).

Prints estimate, measured seconds and their ratio per scenario and writes
.bench/plan_accuracy.json. Numbers only; nothing asserts (tests never assert timings).

    .venv/bin/python bench/plan_accuracy.py [--items 2000] [--pad 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config as BotoConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alternator_migrator.config import load  # noqa: E402
from alternator_migrator.localservers import Server, start_dynalite, start_moto  # noqa: E402
from alternator_migrator.pipeline.migrate import migrate  # noqa: E402
from alternator_migrator.pipeline.plan import make_plan  # noqa: E402

OUT = ROOT / ".bench" / "plan_accuracy.json"


def client(url: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=BotoConfig(retries={"max_attempts": 10, "mode": "standard"}),
    )


def seed(url: str, table: str, n: int, pad: int) -> None:
    c = client(url)
    c.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    while c.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        time.sleep(0.1)
    for i in range(0, n, 25):
        reqs: dict[str, Any] = {
            table: [
                {"PutRequest": {"Item": {"pk": {"S": f"k{j:06d}"}, "d": {"S": "x" * pad}}}}
                for j in range(i, min(n, i + 25))
            ]
        }
        while reqs:
            reqs = c.batch_write_item(RequestItems=reqs).get("UnprocessedItems") or {}


def config(
    path: Path, src: Server, table: str, dst: Server, target_table: str, **extra: Any
) -> Path:
    def ep(url: str) -> dict[str, Any]:
        host, port = url.rsplit(":", 1)
        return {"host": host, "port": int(port)}

    creds = {"accessKey": "bench", "secretKey": "bench"}
    cfg = {
        "source": {
            "type": "dynamodb",
            "table": table,
            "endpoint": ep(src.url),
            "credentials": creds,
            **extra.get("source", {}),
        },
        "target": {
            "type": "dynamodb",
            "table": target_table,
            "endpoint": ep(dst.url),
            "credentials": creds,
            "streamChanges": False,
            **extra.get("target", {}),
        },
        "savepoints": {"path": str(path.parent / f"sp-{table}")},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def measure(name: str, cfg_path: Path) -> dict[str, Any]:
    cfg = load(cfg_path)
    plan = make_plan(cfg)
    (tp,) = plan.tables
    est = float(tp.estimate["snapshotSeconds"])
    t0 = time.monotonic()
    result = migrate(cfg, show_progress=False)
    took = time.monotonic() - t0
    assert result.snapshot_complete
    row = {
        "scenario": name,
        "items": tp.source["items"],
        "sizeBytes": tp.source["sizeBytes"],
        "sizeFrom": tp.source["sizeFrom"],
        "bound": tp.estimate["bound"],
        "readBudget": tp.settings["readBudget"],
        "writeBudget": tp.settings["writeBudget"],
        "estimateSeconds": round(est, 2),
        "measuredSeconds": round(took, 2),
        "measuredOverEstimate": round(took / est, 2) if est else None,
    }
    print(
        f"{name:<6} {row['items']} items, bound by {row['bound']}: estimate {est:.1f} s, "
        f"measured {took:.1f} s (x{row['measuredOverEstimate']})",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--pad", type=int, default=1000, help="bytes of padding per item")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="plan-accuracy-"))
    moto = start_moto(work)
    dyn = start_dynalite(work)
    rows = []
    try:
        seed(moto.url, "readbound", args.items, args.pad)
        rows.append(
            measure(
                "read",
                config(
                    work / "read.yaml",
                    moto,
                    "readbound",
                    dyn,
                    "readbound",
                    source={
                        "readThroughput": 40,
                        "throughputReadPercent": 0.5,
                        "removeConsumedCapacity": True,
                    },
                ),
            )
        )
        seed(dyn.url, "writesrc", args.items, args.pad)
        rows.append(
            measure(
                "read2",
                config(
                    work / "read2.yaml",
                    dyn,
                    "writesrc",
                    dyn,
                    "readdst",
                    source={"readThroughput": 40, "throughputReadPercent": 0.5},
                ),
            )
        )
        rows.append(
            measure(
                "write",
                config(
                    work / "write.yaml",
                    dyn,
                    "writesrc",
                    dyn,
                    "writedst",
                    target={"writeThroughput": 300, "throughputWritePercent": 0.5},
                ),
            )
        )
    finally:
        moto.stop()
        dyn.stop()
    load_avg = os.getloadavg()
    report = {"rows": rows, "loadavg": [round(x, 2) for x in load_avg], "cpus": os.cpu_count()}
    print(f"load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
