"""Configs shaped like the Scylla Migrator's DynamoDB-to-Alternator test configs run unchanged.

Each test writes a config in that tool's shape (our own tables and values), runs our CLI (or the
library, where a test must write to the source while the replay runs) on moto -> dynalite, and
checks the target the way that tool's own tests do.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from alternator_migrator.config import load
from alternator_migrator.localservers import Server

from ..helpers import (
    BackgroundMigration,
    batch_put,
    by_key,
    create_table,
    eventually,
    read_savepoint,
    scan_all,
    table_diff,
)

THEIR_VALIDATION = {
    "compareTimestamps": True,
    "ttlToleranceMillis": 60000,
    "writetimeToleranceMillis": 1000,
    "failuresToFetch": 100,
    "floatingPointTolerance": 0.001,
    "timestampMsTolerance": 0,
    "copyMissingRows": False,
}


def _endpoint(server: Server) -> dict[str, Any]:
    host, port = server.url.rsplit(":", 1)
    return {"host": host, "port": int(port)}


def their_config(
    tmp: Path,
    moto: Server,
    dynalite: Server,
    table: str,
    *,
    name: str = "c.yaml",
    source: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    **top: Any,
) -> Path:
    """A config in the shape of their dynamodb-to-alternator-*.yaml files."""
    cfg: dict[str, Any] = {
        "source": {
            "type": "dynamodb",
            "table": table,
            "region": "us-east-1",  # moto keeps tables per region
            "endpoint": _endpoint(moto),
            "credentials": {"accessKey": "dummy", "secretKey": "dummy"},
            **(source or {}),
        },
        "target": {
            "type": "alternator",
            "table": table,
            "region": "dummy",
            "endpoint": _endpoint(dynalite),
            "credentials": {"accessKey": "dummy", "secretKey": "dummy"},
            "streamChanges": False,
            "removeConsumedCapacity": True,
            "billingMode": "PAY_PER_REQUEST",
            **(target or {}),
        },
        "savepoints": {"path": str(tmp / "savepoints"), "intervalSeconds": 300},
        "validation": dict(THEIR_VALIDATION),
        **top,
    }
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alternator_migrator", "--log-format", "text", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )


def ok(p: subprocess.CompletedProcess[str], code: int = 0) -> str:
    if p.returncode != code:
        print(p.stderr[-3000:])
    assert p.returncode == code, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr
    return p.stderr


def all_types(i: int) -> dict[str, Any]:
    return {
        "id": {"S": f"item-{i:03d}"},
        "sort": {"N": str(i % 7)},
        "str": {"S": "héllo ✓"},
        "num": {"N": "-12.5e3"},
        "bin": {"B": b"\x00\x01\xff"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"x", b"y"]},
        "map": {"M": {"nested": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}},
        "list": {"L": [{"S": "x"}, {"M": {}}]},
        "flag": {"BOOL": i % 2 == 0},
        "nothing": {"NULL": True},
    }


KEYS = ("id", "sort")


def keyed_table(src: Any, table: str, **kw: Any) -> None:
    create_table(src, table, hash_key=("id", "S"), range_key=("sort", "N"), **kw)


@pytest.mark.parametrize("billing", ["PAY_PER_REQUEST", "PROVISIONED"])
def test_basic_all_value_types_and_billing_mode(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    billing: str,
) -> None:
    keyed_table(src, table_name)
    batch_put(src, table_name, [all_types(i) for i in range(60)])
    cfg = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        target={"billingMode": billing},
        skipTokenRanges=[],  # a Cassandra key their DynamoDB configs carry
    )
    err = ok(cli("migrate", "--config", str(cfg)))
    assert table_diff(src, table_name, dst, table_name, KEYS) == []
    mode = dst.describe_table(TableName=table_name)["Table"].get("BillingModeSummary", {})
    assert mode.get("BillingMode", "PROVISIONED") == billing
    # One warning per ignored key (five in this config), each on its own line.
    warned = [ln for ln in err.splitlines() if "is accepted and ignored" in ln]
    assert len(warned) == 5 and any("`skipTokenRanges`" in w for w in warned), warned
    # status and validate read the same config through the same parser.
    ok(cli("validate", "--config", str(cfg)))
    ok(cli("status", "--config", str(cfg), "--no-stream"))


def test_renames(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name, hash_key=("id", "S"))
    batch_put(src, table_name, [{"id": {"S": f"k{i}"}, "foo": {"S": f"v{i}"}} for i in range(30)])
    cfg = their_config(
        tmp_path, moto, dynalite, table_name, renames=[{"from": "foo", "to": "quux"}]
    )
    ok(cli("migrate", "--config", str(cfg)))
    items = by_key(scan_all(dst, table_name), ("id",))
    assert len(items) == 30
    assert all("foo" not in i and i["quux"]["S"].startswith("v") for i in items.values())
    ok(cli("validate", "--config", str(cfg)))


def test_secondary_indexes(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    keyed_table(
        src,
        table_name,
        extra_attrs=[("g", "S"), ("l", "N")],
        gsis=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        lsis=[
            {
                "IndexName": "by-l",
                "KeySchema": [
                    {"AttributeName": "id", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    batch_put(
        src,
        table_name,
        [
            {"id": {"S": f"k{i}"}, "sort": {"N": "1"}, "g": {"S": f"g{i % 3}"}, "l": {"N": str(i)}}
            for i in range(20)
        ],
    )
    ok(cli("migrate", "--config", str(their_config(tmp_path, moto, dynalite, table_name))))
    desc = dst.describe_table(TableName=table_name)["Table"]
    assert [g["IndexName"] for g in desc.get("GlobalSecondaryIndexes", [])] == ["by-g"]
    assert [x["IndexName"] for x in desc.get("LocalSecondaryIndexes", [])] == ["by-l"]
    got = dst.query(
        TableName=table_name,
        IndexName="by-g",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "g1"}},
    )["Items"]
    assert len(got) == 7


def _segment_keys(src: Any, table: str, segment: int, total: int) -> set[str]:
    items: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"TableName": table, "Segment": segment, "TotalSegments": total}
    while True:
        r = src.scan(**kw)
        items += r["Items"]
        if "LastEvaluatedKey" not in r:
            return {i["id"]["S"] for i in items}
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def _last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_skipped_segments_in_two_parts(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    """Their part1/part2 test on one savepoint: part 1 skips segments 1 and 2 and says the
    snapshot is incomplete (last line, status, savepoint); part 2 skips segment 0, which part 1
    copied, copies what is left, and the target then equals the source."""
    create_table(src, table_name, hash_key=("id", "S"))
    batch_put(src, table_name, [{"id": {"S": f"k{i:03d}"}, "v": {"N": str(i)}} for i in range(150)])
    first = _segment_keys(src, table_name, 0, 3)
    assert 0 < len(first) < 150

    def target_keys() -> set[str]:
        return {i["id"]["S"] for i in scan_all(dst, table_name)}

    part1 = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        name="part1.yaml",
        source={"scanSegments": 3},
        skipSegments=[1, 2],
    )
    err = ok(cli("migrate", "--config", str(part1)))
    assert "Skipping segments 1, 2 (skipSegments)" in err
    assert "Done transferring table snapshot" not in err
    assert _last_line(err).endswith(
        "Snapshot incomplete: 2 of 3 segments never copied (1, 2; skipSegments skipped 1, 2): "
        "the target lacks their items. Remove them from skipSegments and run again to copy "
        "them (the savepoint keeps the segments already copied)"
    ), _last_line(err)
    assert target_keys() == first
    saved = read_savepoint(tmp_path / "savepoints")
    assert saved["snapshotDone"] is False and saved["segmentsDone"] == [0]
    status = cli("status", "--config", str(part1))
    ok(status)
    assert "Phase: snapshot" in status.stdout
    assert (
        status.stdout.strip()
        .splitlines()[-1]
        .startswith("Snapshot INCOMPLETE: segments 1, 2 never copied (skipSegments)")
    ), status.stdout
    ok(cli("validate", "--config", str(part1)), 1)  # their test: the validator fails here

    # Part 2: another skipSegments, the same savepoint.
    part2 = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        name="part2.yaml",
        source={"scanSegments": 3},
        skipSegments=[0],
    )
    err = ok(cli("migrate", "--config", str(part2)))
    assert "Resuming snapshot: 1 of 3 segments already done, 0 partially" in err
    assert "Skipping segments" not in err  # segment 0 is done: nothing is skipped
    assert _last_line(err).endswith("Done transferring table snapshot"), _last_line(err)
    assert len(target_keys()) == 150
    saved = read_savepoint(tmp_path / "savepoints")
    assert saved["snapshotDone"] is True and saved["segmentsDone"] == [0, 1, 2]
    status = cli("status", "--config", str(part2), "--json")
    ok(status)
    assert '"snapshotComplete": true' in status.stdout
    ok(cli("validate", "--config", str(part2)), 0)


def test_skipped_segments_with_streaming_replay_the_changes_but_never_say_complete(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    """As the Scylla Migrator does, a run whose skipSegments leave the snapshot incomplete
    goes on to replay the stream; it never prints the snapshot-done line, its last line says
    what is missing, and status never calls it caught up."""
    create_table(src, table_name, hash_key=("id", "S"))
    batch_put(src, table_name, [{"id": {"S": f"k{i:03d}"}, "v": {"N": str(i)}} for i in range(60)])
    first = _segment_keys(src, table_name, 0, 3)
    cfg = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        source={"scanSegments": 3},
        target={"streamChanges": True},
        skipSegments=[1, 2],
    )
    err = ok(cli("migrate", "--config", str(cfg), "--stop-when-caught-up", "1"))
    assert "Done transferring table snapshot" not in err
    assert "Starting to transfer changes (the snapshot is incomplete)" in err
    assert "Snapshot incomplete: 2 of 3 segments never copied" in _last_line(err), err[-2000:]
    assert {i["id"]["S"] for i in scan_all(dst, table_name)} == first
    saved = read_savepoint(tmp_path / "savepoints")
    assert saved["snapshotDone"] is False and saved["shards"]  # the replay ran
    status = cli("status", "--config", str(cfg))
    ok(status)
    assert "Phase: replay" in status.stdout
    assert "Snapshot INCOMPLETE: segments 1, 2 never copied" in status.stdout
    assert status.stdout.strip().splitlines()[-1].startswith("Caught up: no"), status.stdout

    # Copying what is left (no skipSegments) completes it; the replay resumes from its position.
    done = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        name="rest.yaml",
        source={"scanSegments": 3},
        target={"streamChanges": True},
    )
    err = ok(cli("migrate", "--config", str(done), "--stop-when-caught-up", "1"))
    assert "Done transferring table snapshot. Starting to transfer changes" in err
    assert "Snapshot incomplete" not in err
    ok(cli("validate", "--config", str(done)), 0)


def test_copy_missing_rows(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name, hash_key=("id", "S"))
    batch_put(src, table_name, [{"id": {"S": f"k{i:02d}"}, "v": {"N": str(i)}} for i in range(40)])
    cfg = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        validation={**THEIR_VALIDATION, "copyMissingRows": True},
    )
    err = ok(cli("migrate", "--config", str(cfg)))
    assert "copyMissingRows: 0 items the target lacked were copied (40 source items checked)" in err
    for i in range(5):
        dst.delete_item(TableName=table_name, Key={"id": {"S": f"k{i:02d}"}})
    dst.put_item(TableName=table_name, Item={"id": {"S": "k10"}, "v": {"N": "-1"}})  # differs
    dst.put_item(TableName=table_name, Item={"id": {"S": "extra"}})  # only in the target

    p = cli("validate", "--config", str(cfg))
    ok(p, 1)  # differences were found (and the missing ones copied)
    assert "Repaired: 5 items put, 0 target-only items deleted" in p.stdout, p.stdout
    after = {i["id"]["S"]: i for i in scan_all(dst, table_name)}
    assert {f"k{i:02d}" for i in range(5)} <= after.keys()  # copied back
    assert len(after) == 41  # 40 + the extra, which copyMissingRows never deletes
    assert after["k10"]["v"] == {"N": "-1"}  # never overwritten

    p = cli("validate", "--config", str(cfg))
    ok(p, 1)
    assert "Repaired: 0 items put" in p.stdout, p.stdout


# --------------------------------------------------------------------------- streams


def _ids(dst: Any, table: str) -> set[str]:
    try:
        return {i["id"]["S"] for i in scan_all(dst, table)}
    except dst.exceptions.ResourceNotFoundException:
        return set()  # the run has not created the target yet


def _wait_for(dst: Any, table: str, want: set[str], timeout: float = 60) -> None:
    eventually(
        lambda: _ids(dst, table) == want, timeout, message=f"target holds exactly {sorted(want)}"
    )


def test_ttl_expired_items_are_neither_copied_nor_replayed(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Their SkippedItemsTest: TTL on, an item that expired a day ago must not reach the target."""
    create_table(src, table_name, hash_key=("id", "S"))
    src.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "foo"},
    )
    now = int(time.time())
    day = 86400

    def item(key: str, expires: int | None) -> dict[str, Any]:
        it: dict[str, Any] = {"id": {"S": key}}
        if expires is not None:
            it["foo"] = {"N": str(expires)}
        return it

    batch_put(
        src,
        table_name,
        [item("live", now + day), item("expired", now - day), item("no-ttl", None)],
    )
    cfg = load(their_config(tmp_path, moto, dynalite, table_name, target={"streamChanges": True}))
    with caplog.at_level(logging.INFO):
        run = BackgroundMigration(cfg).start()
        try:
            _wait_for(dst, table_name, {"live", "no-ttl"})
            # Logged once the snapshot's writers are done, which can be after the items landed.
            eventually(
                lambda: any("Skipped 1 expired items" in r.getMessage() for r in caplog.records),
                60,
                0.1,
                "the skipped-items line",
            )
            # Through the stream: a new live item, a new expired one, a live one made expired.
            src.put_item(TableName=table_name, Item=item("live-2", now + day))
            src.put_item(TableName=table_name, Item=item("expired-2", now - 60))
            src.put_item(TableName=table_name, Item=item("live", now - 60))
            src.delete_item(TableName=table_name, Key={"id": {"S": "no-ttl"}})
            src.put_item(TableName=table_name, Item=item("marker", None))
            _wait_for(dst, table_name, {"live-2", "marker"})
        finally:
            run.finish()
    assert "expired" not in {i["id"]["S"] for i in scan_all(dst, table_name)}


