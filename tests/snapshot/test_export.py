"""Snapshots from a DynamoDB export to S3: a static export in AWS's layout, and the one-step
mode (stream, export, load, replay) on a live table. moto serves S3 and the export API."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from alternator_migrator.config import load
from alternator_migrator.errors import MigratorError
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.snapshot.export import ExportError, ExportMismatch
from alternator_migrator.snapshot.export_request import check_named_export
from alternator_migrator.state.savepoint import Origin, SavepointStore, SnapshotOrigin

from ..helpers import (
    BackgroundMigration,
    aws_export_answers,
    batch_put,
    boto_client,
    create_table,
    eventually,
    every_type_item,
    local_config,
    normalize,
    scan_all,
    table_diff,
    to_wire,
    write_aws_export,
)
from ..pipeline.test_faults import _kill9, _savepoint, _start_cli
from ..proxy import FaultProxy


def _bucket(s3: Any, name: str) -> str:
    bucket = name.lower()[:60]
    s3.create_bucket(Bucket=bucket)
    return bucket


def _export_config(
    path: Path,
    s3_url: str,
    bucket: str,
    manifest: str,
    target: Server,
    table: str,
    **target_extra: Any,
) -> Path:
    host, port = s3_url.rsplit(":", 1)
    cfg = {
        "source": {
            "type": "dynamodb-s3-export",
            "bucket": bucket,
            "manifestKey": manifest,
            "region": "us-east-1",
            "endpoint": {"host": host, "port": int(port)},
            "credentials": {"accessKey": "AKIDS3", "secretKey": "s3-secret-do-not-log"},
            "usePathStyleAccess": True,
            "tableDescription": {
                "attributeDefinitions": [{"name": "pk", "type": "S"}],
                "keySchema": [{"name": "pk", "type": "HASH"}],
                "billingMode": "PAY_PER_REQUEST",
            },
        },
        "target": {
            "type": "dynamodb",
            "table": table,
            "region": "us-east-1",
            "endpoint": {
                "host": target.url.rsplit(":", 1)[0],
                "port": int(target.url.rsplit(":", 1)[1]),
            },
            "credentials": {"accessKey": "AKIDT", "secretKey": "target-secret"},
            "streamChanges": False,
            **target_extra,
        },
        "savepoints": {"path": str(path.parent / "sp"), "intervalSeconds": 0.2},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _expected(files: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {it["pk"]["S"]: normalize(it) for f in files for it in f}


def _target(dst: Any, table: str) -> dict[str, Any]:
    return {it["pk"]["S"]: normalize(it) for it in scan_all(dst, table)}


def test_static_export_in_aws_layout_loads_every_item(
    moto: Server, dynalite: Server, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    files = [
        [every_type_item(f * 1000 + i) for i in range(n)] for f, n in enumerate([120, 0, 75, 301])
    ]
    manifest = write_aws_export(s3, bucket, "exports/daily", "01715685260608-c488b4e1", files)
    cfg = load(
        _export_config(tmp_path / "c.yaml", moto.url, bucket, manifest, dynalite, table_name)
    )

    result = migrate(cfg, show_progress=False)

    assert result.snapshot_complete and result.stream_arn is None
    assert _target(dst, table_name) == _expected(files)
    desc = dst.describe_table(TableName=table_name)["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    sp = SavepointStore(cfg).load()
    assert sp is not None and sp.snapshot_done and sp.segments_done == {0, 1, 2, 3}
    assert sp.snapshot_origin == SnapshotOrigin.export(
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/01715685260608-c488b4e1"
    )


def test_restart_after_kill9_skips_the_data_files_already_loaded(
    moto: Server, dynalite: Server, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    files = [[every_type_item(f * 1000 + i) for i in range(400)] for f in range(6)]
    manifest = write_aws_export(s3, bucket, "x", "01700000000000-deadbeef", files)
    with FaultProxy(moto.url) as proxy:
        proxy.start()
        cfg = _export_config(
            tmp_path / "c.yaml",
            proxy.url,
            bucket,
            manifest,
            dynalite,
            table_name,
            writeThroughput=1200,  # ~600 items/s: the load takes seconds, files one by one
        )
        spec = yaml.safe_load(cfg.read_text())
        spec["source"]["maxMapTasks"] = 1
        cfg.write_text(yaml.safe_dump(spec))
        p = _start_cli(cfg, tmp_path / "run1.log")
        try:
            eventually(
                lambda: len(_savepoint(tmp_path).get("segmentsDone", [])) >= 2,
                60,
                0.05,
                "two data files loaded",
            )
        finally:
            _kill9(p)
        done = set(_savepoint(tmp_path)["segmentsDone"])
        assert len(done) < 6, "killed too late to test a restart"

        gets: Counter[str] = Counter()

        def count(op: str, path: str, body: bytes) -> bytes:
            gets[path.split("?")[0].rsplit("/", 1)[-1]] += 1
            return body

        proxy.on_answer = count
        result = migrate(load(cfg), show_progress=False)

    assert result.snapshot_complete
    assert _target(dst, table_name) == _expected(files)
    for n in range(6):
        name = f"file{n:03d}.json.gz"
        assert gets[name] == (0 if n in done else 1), (name, done, gets)


def test_ion_export_is_refused_in_one_line_with_exit_2(
    moto: Server, dynalite: Server, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    manifest = write_aws_export(s3, bucket, "p", "01-ion", [[]], output_format="ION")
    cfg = _export_config(tmp_path / "c.yaml", moto.url, bucket, manifest, dynalite, table_name)
    log = tmp_path / "cli.log"
    assert _start_cli(cfg, log).wait(60) == 2
    lines = log.read_text().strip().splitlines()
    assert "ION format, which is not supported" in lines[-1], lines
    assert "Traceback" not in log.read_text()


def test_a_corrupt_data_file_line_is_named(
    moto: Server, dynalite: Server, table_name: str, tmp_path: Path
) -> None:
    import gzip

    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    manifest = write_aws_export(s3, bucket, "p", "01-bad", [[every_type_item(1)] * 3])
    key = manifest.replace("manifest-summary.json", "data/file000.json.gz")
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b'{"Item": {}}\n<ion/>\n'))
    cfg = load(
        _export_config(tmp_path / "c.yaml", moto.url, bucket, manifest, dynalite, table_name)
    )
    with pytest.raises(ExportError, match=re.escape(f"line 2 of s3://{bucket}/{key}")):
        migrate(cfg, show_progress=False)


def test_missing_manifest_names_the_keys_to_check(
    moto: Server, dynalite: Server, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    cfg = load(
        _export_config(
            tmp_path / "c.yaml",
            moto.url,
            bucket,
            "no/such/manifest-summary.json",
            dynalite,
            table_name,
        )
    )
    with pytest.raises(MigratorError, match=r"does not exist .*`source.manifestKey`"):
        migrate(cfg, show_progress=False)


def test_a_named_export_older_than_the_stream_is_refused() -> None:
    desc = {"ExportArn": "e", "TableArn": "t", "ExportTime": 100.0, "ExportFormat": "DYNAMODB_JSON"}
    check_named_export(desc, "t", 99.0)
    with pytest.raises(ExportError, match="before the stream was enabled"):
        check_named_export(desc, "t", 101.0)
    with pytest.raises(ExportError, match="not of"):
        check_named_export(desc, "other", 99.0)
    with pytest.raises(ExportError, match="cannot tell"):
        check_named_export({**desc, "ExportTime": None}, "t", 99.0)
    check_named_export(desc, "t", None, streamed=False)  # no stream to replay: any export
    with pytest.raises(ExportError, match="DYNAMODB_JSON"):
        check_named_export({**desc, "ExportFormat": "ION"}, "t", 99.0)


class _Writer:
    """Live puts, updates and deletes from one thread; ``gate`` pauses it while moto builds
    its export (moto's export walks the table without a lock; DynamoDB's does not care)."""

    def __init__(self, src: Any, table: str) -> None:
        self.src, self.table, self.rng = src, table, random.Random(5)
        self.count = 0
        self.gate = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.gate:
                i = self.rng.randrange(900)
                r = self.rng.random()
                if r < 0.5:
                    item = every_type_item(i)
                    item["v"] = {"N": str(self.count)}
                    self.src.put_item(TableName=self.table, Item=item)
                elif r < 0.8:
                    self.src.update_item(
                        TableName=self.table,
                        Key={"pk": {"S": f"item#{i}"}},
                        UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": str(self.count)}},
                    )
                else:
                    self.src.delete_item(TableName=self.table, Key={"pk": {"S": f"item#{i}"}})
                self.count += 1


def test_one_step_stream_export_load_replay_under_live_writes(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    create_table(src, table_name)
    batch_put(src, table_name, [every_type_item(i) for i in range(600)])
    writer = _Writer(src, table_name)
    ops: Counter[str] = Counter()
    as_aws = aws_export_answers(s3)
    marks: dict[str, int] = {}

    def on_answer(op: str, path: str, body: bytes) -> bytes:
        ops[op] += 1
        if op == "UpdateTable":
            marks["stream_enabled"] = writer.count
        if op == "DescribeContinuousBackups":
            # Changes between the stream's start and the export: replayed over the export.
            eventually(lambda: writer.count >= marks["stream_enabled"] + 20, 30, 0.01)
            writer.gate.acquire()
            marks["paused"] = 1
        body = as_aws(op, path, body)
        if op == "DescribeExport" and marks.pop("paused", 0):
            if orjson.loads(body)["ExportDescription"]["ExportStatus"] == "COMPLETED":
                writer.gate.release()
            else:
                marks["paused"] = 1
        return body

    with FaultProxy(moto.url) as proxy:
        proxy.on_answer = on_answer
        proxy.start()
        cfg = local_config(
            tmp_path,
            proxy,  # local_config only needs the source's url
            dynalite,
            table_name,
            source_extra={"snapshotFrom": "export", "exportBucket": bucket, "exportPrefix": "mig"},
        )
        store = SavepointStore(cfg)
        writer.thread.start()
        run = BackgroundMigration(cfg, stream_poll_seconds=0.1).start()
        try:
            eventually(lambda: (run.check(), (s := store.load()) and s.snapshot_done)[1], 60, 0.05)
            at_snapshot = writer.count
            eventually(lambda: writer.count >= at_snapshot + 150, 60, 0.01)
        finally:
            writer.stop.set()
            writer.thread.join(10)
        eventually(
            lambda: not table_diff(src, table_name, dst, table_name, ("pk",)),
            timeout=60,
            message="target converges to source",
        )
        result = run.finish()

    assert ops["Scan"] == 0, ops
    assert ops["ExportTableToPointInTime"] == 1 and ops["UpdateContinuousBackups"] == 1, ops
    assert result.snapshot_complete and result.replay is not None and result.replay.records > 150
    sp = store.load()
    assert sp is not None and sp.snapshot_origin.kind is Origin.EXPORT
    assert sp.snapshot_origin.ref.startswith("arn:aws:dynamodb:")


def test_stop_while_waiting_for_the_export_then_restart_resumes_the_same_export(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    create_table(src, table_name)
    batch_put(src, table_name, [every_type_item(i) for i in range(200)])
    ops: Counter[str] = Counter()
    as_aws = aws_export_answers(s3)
    hold = threading.Event()
    hold.set()

    def on_answer(op: str, path: str, body: bytes) -> bytes:
        ops[op] += 1
        if op == "DescribeExport" and hold.is_set():  # as a large export would: still going
            d = orjson.loads(body)
            d["ExportDescription"]["ExportStatus"] = "IN_PROGRESS"
            return orjson.dumps(d)
        return as_aws(op, path, body)

    with FaultProxy(moto.url) as proxy:
        proxy.on_answer = on_answer
        proxy.start()
        cfg = local_config(
            tmp_path,
            proxy,
            dynalite,
            table_name,
            source_extra={"snapshotFrom": "export", "exportBucket": bucket},
        )
        run = BackgroundMigration(cfg, stream_poll_seconds=0.1).start()
        eventually(lambda: (run.check(), ops["DescribeExport"] >= 2)[1], 30, 0.02)
        first = run.finish()
        assert first.stopped and not first.snapshot_complete
        sp = SavepointStore(cfg).load()
        assert sp is not None and sp.snapshot_origin.kind is Origin.EXPORT and not sp.snapshot_done

        hold.clear()
        second = migrate(cfg, show_progress=False, stop_when_caught_up=0.5, stream_poll_seconds=0.1)

    assert second.snapshot_complete
    assert ops["ExportTableToPointInTime"] == 1 and ops["Scan"] == 0, ops
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
    again = SavepointStore(cfg).load()
    assert again is not None and again.snapshot_origin == sp.snapshot_origin


S3_SOURCE: dict[str, Any] = {
    "type": "dynamodb-s3-export",
    "bucket": "b",
    "manifestKey": "p/AWSDynamoDB/01715685260608-c488b4e1/manifest-summary.json",
    "region": "eu-central-1",
    "endpoint": {"host": "http://s3", "port": 4566},
    "credentials": {"accessKey": "dummy", "secretKey": "dummy"},
    "usePathStyleAccess": True,
    "tableDescription": {
        "attributeDefinitions": [{"name": "id", "type": "S"}, {"name": "n", "type": "N"}],
        "keySchema": [{"name": "id", "type": "HASH"}, {"name": "n", "type": "RANGE"}],
        "billingMode": "PROVISIONED",
        "provisionedThroughput": {"readCapacityUnits": 25, "writeCapacityUnits": 20},
    },
}
TARGET = {"type": "alternator", "table": "T", "endpoint": {"host": "http://x", "port": 8000}}


def test_s3_export_source_reads_the_scylla_migrator_keys() -> None:
    from alternator_migrator.config import parse

    cfg = parse({"source": S3_SOURCE, "target": {**TARGET, "streamChanges": False}})
    e = cfg.source.s3_export
    assert e is not None and e.bucket == "b" and e.use_path_style_access
    assert cfg.source.table == "s3-export-01715685260608-c488b4e1"
    desc = e.table_description.describe("T")
    assert desc["KeySchema"] == [
        {"AttributeName": "id", "KeyType": "HASH"},
        {"AttributeName": "n", "KeyType": "RANGE"},
    ]
    assert desc["ProvisionedThroughput"] == {"ReadCapacityUnits": 25, "WriteCapacityUnits": 20}
    assert "dummy" not in repr(cfg)


def _with(section: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = orjson.loads(orjson.dumps(section))
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return out


LIVE = {"type": "dynamodb", "table": "a", "region": "r"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (_with(S3_SOURCE, "bucket", None), "`source.bucket` is missing"),
        (_with(S3_SOURCE, "tableDescription", None), "`source.tableDescription` is missing"),
        (
            _with(S3_SOURCE, "tableDescription.keySchema", [{"name": "x", "type": "HASH"}]),
            "names 'x', which is not in attributeDefinitions",
        ),
        (
            _with(
                S3_SOURCE, "tableDescription.attributeDefinitions", [{"name": "id", "type": "M"}]
            ),
            "attributeDefinitions[0].type` is 'M'",
        ),
        ({**LIVE, "snapshotFrom": "backup"}, "use `scan` or `export`"),
        ({**LIVE, "snapshotFrom": "export"}, "`source.exportBucket` is missing"),
        ({**LIVE, "exportBucket": "b"}, "add `snapshotFrom: export`"),
        (
            {**LIVE, "type": "alternator", "snapshotFrom": "export", "exportBucket": "b"},
            "Alternator has no export",
        ),
    ],
)
def test_bad_export_configs_name_the_key_and_the_fix(source: dict[str, Any], message: str) -> None:
    from alternator_migrator.config import parse
    from alternator_migrator.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        parse({"source": source, "target": TARGET})


def test_an_export_with_stream_changes_or_validate_is_refused(tmp_path: Path) -> None:
    from alternator_migrator.config import parse
    from alternator_migrator.errors import ConfigError
    from alternator_migrator.validate.validator import validate

    with pytest.raises(ConfigError, match="an S3 export has no stream") as e:
        migrate(parse({"source": S3_SOURCE, "target": {**TARGET, "streamChanges": True}}))
    assert e.value.exit_code == 2
    with pytest.raises(ConfigError, match="validate against the table the export was made from"):
        validate(parse({"source": S3_SOURCE, "target": TARGET}))


def test_a_failed_export_stops_the_run_and_the_next_run_requests_a_new_one(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    create_table(src, table_name)
    batch_put(src, table_name, [every_type_item(i) for i in range(50)])
    ops: Counter[str] = Counter()
    as_aws = aws_export_answers(s3)

    def on_answer(op: str, path: str, body: bytes) -> bytes:
        ops[op] += 1
        if op == "DescribeExport" and ops["ExportTableToPointInTime"] == 1:
            d = orjson.loads(body)
            d["ExportDescription"].update(
                ExportStatus="FAILED", FailureCode="S3NoSuchBucket", FailureMessage="gone"
            )
            return orjson.dumps(d)
        return as_aws(op, path, body)

    with FaultProxy(moto.url) as proxy:
        proxy.on_answer = on_answer
        proxy.start()
        cfg = local_config(
            tmp_path,
            proxy,
            dynalite,
            table_name,
            source_extra={"snapshotFrom": "export", "exportBucket": bucket},
        )
        with pytest.raises(ExportError, match=r"is FAILED .*S3NoSuchBucket: gone") as e:
            migrate(cfg, show_progress=False, stream_poll_seconds=0.1)
        assert e.value.exit_code == 2
        sp = SavepointStore(cfg).load()
        assert sp is not None and sp.snapshot_origin.kind is Origin.FAILED_EXPORT
        result = migrate(cfg, show_progress=False, stop_when_caught_up=0.5, stream_poll_seconds=0.1)

    assert result.snapshot_complete and ops["ExportTableToPointInTime"] == 2, ops
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []


def test_a_partly_loaded_data_file_resumes_after_its_last_acknowledged_line(
    moto: Server, table_name: str
) -> None:
    from alternator_migrator.snapshot.export import ExportSource, read_manifest

    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    items = [every_type_item(i) for i in range(25)]
    manifest = write_aws_export(s3, bucket, "p", "01-part", [items])
    source = ExportSource(s3, read_manifest(s3, bucket, manifest), page_items=10)
    stop = threading.Event()
    pages = list(source.pages(0, None, stop))
    assert [pos for _, pos in pages] == [10, 20, None]
    resumed = list(source.pages(0, 20, stop))
    assert [pos for _, pos in resumed] == [None]
    assert resumed[0][0] == [to_wire(i) for i in items[20:]]  # wire format, as in the file


def test_a_manifest_that_is_not_one_is_named(moto: Server, table_name: str) -> None:
    from alternator_migrator.snapshot.export import read_manifest

    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    s3.put_object(Bucket=bucket, Key="x/manifest-summary.json", Body=b"<html>not json</html>")
    with pytest.raises(ExportError, match="is not a DynamoDB export manifest") as e:
        read_manifest(s3, bucket, "x/manifest-summary.json")
    assert e.value.exit_code == 2


# The real AWS export in the Scylla Migrator's tests: one data file of three items, under
# dynamodb-export/AWSDynamoDB/01715685260608-c488b4e1/, its manifest-files.json line carrying
# itemCount 3 and md5Checksum (base64 MD5 of the gzipped object). Rebuilt here with items of
# our own (the layout and the rule are AWS's; the bytes are ours).
def _their_export(s3: Any, bucket: str) -> tuple[str, str, list[dict[str, Any]]]:
    items = [every_type_item(i) for i in range(3)]
    manifest = write_aws_export(s3, bucket, "dynamodb-export", "01715685260608-c488b4e1", [items])
    key = manifest.replace("manifest-summary.json", "data/file000.json.gz")
    return manifest, key, items


def _gz(items: list[dict[str, Any]], level: int = 9) -> bytes:
    import gzip

    body = b"".join(orjson.dumps({"Item": to_wire(it)}) + b"\n" for it in items)
    return gzip.compress(body, compresslevel=level, mtime=0)


def _files_line(s3: Any, bucket: str, manifest: str) -> dict[str, Any]:
    files = manifest.replace("manifest-summary.json", "manifest-files.json")
    line: dict[str, Any] = orjson.loads(s3.get_object(Bucket=bucket, Key=files)["Body"].read())
    return line


def test_a_data_file_short_of_its_manifest_stops_the_run_naming_it(
    moto: Server, dynalite: Server, dst: Any, table_name: str, tmp_path: Path
) -> None:
    """The issue's case: the data file replaced by a valid gzip lacking one of its three lines
    (a partial upload, a swapped object) loaded 2 items and exited 0."""
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    manifest, key, items = _their_export(s3, bucket)
    expected_md5 = _files_line(s3, bucket, manifest)["md5Checksum"]
    s3.put_object(Bucket=bucket, Key=key, Body=_gz(items[:2]))
    cfg = _export_config(tmp_path / "c.yaml", moto.url, bucket, manifest, dynalite, table_name)
    log = tmp_path / "cli.log"

    assert _start_cli(cfg, log).wait(60) == 1

    last = log.read_text().strip().splitlines()[-1]
    assert f"data file s3://{bucket}/{key} does not match manifest-files.json" in last, last
    assert "2 items, the manifest says 3" in last, last
    assert f"the manifest says {expected_md5}" in last, last
    assert "Traceback" not in log.read_text()
    sp = _savepoint(tmp_path)
    assert not sp.get("snapshotDone") and 0 not in sp.get("segmentsDone", []), sp


def test_a_data_file_with_another_md5_stops_the_run_naming_both(
    moto: Server, dynalite: Server, table_name: str, tmp_path: Path
) -> None:
    import base64
    import hashlib

    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    manifest, key, items = _their_export(s3, bucket)
    # The same three items, other bytes: the count matches, only the checksum can tell.
    other = _gz([items[0], items[2], items[1]], level=1)
    s3.put_object(Bucket=bucket, Key=key, Body=other)
    found = base64.b64encode(hashlib.md5(other).digest()).decode()
    expected = _files_line(s3, bucket, manifest)["md5Checksum"]
    assert found != expected
    cfg = load(
        _export_config(tmp_path / "c.yaml", moto.url, bucket, manifest, dynalite, table_name)
    )

    with pytest.raises(ExportMismatch) as e:
        migrate(cfg, show_progress=False)

    assert e.value.exit_code == 1
    msg = str(e.value)
    assert f"data file s3://{bucket}/{key} does not match" in msg, msg
    assert "items, the manifest says" not in msg, msg  # the count was right
    assert f"MD5 {found} of its {len(other)} bytes, the manifest says {expected}" in msg, msg
    sp = SavepointStore(cfg).load()
    assert sp is not None and not sp.snapshot_done and 0 not in sp.segments_done


def test_their_export_layout_with_checksums_loads(
    moto: Server, dynalite: Server, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    manifest, _, items = _their_export(s3, bucket)
    line = _files_line(s3, bucket, manifest)
    assert line["itemCount"] == 3 and len(base64_digest := line["md5Checksum"]) == 24
    assert base64_digest.endswith("==")
    cfg = load(
        _export_config(tmp_path / "c.yaml", moto.url, bucket, manifest, dynalite, table_name)
    )

    assert migrate(cfg, show_progress=False).snapshot_complete
    assert _target(dst, table_name) == _expected([items])


def test_a_file_resumed_mid_way_is_still_checked_whole(moto: Server, table_name: str) -> None:
    """The savepoint holds the last acknowledged line; the resumed read starts again at the
    first byte (one GET), hands out only the lines after it, and checks the whole file."""
    from alternator_migrator.snapshot.export import ExportSource, read_manifest

    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    items = [every_type_item(i) for i in range(25)]
    manifest = write_aws_export(s3, bucket, "p", "01-resume", [items])
    key = manifest.replace("manifest-summary.json", "data/file000.json.gz")
    source = ExportSource(s3, read_manifest(s3, bucket, manifest), page_items=10)
    stop = threading.Event()
    resumed = list(source.pages(0, 20, stop))
    assert [pos for _, pos in resumed] == [None]
    assert resumed[0][0] == [to_wire(i) for i in items[20:]]

    # One of the lines already loaded before the stop is gone: the file is short, the
    # resumed read still sees it although it hands out none of those lines.
    s3.put_object(Bucket=bucket, Key=key, Body=_gz(items[1:]))
    pages = source.pages(0, 20, stop)
    with pytest.raises(ExportMismatch, match="24 items, the manifest says 25"):
        list(pages)


def test_one_step_mode_checks_the_data_files_against_their_manifest(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    create_table(src, table_name)
    batch_put(src, table_name, [every_type_item(i) for i in range(60)])
    as_aws = aws_export_answers(s3)
    tampered: list[str] = []

    def on_answer(op: str, path: str, body: bytes) -> bytes:
        body = as_aws(op, path, body)
        if op != "DescribeExport":
            return body
        manifest = orjson.loads(body)["ExportDescription"].get("ExportManifest")
        if manifest:
            # manifest-files.json says one item more than each data file holds.
            key = manifest.replace("manifest-summary.json", "manifest-files.json")
            lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
            entries = [orjson.loads(x) for x in lines if x.strip()]
            for e in entries:
                e["itemCount"] += 1
                tampered.append(e["dataFileS3Key"])
            s3.put_object(Bucket=bucket, Key=key, Body=b"\n".join(map(orjson.dumps, entries)))
        return body

    with FaultProxy(moto.url) as proxy:
        proxy.on_answer = on_answer
        proxy.start()
        cfg = local_config(
            tmp_path,
            proxy,
            dynalite,
            table_name,
            source_extra={"snapshotFrom": "export", "exportBucket": bucket},
        )
        with pytest.raises(ExportMismatch, match="items, the manifest says") as e:
            migrate(cfg, show_progress=False, stream_poll_seconds=0.1)

    assert e.value.exit_code == 1 and tampered
    assert any(f"s3://{bucket}/{k} does not match" in str(e.value) for k in tampered), e.value
    sp = SavepointStore(cfg).load()
    assert sp is not None and not sp.snapshot_done and not sp.segments_done


def test_one_step_mode_skips_only_what_dynamodb_ttl_deletes(
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The live table's TTL attribute applies to the export's items, by DynamoDB's rule."""
    s3 = boto_client(moto.url, "s3")
    bucket = _bucket(s3, table_name)
    create_table(src, table_name)
    src.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    now, day = int(time.time()), 86400
    ttl = {"yesterday": now - day, "zero": 0, "tomorrow": now + day, "ms": now * 1000}
    batch_put(src, table_name, [{"pk": {"S": k}, "exp": {"N": str(v)}} for k, v in ttl.items()])
    with FaultProxy(moto.url) as proxy:
        proxy.on_answer = aws_export_answers(s3)
        proxy.start()
        cfg = local_config(
            tmp_path,
            proxy,
            dynalite,
            table_name,
            stream=False,
            source_extra={"snapshotFrom": "export", "exportBucket": bucket},
        )
        with caplog.at_level(logging.INFO, logger="alternator_migrator"):
            assert migrate(cfg, show_progress=False).snapshot_complete

    assert set(_target(dst, table_name)) == {"zero", "tomorrow", "ms"}
    assert any(
        "Skipped 1 expired items" in r.getMessage() and "copied 2 items" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
