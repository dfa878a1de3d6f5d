"""`plan`: read-only, through the CLI on the real servers, and its estimates as pure logic."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from alternator_migrator.localservers import Server
from alternator_migrator.pipeline import plan as P
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.state.savepoint import Savepoint

from ..helpers import batch_put, boto_client, create_table, local_config, write_config
from ..proxy import FaultProxy

# Everything plan may send: reads of tables, streams, tags, settings, and GET /localnodes.
READ_OPS = {
    "DescribeTable",
    "DescribeTimeToLive",
    "DescribeContinuousBackups",
    "DescribeKinesisStreamingDestination",
    "ListTagsOfResource",
    "DescribeStream",
    "DescribeStreamSummary",
    "Scan",
    "GET /localnodes",
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alternator_migrator", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def counting(
    proxy: FaultProxy, ops: Counter[str], rewrite: Callable[[str, bytes], bytes] | None = None
) -> None:
    def on_answer(op: str, path: str, body: bytes) -> bytes:
        ops[op or f"GET {path.split('?')[0]}"] += 1
        return rewrite(op, body) if rewrite else body

    proxy.on_answer = on_answer


def as_big_table(op: str, body: bytes) -> bytes:
    """Answers rewritten as a 10 TB, 3-billion-item table's would be."""
    if op not in ("DescribeTable", "Scan"):
        return body
    d = orjson.loads(body)
    if op == "DescribeTable":
        d["Table"].update(ItemCount=3_000_000_000, TableSizeBytes=10 * 10**12)
    elif d.get("Items"):  # a sample page, with more to come
        d["LastEvaluatedKey"] = {"pk": d["Items"][-1]["pk"]}
    else:
        return body
    return orjson.dumps(d)


def items(n: int, pad: int = 1000) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"k{i:05d}"}, "x": {"S": "v"}, "d": {"S": "a" * pad}} for i in range(n)]


def plan_config(tmp_path: Path, source_url: str, target_url: str, table: str, **kw: Any) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        source_url=source_url,
        source_table=table,
        target_url=target_url,
        target_table=kw.pop("target_table", table),
        savepoints=tmp_path / "sp",
        **kw,
    )


# --------------------------------------------------------------------------- on the servers


@pytest.mark.parametrize("target_exists", [False, True])
def test_plan_sends_only_reads_and_changes_nothing(
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
    target_exists: bool,
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(300))
    if target_exists:
        create_table(dst, table_name)
        arn = dst.describe_table(TableName=table_name)["Table"]["TableArn"]
        isolation = {"Key": "system:write_isolation", "Value": "forbid_rmw"}
        dst.tag_resource(ResourceArn=arn, Tags=[isolation])
    source_ops: Counter[str] = Counter()
    target_ops: Counter[str] = Counter()
    with FaultProxy(moto.url) as sp, FaultProxy(dynalite.url) as tp:
        counting(sp, source_ops)
        counting(tp, target_ops)
        sp.start()
        tp.start()
        cfg = plan_config(
            tmp_path,
            sp.url,
            tp.url,
            table_name,
            source_extra={"readThroughput": 100},
            # alternator: node discovery and the write-isolation tag are asked for too
            target_extra={"type": "alternator", "billingMode": "PROVISIONED"},
        )
        p = run_cli("plan", "--config", str(cfg))
    assert p.returncode == 0, p.stdout + p.stderr
    assert set(source_ops) <= READ_OPS and set(target_ops) <= READ_OPS, (source_ops, target_ops)
    assert source_ops["Scan"] >= 1  # the size came from a sample: moto reports no size
    if target_exists:
        assert target_ops["ListTagsOfResource"] == 1
        assert "isolation   forbid_rmw" in p.stdout
    assert target_ops["GET /localnodes"] >= 1
    # Nothing changed anywhere: no stream, no target table, no savepoint or lock file.
    desc = src.describe_table(TableName=table_name)["Table"]
    assert not (desc.get("StreamSpecification") or {}).get("StreamEnabled")
    assert (table_name in dst.list_tables()["TableNames"]) == target_exists
    assert not (tmp_path / "sp").exists()
    out = p.stdout
    assert "300" in out and "ESTIMATED from a sample" in out
    assert "will be created" in out or "exists, keys match" in out
    assert "Verdict: feasible" in out
    if not target_exists:
        assert "`target.billingMode`" not in out
    else:
        assert "`target.billingMode`: applies only to a target table the migration creates" in out


