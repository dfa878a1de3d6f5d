"""Snapshot from an S3 export against the Scan snapshot: items/s of the migrator's CLI, same
items, same target (a fresh dynalite each run).

- scan: N x 1 KB items in a dynalite table -> dynalite (the path bench/run.py measures);
- export: the same N items as a DynamoDB export in AWS's layout (gzipped data files of
  ``{"Item": ...}`` lines in the table's hashed key order, manifests) in moto's S3 ->
  dynalite, ``type: dynamodb-s3-export``.

Items/s are end to end (process start to exit), the best of ``--repeat`` runs each. Writes
.bench/export.json. Numbers only; nothing asserts.

    .venv/bin/python bench/export_snapshot.py [--items 50000] [--files 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import boto3
import orjson
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

from loader import RAISED, count, create_table, lean_client, load  # noqa: E402
from run import ROOT, TABLE, Meter, machine, migrator_cmd, run_child, say, write_config  # noqa: E402

from alternator_migrator.localservers import Server, start_dynalite, start_moto  # noqa: E402

WORK = ROOT / ".bench" / "export"
OUT = ROOT / ".bench" / "export.json"
BUCKET = "bench-exports"


def write_export(s3: Any, source: Server, items: int, files: int) -> str:
    """The source table as an export in AWS's documented layout, items in the order a Scan
    returns them: like AWS's files, each holds a run of the table's hashed key space (and
    the target then sees the same write order as from the Scan). Returns the summary key."""
    client = lean_client(source.url)
    base = "bench/AWSDynamoDB/01700000000000-bench"
    per = -(-items // files)
    entries: list[dict[str, Any]] = []
    buf: list[bytes] = []

    def flush() -> None:
        key = f"{base}/data/{len(entries):04d}.json.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b"".join(buf), 6))
        entries.append({"itemCount": len(buf), "dataFileS3Key": key})
        buf.clear()

    req: dict[str, Any] = {"TableName": TABLE}
    while True:
        page = client.call("Scan", req)
        for it in page.get("Items", []):
            buf.append(orjson.dumps({"Item": it}) + b"\n")
            if len(buf) >= per:
                flush()
        if "LastEvaluatedKey" not in page:
            break
        req["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    if buf:
        flush()
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{base}/manifest-files.json",
        Body=b"".join(orjson.dumps(e) + b"\n" for e in entries),
    )
    summary = {
        "version": "2020-06-30",
        "manifestFilesS3Key": f"{base}/manifest-files.json",
        "itemCount": sum(e["itemCount"] for e in entries),
        "outputFormat": "DYNAMODB_JSON",
    }
    s3.put_object(Bucket=BUCKET, Key=f"{base}/manifest-summary.json", Body=orjson.dumps(summary))
    return f"{base}/manifest-summary.json"


def export_config(path: Path, moto: Server, target: Server, manifest: str) -> Path:
    sp = path.parent / "savepoints-export"
    shutil.rmtree(sp, ignore_errors=True)
    cfg = {
        "source": {
            "type": "dynamodb-s3-export",
            "bucket": BUCKET,
            "manifestKey": manifest,
            "region": "us-east-1",
            "endpoint": {"host": "http://127.0.0.1", "port": moto.port},
            "credentials": {"accessKey": "bench", "secretKey": "bench"},
            "usePathStyleAccess": True,
            "tableDescription": {
                "attributeDefinitions": [{"name": "pk", "type": "S"}],
                "keySchema": [{"name": "pk", "type": "HASH"}],
                "billingMode": "PAY_PER_REQUEST",
            },
        },
        "target": {
            "type": "dynamodb",
            "table": TABLE,
            "region": "us-east-1",
            "endpoint": {"host": "http://127.0.0.1", "port": target.port},
            "credentials": {"accessKey": "bench", "secretKey": "bench"},
            "streamChanges": False,
            **RAISED,  # as the Scan's run (loader.RAISED says why)
        },
        "savepoints": {"path": str(sp), "intervalSeconds": 5},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def one_run(kind: str, items: int, source: Server, moto: Server, manifest: str) -> dict[str, Any]:
    target = start_dynalite(WORK / "logs")
    try:
        create_table(target.url, TABLE)
        if kind == "scan":
            cfg = write_config(
                WORK / "scan.yaml", source, target, WORK / "savepoints-scan", target_extra=RAISED
            )
        else:
            cfg = export_config(WORK / "export.yaml", moto, target, manifest)
        meter = Meter({"source": source if kind == "scan" else moto, "target": target}).start()
        child = run_child([*migrator_cmd(cfg), "--no-progress"], WORK / f"{kind}.log")
        meter.stop()
        copied = count(target.url, TABLE)
    finally:
        target.stop()
    return {
        "kind": kind,
        "exit_code": child.rc,
        "copied": copied,
        "seconds": child.wall,
        "items_per_s": copied / child.wall,
        "client_cpu_us_per_item": child.cpu / max(1, copied) * 1e6,
        "peak_rss_mib": child.maxrss_mib,
        "source_cpu_s": meter.cpu["source"],  # dynalite (scan) or moto's S3 (export)
        "target_cpu_s": meter.cpu["target"],
        "machine_busy_cores": meter.busy / meter.wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--files", type=int, default=8, help="data files in the export")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path, default=OUT, help=f"where the figures go ({OUT})")
    a = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    before = machine()  # the load before the run, as bench/run.py reports it
    source = start_dynalite(WORK / "logs")
    moto = start_moto(WORK / "logs")
    try:
        say(f"loading {a.items:,} items into the Scan source and the S3 export")
        create_table(source.url, TABLE)
        load(source.url, TABLE, 0, a.items)
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket=BUCKET)
        manifest = write_export(s3, source, a.items, a.files)
        runs = []
        for r in range(a.repeat):
            for kind in ("scan", "export"):
                res = one_run(kind, a.items, source, moto, manifest)
                say(
                    f"{kind} run {r + 1}: {res['items_per_s']:,.0f} items/s, "
                    f"{res['client_cpu_us_per_item']:.0f} us CPU/item, "
                    f"{res['peak_rss_mib']:.0f} MiB, source CPU {res['source_cpu_s']:.1f}s, "
                    f"target CPU {res['target_cpu_s']:.1f}s, exit {res['exit_code']}, "
                    f"copied {res['copied']:,}"
                )
                runs.append(res)
    finally:
        source.stop()
        moto.stop()
    best = {
        k: max((x for x in runs if x["kind"] == k), key=lambda x: x["items_per_s"])
        for k in ("scan", "export")
    }
    a.json.write_text(
        json.dumps(
            {"items": a.items, "files": a.files, "machine": before, "runs": runs, "best": best},
            indent=2,
        )
    )
    print("\n| snapshot from | items/s | client CPU us/item | peak RSS MiB |\n|---|---|---|---|")
    for k in ("scan", "export"):
        b = best[k]
        print(
            f"| {k} | {b['items_per_s']:,.0f} | {b['client_cpu_us_per_item']:.0f} | "
            f"{b['peak_rss_mib']:.0f} |"
        )
    print(f"results: {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