def test_streamed_items_with_their_tuning_keys(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name, hash_key=("id", "S"))
    batch_put(src, table_name, [{"id": {"S": f"old{i}"}} for i in range(10)])
    cfg = load(
        their_config(
            tmp_path,
            moto,
            dynalite,
            table_name,
            source={
                "streamingPollIntervalSeconds": 1,
                "streamingMaxConsecutiveErrors": 3,
                "streamingPollingPoolSize": 2,
                "streamingMaxRecordsPerPoll": 7,
                "streamingMaxRecordsPerSecond": 400,
                "streamingLeaseDurationMs": 60000,
                "streamingEnableCloudWatchMetrics": False,
                "streamApiCallTimeoutSeconds": 30,
                "streamApiCallAttemptTimeoutSeconds": 10,
                "streamingPollFutureTimeoutSeconds": 60,
            },
            target={
                "streamChanges": {"type": "dynamodb-streams"},
                "maxMapTasks": 2,
                "alternator": {"maxItemsPerBatch": 10, "maxConnections": 4},
            },
        )
    )
    assert (
        cfg.target.max_items_per_batch == 10 and len(cfg.warnings) == 9
    )  # 5 stream + 4 validation
    run = BackgroundMigration(cfg).start()
    _wait_for(dst, table_name, {f"old{i}" for i in range(10)})
    for i in range(40):
        src.put_item(TableName=table_name, Item={"id": {"S": f"new{i}"}, "v": {"N": str(i)}})
    for i in range(5):
        src.delete_item(TableName=table_name, Key={"id": {"S": f"old{i}"}})
    _wait_for(dst, table_name, {f"new{i}" for i in range(40)} | {f"old{i}" for i in range(5, 10)})
    result = run.finish()
    assert result.replay is not None and result.replay.records >= 45
    assert table_diff(src, table_name, dst, table_name, ("id",)) == []