def test_plan_json_names_settings_estimate_and_cost(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(200))
    cfg = plan_config(
        tmp_path,
        moto.url,
        dynalite.url,
        table_name,
        source_extra={"readThroughput": 40, "scanSegments": 4, "streamingLeaseDurationMs": 1},
        target_extra={"writeThroughput": 1000, "maxItemsPerBatch": 20},
    )
    p = run_cli("plan", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    (t,) = d["tables"]
    assert d["feasible"] and t["feasible"]
    assert t["source"]["items"] == 200 and t["source"]["streamState"] == "none"
    assert t["settings"]["snapshot"].startswith("Scan, 4 segments")
    assert t["settings"]["readBudget"] == "20 RCU/s" and t["settings"]["writeBudget"] == "500 WCU/s"
    assert t["settings"]["batchItems"] == 20
    assert any("streamingLeaseDurationMs" in line for line in t["ignored"])
    # 200 items of ~1 KB: ~25 read units at 20 RCU/s, 200 write units at 500 WCU/s.
    assert t["estimate"]["bound"] == "the read budget"
    assert 0.8 < t["estimate"]["snapshotSeconds"] < 2.0
    assert t["cost"]["label"].startswith("ESTIMATE at us-east-1 list prices of")
    assert d["prices"]["asOf"]


def test_plan_refuses_a_foreign_stream_and_names_the_table(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    src.update_table(
        TableName=table_name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    cfg = plan_config(tmp_path, moto.url, dynalite.url, table_name)
    p = run_cli("plan", "--config", str(cfg))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "foreign" in p.stdout and "CANNOT RUN" in p.stdout
    assert f"NOT feasible as configured: {table_name}" in p.stdout
    # A snapshot-only copy does not use the stream: nothing stands in the way.
    cfg = plan_config(tmp_path, moto.url, dynalite.url, table_name, stream=False)
    p = run_cli("plan", "--config", str(cfg))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "foreign" in p.stdout and "CANNOT RUN" not in p.stdout


def test_plan_refuses_a_target_with_other_keys(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name, hash_key=("id", "N"))
    p = run_cli("plan", "--config", str(plan_config(tmp_path, moto.url, dynalite.url, table_name)))
    assert p.returncode == 1
    assert "exists, keys DIFFER" in p.stdout and "key schema" in p.stdout


def test_plan_flags_a_snapshot_longer_than_the_stream_retention(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    """A 10 TB table (DescribeTable and Scan rewritten as a large table answers) at 1,000 RCU/s."""
    create_table(src, table_name)
    batch_put(src, table_name, items(50, pad=3000))

    with FaultProxy(moto.url) as proxy:
        ops: Counter[str] = Counter()
        counting(proxy, ops, as_big_table)
        proxy.start()
        cfg = plan_config(
            tmp_path, proxy.url, dynalite.url, table_name, source_extra={"readThroughput": 2000}
        )
        p = run_cli("plan", "--config", str(cfg), "--json")
    assert p.returncode == 1, p.stdout
    (t,) = json.loads(p.stdout)["tables"]
    assert not t["feasible"]
    assert t["source"]["sizeBytes"] == 10 * 10**12
    # 10 TB / 4 KB x 0.5 = 1.22e9 read units at 1,000 RCU/s: about 14 days.
    assert t["estimate"]["bound"] == "the read budget"
    assert 13 * 86400 < t["estimate"]["snapshotSeconds"] < 15 * 86400
    assert "does NOT fit" in t["estimate"]["fit"]
    blocker = t["blockers"][0]
    assert "cannot finish inside the change source's 24 h retention" in blocker
    assert "RCU/s (`source.readThroughput:" in blocker and "snapshotFrom: export" in blocker
    assert "kinesis" in blocker
    assert set(ops) <= READ_OPS


def test_plan_bad_input_exits_2(moto: Server, dynalite: Server, tmp_path: Path) -> None:
    cfg = plan_config(tmp_path, moto.url, dynalite.url, "x", source_extra={"scanSegmnts": 3})
    p = run_cli("plan", "--config", str(cfg))
    assert p.returncode == 2 and "did you mean `scanSegments`" in p.stderr
    p = run_cli("plan", "--config", str(tmp_path / "missing.yaml"))
    assert p.returncode == 2


def test_plan_of_a_missing_source_table_names_it(
    moto: Server, dynalite: Server, table_name: str, tmp_path: Path
) -> None:
    p = run_cli("plan", "--config", str(plan_config(tmp_path, moto.url, dynalite.url, table_name)))
    assert p.returncode == 1
    assert f"source table {table_name!r} does not exist" in p.stdout


def test_migrate_opens_with_the_plan_line_and_plan_then_sees_our_stream(
    moto: Server,
    dynalite: Server,
    src: Any,
    table_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(40, pad=100))
    cfg = local_config(tmp_path, moto, dynalite, table_name)
    with caplog.at_level(logging.INFO, logger="alternator_migrator.pipeline.migrate"):
        result = migrate(cfg, show_progress=False, stop_when_caught_up=0.3, stream_poll_seconds=0.1)
    assert result.snapshot_complete
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Plan: ")]
    assert len(lines) == 1 and f"{table_name} -> {table_name}: 40 items" in lines[0], lines
    p = run_cli("plan", "--config", cfg.path, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    (t,) = json.loads(p.stdout)["tables"]
    assert t["source"]["streamState"] == "ours"  # resuming our own stream is allowed
    assert t["estimate"]["snapshotSeconds"] == 0 and t["estimate"]["text"] == "no snapshot to copy"
    assert t["estimate"]["fit"].startswith("nothing to copy")
    assert t["target"]["table"].startswith("exists, keys match")


# --------------------------------------------------------------------------- pure logic


def test_item_size_follows_dynamodb_sizing() -> None:
    assert P.item_size({"pk": {"S": "abc"}}) == 5
    assert P.item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 digits: 3 bytes + 1
    assert P.item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    assert P.item_size({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + 1 + 1 + 2
    assert P.item_size({"l": {"L": [{"S": "xy"}, {"N": "1"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)


def test_estimate_is_the_slower_budget() -> None:
    shape = P.Shape(items=2000, size_bytes=2000 * 1000, wcu_per_item=1.0)
    e = P.estimate(shape, read_rate=25, write_rate=20000)
    assert e.read_units == pytest.approx(2_000_000 / 4096 * 0.5)
    assert e.bound == "the read budget" and e.seconds == pytest.approx(e.read_units / 25)
    e = P.estimate(shape, read_rate=20000, write_rate=100)
    assert e.bound == "the write budget" and e.seconds == pytest.approx(20.0)
    half = P.estimate(shape, read_rate=25, write_rate=100, remaining=0.5)
    assert half.seconds == pytest.approx(10.0)
    # Item sizes just over 1 KB cost two write units each.
    assert P.write_units(P.Shape(items=10, size_bytes=10 * 1100)) == 20
    # An export reads nothing.
    assert P.estimate(shape, 25, 100, scan=False).read_units == 0


def test_stream_state_judged_as_ensure_stream_does() -> None:
    on = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}}
    on["LatestStreamArn"] = "arn:s1"
    sp = Savepoint(fingerprint="f", table="t")
    assert P.stream_state({}, None, None)[0] == "none"
    assert P.stream_state(on, None, None)[0] == "foreign"
    assert P.stream_state(on, sp, 100.0)[0] == "foreign"
    sp.stream_enabling = 99.0
    assert P.stream_state(on, sp, 100.0)[0] == "ours"  # an earlier run enabled it, then died
    sp.stream_enabling, sp.stream_arn = None, "arn:s1"
    assert P.stream_state(on, sp, None)[0] == "ours"
    assert P.stream_state({}, sp, None)[0] == "gone"
    sp.stream_arn = "arn:s0"
    assert P.stream_state(on, sp, None)[0] == "foreign"


def test_cost_of_an_on_demand_aws_source_uses_the_price_table(tmp_path: Path) -> None:
    from alternator_migrator.config import parse

    cfg = parse(
        {
            "source": {"type": "dynamodb", "table": "T", "region": "us-east-1"},
            "target": {
                "type": "alternator",
                "table": "T",
                "endpoint": {"host": "http://scylla", "port": 8000},
                "streamChanges": True,
            },
        }
    )
    tp = P.TablePlan("T", "T")
    shape = P.Shape(items=10**9, size_bytes=10**12, wcu_per_item=1.0)
    e = P.estimate(shape, read_rate=20000, write_rate=20000)
    src = {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}
    P._cost(tp, cfg, e, shape, 20000, src, None, 24.0)
    c = tp.cost
    reads = c["oneTime"]["scan reads (on-demand)"]
    assert reads == pytest.approx(10**12 / 4096 * 0.5 * 0.125 / 1e6, rel=1e-3)
    assert c["oneTime"]["data transfer out of AWS (if the target runs outside AWS)"] == 90.0
    assert "DynamoDB Streams reads (per shard)" in c["perDay"]
    assert c["label"].startswith("ESTIMATE")


def test_alternatives_give_numbers() -> None:
    from alternator_migrator.config import parse

    cfg = parse(
        {
            "source": {"type": "dynamodb", "table": "T", "region": "us-east-1"},
            "target": {"type": "dynamodb", "table": "U", "region": "us-east-1"},
        }
    )
    e = P.Estimate(1e9, 1e6, 1e6, 10.0, 1.0, 1e6, "the read budget")
    alts = P._alternatives(cfg, P.TablePlan("T", "U"), e, 43200.0, False)
    text = "; ".join(alts)
    assert "23,148 RCU/s" in text and "readThroughput: 46297" in text
    assert "snapshotFrom: export" in text and "556 h" in text


def test_plan_reads_the_kinesis_retention_and_suggests_a_longer_one(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(120, pad=3000))
    kinesis = boto_client(moto.url, "kinesis")
    kinesis.create_stream(StreamName=table_name, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=table_name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    changes = {"type": "kinesis", "streamArn": arn}
    with FaultProxy(moto.url) as proxy:
        ops: Counter[str] = Counter()
        counting(proxy, ops, as_big_table)
        proxy.start()
        cfg = plan_config(
            tmp_path,
            proxy.url,
            dynalite.url,
            table_name,
            source_extra={"readThroughput": 20000},
            target_extra={"streamChanges": changes},
        )
        p = run_cli("plan", "--config", str(cfg), "--json")
    assert set(ops) <= READ_OPS, ops
    (t,) = json.loads(p.stdout)["tables"]
    assert t["settings"]["kinesisRetentionHours"] == 24 and t["settings"]["kinesisShards"] == 2
    assert t["settings"]["changes"].startswith(f"Kinesis {arn}")
    assert p.returncode == 1 and "does NOT fit" in t["estimate"]["fit"]
    assert any("increase-stream-retention-period" in a for a in t["estimate"]["instead"])
    # A stream that does not exist is named.
    missing = {"type": "kinesis", "streamArn": arn.replace(table_name, table_name + "-gone")}
    cfg = plan_config(
        tmp_path, moto.url, dynalite.url, table_name, target_extra={"streamChanges": missing}
    )
    p = run_cli("plan", "--config", str(cfg))
    assert p.returncode == 1 and "does not exist" in p.stdout, p.stdout


def test_plan_of_an_export_snapshot_scans_nothing(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, items(20))
    ops: Counter[str] = Counter()
    with FaultProxy(moto.url) as proxy:
        counting(proxy, ops)
        proxy.start()
        cfg = plan_config(
            tmp_path,
            proxy.url,
            dynalite.url,
            table_name,
            source_extra={"snapshotFrom": "export", "exportBucket": "b", "scanSegments": 4},
        )
        p = run_cli("plan", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert ops["Scan"] == 0 and set(ops) <= READ_OPS, ops
    (t,) = json.loads(p.stdout)["tables"]
    assert t["settings"]["snapshot"].startswith("from an export")
    assert t["settings"]["readBudget"] == "none (no Scan)"
    assert any(
        line.startswith("`source.scanSegments`: the snapshot is loaded from an export")
        for line in t["ignored"]
    )


def test_plan_of_an_s3_export_source(dynalite: Server, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "source": {
                    "type": "dynamodb-s3-export",
                    "bucket": "b",
                    "manifestKey": "x/AWSDynamoDB/01/manifest-summary.json",
                    "region": "us-east-1",
                    "tableDescription": {
                        "attributeDefinitions": [{"name": "id", "type": "S"}],
                        "keySchema": [{"name": "id", "type": "HASH"}],
                    },
                },
                "target": {
                    "type": "dynamodb",
                    "table": "from-export",
                    "endpoint": {
                        "host": "http://127.0.0.1",
                        "port": int(dynalite.url.rsplit(":", 1)[1]),
                    },
                    "credentials": {"accessKey": "a", "secretKey": "b"},
                    "streamChanges": False,
                },
                "savepoints": {"path": str(tmp_path / "sp")},
            }
        )
    )
    p = run_cli("plan", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    (t,) = json.loads(p.stdout)["tables"]
    assert t["source"]["keys"] == "id (S, HASH)" and t["source"]["stream"].startswith("n/a")
    assert t["estimate"]["snapshotSeconds"] is None  # no table to size: said, not guessed


def _aws_cfg(**source: Any) -> Any:
    from alternator_migrator.config import parse

    return parse(
        {
            "source": {"type": "dynamodb", "table": "T", "region": "us-east-1", **source},
            "target": {
                "type": "alternator",
                "table": "T",
                "endpoint": {"host": "http://scylla", "port": 8000},
                "streamChanges": True,
            },
        }
    )


def test_a_snapshot_within_the_retention_but_not_twice_is_a_warning() -> None:
    tp = P.TablePlan("T", "T")
    e = P.Estimate(1.0, 1.0, 15 * 3600.0, 0.0, 0.0, 15 * 3600.0, "the read budget")
    P._fit(tp, _aws_cfg(), e, 24.0, True, 1.0, False)
    assert tp.estimate["fit"].startswith("tight") and not tp.blockers
    assert "leaves little margin" in tp.warnings[0]
    tp = P.TablePlan("T", "T")
    P._fit(tp, _aws_cfg(), e, 48.0, True, 1.0, False)  # a Kinesis stream keeping 48 h
    assert tp.estimate["fit"].startswith("fits") and not tp.warnings


def test_cost_of_an_export_snapshot_counts_the_export_and_pitr() -> None:
    cfg = _aws_cfg(snapshotFrom="export", exportBucket="b")
    tp = P.TablePlan("T", "T")
    tp.source["pitr"] = "DISABLED"
    shape = P.Shape(items=10**6, size_bytes=50 * 10**9, wcu_per_item=1.0)
    e = P.estimate(shape, None, 20000, scan=False)
    P._cost(tp, cfg, e, shape, None, {}, None, 24.0)
    c = tp.cost
    assert c["oneTime"]["export to S3"] == pytest.approx(5.0)
    assert "scan reads (on-demand)" not in c["oneTime"]
    assert c["perDay"]["point-in-time recovery (migrate enables it)"] == pytest.approx(
        50 * 0.2 / 30, rel=1e-3
    )
