"""End to end on real servers: moto source (with Streams) -> dynalite target, while live."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.state.savepoint import SavepointStore

from ..helpers import (
    BackgroundMigration,
    batch_put,
    boto_client,
    create_table,
    eventually,
    local_config,
    table_diff,
    write_config,
)

KEYS = ("pk", "sk")
GSI = {
    "IndexName": "by-colour",
    "KeySchema": [
        {"AttributeName": "colour", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["size"]},
}
LSI = {
    "IndexName": "by-size",
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "size", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "KEYS_ONLY"},
}


def make_source(src: Any, table: str, n: int) -> None:
    create_table(
        src,
        table,
        range_key=("sk", "N"),
        gsis=[GSI],
        lsis=[LSI],
        extra_attrs=[("colour", "S"), ("size", "N")],
    )
    batch_put(
        src,
        table,
        [
            {
                "pk": {"S": f"user#{i % 500}"},
                "sk": {"N": str(i)},
                "colour": {"S": random.choice(["red", "green", "blue"])},
                "size": {"N": str(i % 13)},
                "payload": {"S": "x" * 200},
            }
            for i in range(n)
        ],
    )


def stream_records(url: str, src: Any, table: str) -> list[dict[str, Any]]:
    """Every record in the table's stream, read independently with boto3."""
    streams = boto_client(url, "dynamodbstreams")
    arn = src.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    out: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = streams.get_records(ShardIterator=it, Limit=1000)
            out.extend(r["Records"])
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


class Mutator:
    """Puts, UpdateItems and deletes from one thread (moto's sequence numbers need one writer)."""

    def __init__(self, src: Any, table: str, seed: int) -> None:
        self.src, self.table, self.rng = src, table, random.Random(seed)
        self.count = 0

    def step(self) -> None:
        i = self.rng.randrange(4000)
        key = {"pk": {"S": f"user#{i % 500}"}, "sk": {"N": str(i)}}
        r = self.rng.random()
        if r < 0.4:
            item = {
                **key,
                "colour": {"S": "violet"},
                "size": {"N": str(self.count)},
                "v": {"N": str(self.count)},
            }
            self.src.put_item(TableName=self.table, Item=item)
        elif r < 0.7:
            self.src.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET v = :v, tags = :t",
                ExpressionAttributeValues={
                    ":v": {"N": str(self.count)},
                    ":t": {"SS": ["a", str(self.count)]},
                },
            )
        else:
            self.src.delete_item(TableName=self.table, Key=key)
        self.count += 1


def test_live_migration_converges(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    make_source(src, table_name, 3000)
    cfg = local_config(
        tmp_path, moto, dynalite, table_name, source_extra={"scanSegments": 4, "maxMapTasks": 2}
    )
    store = SavepointStore(cfg)
    run = BackgroundMigration(cfg).start()
    mut = Mutator(src, table_name, seed=7)

    def snapshot_done() -> bool:
        run.check()
        sp = store.load()
        return sp is not None and sp.snapshot_done

    # During the snapshot ...
    while not snapshot_done():
        mut.step()
        assert mut.count < 5000, "snapshot did not finish"
    during = mut.count
    # ... and after it, while the replay runs.
    for _ in range(300):
        mut.step()

    eventually(
        lambda: not table_diff(src, table_name, dst, table_name, KEYS),
        timeout=120,
        message="target converges to source",
    )
    result = run.finish()
    assert during > 0, "no change was made during the snapshot"
    assert result.snapshot_complete and result.replay is not None
    assert result.replay.records >= 300  # every post-snapshot change came through the stream
    desc = dst.describe_table(TableName=table_name)["Table"]
    assert [g["IndexName"] for g in desc["GlobalSecondaryIndexes"]] == ["by-colour"]
    assert desc["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"] == ["size"]
    assert [li["IndexName"] for li in desc["LocalSecondaryIndexes"]] == ["by-size"]
    sp = store.load()
    assert sp is not None and sp.stream_arn == result.stream_arn
    assert all(p.sequence_number for p in sp.shards.values())


def test_cli_migration_logs_and_stops_when_caught_up(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    make_source(src, table_name, 500)
    cfg_path = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name + "-copy",
        savepoints=tmp_path / "sp",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alternator_migrator",
            "migrate",
            "--config",
            str(cfg_path),
            "--stop-when-caught-up",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    sp_file = tmp_path / "sp"

    def snapshot_done() -> bool:
        files = list(sp_file.glob("savepoint-*.json"))
        return bool(files) and orjson.loads(files[0].read_bytes())["snapshotDone"]

    eventually(snapshot_done, timeout=60, message="snapshot finished")
    mut = Mutator(src, table_name, seed=3)
    for _ in range(50):
        mut.step()
    out, err = proc.communicate(timeout=120)
    text_out, text_err = out.decode(), err.decode()
    assert proc.returncode == 0, text_err[-3000:]
    for line in (
        "Source is a Dynamo table and change streaming requested; enabling Dynamo Stream",
        "Stream enabled successfully",
        "Done transferring table snapshot. Starting to transfer changes",
    ):
        assert line in text_err
    assert text_err.index("Stream enabled successfully") < text_err.index(
        "Done transferring table snapshot"
    )
    assert "Caught up" in text_err
    rows = [ln for ln in text_out.splitlines() if ln.startswith("| ")]
    assert rows, text_out
    counted = sum(int(r.rsplit("|", 2)[1]) for r in rows)
    assert counted == len(stream_records(moto.url, src, table_name))  # each record counted once
    assert not table_diff(src, table_name, dst, table_name + "-copy", KEYS)
    saved = b"".join(p.read_bytes() for p in sp_file.iterdir())
    for secret in (b"source-secret-do-not-log", b"target-secret-do-not-log"):
        assert secret not in out and secret not in err and secret not in saved
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in sp_file.glob("savepoint-*.json"))


def test_ttl_is_copied_or_warned_about(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path, caplog: Any
) -> None:
    create_table(src, table_name)
    src.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    cfg = local_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        stream=False,
        target_extra={"billingMode": "PROVISIONED"},
    )
    caplog.set_level("INFO")
    assert migrate(cfg, show_progress=False).snapshot_complete
    # dynalite has no UpdateTimeToLive: a warning, not a crash.
    assert any(
        "Target does not support TTL" in r.getMessage() and "'expires'" in r.getMessage()
        for r in caplog.records
    )
    assert (
        dst.describe_table(TableName=table_name)["Table"]["ProvisionedThroughput"][
            "ReadCapacityUnits"
        ]
        >= 1
    )