def test_skip_snapshot_replays_only_new_changes(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name, hash_key=("id", "S"))
    batch_put(src, table_name, [{"id": {"S": f"before{i}"}} for i in range(10)])
    cfg = load(
        their_config(
            tmp_path,
            moto,
            dynalite,
            table_name,
            target={"streamChanges": True, "skipInitialSnapshotTransfer": True},
        )
    )
    run = BackgroundMigration(cfg).start()
    # The stream is enabled once the run has described the source: then writes reach it.
    eventually(
        lambda: (
            src.describe_table(TableName=table_name)["Table"]
            .get("StreamSpecification", {})
            .get("StreamEnabled")
        ),
        message="stream enabled",
    )
    src.put_item(TableName=table_name, Item={"id": {"S": "after"}, "n": {"N": str(Decimal(1))}})
    _wait_for(dst, table_name, {"after"})
    run.finish()


# --------------------------------------------------------------------------- not supported yet


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("migrate", "s3://exports/AWSDynamoDB/01/manifest-summary.json does not exist"),
        ("validate", "validate against the table the export was made from"),
    ],
)
def test_s3_export_source_errors_are_one_line(
    tmp_path: Path, moto: Server, dynalite: Server, command: str, message: str
) -> None:
    """Loading exports is tested in tests/test_export.py; here, their config's errors."""
    cfg = their_config(
        tmp_path,
        moto,
        dynalite,
        "unused",
        source={
            "type": "dynamodb-s3-export",
            "bucket": "exports",
            "manifestKey": "AWSDynamoDB/01/manifest-summary.json",
            "usePathStyleAccess": True,
            "tableDescription": {
                "attributeDefinitions": [{"name": "id", "type": "S"}],
                "keySchema": [{"name": "id", "type": "HASH"}],
            },
        },
    )
    p = cli(command, "--config", str(cfg))
    ok(p, 2)
    errors = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and message in errors[0], p.stderr


def test_kinesis_initial_timestamp_refused_cleanly(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name, hash_key=("id", "S"))
    cfg = their_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        target={
            "streamChanges": {
                "type": "kinesis",
                "streamArn": "arn:aws:kinesis:us-east-1:111122223333:stream/x",
                "appName": "migrator_x",
                "initialTimestamp": "2024-01-01T00:00:00Z",
            }
        },
    )
    p = cli("migrate", "--config", str(cfg))
    ok(p, 2)
    assert "initialTimestamp` is not supported yet" in p.stderr
    # Nothing was touched: no stream enabled, no target created.
    assert not src.describe_table(TableName=table_name)["Table"].get("StreamSpecification")
    assert table_name not in dst.list_tables()["TableNames"]
