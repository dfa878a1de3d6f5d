"""Many tables in one run (pipeline/estate.py): the table list, the check before any write, and
live migrations of three tables through the CLI on the real servers."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from alternator_migrator.config import parse
from alternator_migrator.errors import ConfigError
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.tables import discover, table_configs

from ..helpers import (
    batch_put,
    cli_process,
    create_table,
    eventually,
    start_cli,
    table_diff,
    write_config,
)

CREDS = {"accessKey": "AKIDTEST", "secretKey": "test-secret"}
BASE: dict[str, Any] = {
    "source": {"type": "dynamodb", "region": "us-east-1", "credentials": CREDS},
    "target": {"type": "dynamodb", "region": "us-east-1", "streamChanges": True},
}


def _cfg(**top: Any) -> Any:
    data = json.loads(json.dumps(BASE))
    for k, v in top.items():
        if k in ("source", "target"):
            data[k].update(v)
        else:
            data[k] = v
    return parse(data, "estate.yaml")


# --------------------------------------------------------------------------- config, no servers


def test_tables_list_gives_one_config_per_table_with_its_overrides() -> None:
    cfg = _cfg(
        tables=[
            "orders",
            {
                "source": "users",
                "target": "users_v2",
                "renames": [{"from": "a", "to": "b"}],
                "scanSegments": 3,
                "skipSegments": [1],
                "streamChanges": False,
                "readThroughput": 100,
                "writeThroughput": 200,
            },
        ],
        renames=[{"from": "x", "to": "y"}],
        source={"scanSegments": 8, "readThroughput": 1000},
        target={"writeThroughput": 5000, "totalWriteThroughput": 6000},
        maxTablesInParallel=3,
    )
    assert cfg.many_tables and cfg.max_tables_in_parallel == 3
    assert cfg.target.total_write_throughput == 6000
    orders, users = table_configs(cfg)
    assert (orders.source.table, orders.target.table) == ("orders", "orders")
    assert orders.source.scan_segments == 8 and orders.target.write_throughput == 5000
    assert orders.rename_map() == {"x": "y"} and orders.target.stream_changes is True
    assert (users.source.table, users.target.table) == ("users", "users_v2")
    assert users.source.scan_segments == 3 and users.skip_segments == (1,)
    assert users.rename_map() == {"a": "b"} and users.target.stream_changes is False
    assert (users.source.read_throughput, users.target.write_throughput) == (100, 200)
    # Each table's savepoint is the one a single-table config of that table would use.
    single = _cfg(source={"table": "users", "scanSegments": 8}, target={"table": "users_v2"})
    assert users.fingerprint() == single.fingerprint() != orders.fingerprint()
    assert not users.many_tables


@pytest.mark.parametrize(
    "top, message",
    [
        ({"tables": []}, "`tables` must be a non-empty list"),
        ({"tables": ["a", "a"]}, "names source table 'a' twice"),
        ({"tables": ["a", {"source": "b", "target": "a"}]}, "names target table 'a' twice"),
        ({"tables": ["a"], "source": {"table": "a"}}, "`source.table` is given with a list"),
        ({"tables": [{"target": "x"}]}, "`tables[0].source` is missing"),
        ({"tables": [{"source": "a", "scanSegment": 2}]}, "did you mean `scanSegments`"),
        ({"tables": [{"source": "a", "readThroughput": 0}]}, "tables[0].readThroughput` is 0"),
        ({"source": {"tablesTagged": {}}}, "`source.tablesTagged` is empty"),
        ({"maxTablesInParallel": 0, "tables": ["a"]}, "`maxTablesInParallel` is 0"),
    ],
)
def test_bad_table_lists_name_the_key(top: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _cfg(**top)


def test_a_single_table_config_is_unchanged() -> None:
    cfg = _cfg(source={"table": "t"}, target={"table": "t"})
    assert not cfg.many_tables and table_configs(cfg) == [cfg]
    with pytest.raises(ConfigError, match=r"`source\.table` is missing"):
        _cfg()


# --------------------------------------------------------------------------- discovery (moto)


def _client(server: Server) -> Any:
    from alternator_migrator.aws.client import source_client

    cfg = _cfg(
        source={
            "table": "x",
            "endpoint": {
                "host": server.url.rsplit(":", 1)[0],
                "port": int(server.url.rsplit(":", 1)[1]),
            },
        },
        target={"table": "x"},
    )
    return source_client(cfg.source)


def test_discovery_by_glob_and_by_tag_picks_exactly_the_right_tables(
    moto: Server, src: Any, table_name: str
) -> None:
    p = table_name[:30]
    names = [f"{p}-orders-eu", f"{p}-orders-us", f"{p}-users", f"{p}-ordersx"]
    for n in names:
        create_table(src, n)
    arn = {n: src.describe_table(TableName=n)["Table"]["TableArn"] for n in names}
    src.tag_resource(ResourceArn=arn[names[0]], Tags=[{"Key": "team", "Value": "payments"}])
    src.tag_resource(
        ResourceArn=arn[names[2]],
        Tags=[{"Key": "team", "Value": "payments"}, {"Key": "env", "Value": "prod"}],
    )
    src.tag_resource(ResourceArn=arn[names[1]], Tags=[{"Key": "team", "Value": "search"}])
    with _client(moto) as client:
        glob = _cfg(source={"tablesMatching": f"{p}-orders-*"})
        assert [e.source for e in discover(glob, client)] == names[:2]
        tagged = _cfg(source={"tablesTagged": {"team": "payments"}})
        assert [e.source for e in discover(tagged, client) if e.source.startswith(p)] == [
            names[0],
            names[2],
        ]
        both = _cfg(
            source={"tablesMatching": f"{p}-*", "tablesTagged": {"team": "payments", "env": "prod"}}
        )
        assert [e.source for e in discover(both, client)] == [names[2]]
        none = _cfg(source={"tablesMatching": f"{p}-nothing-*"})
        with pytest.raises(ConfigError, match="no source table matches"):
            table_configs(none, client)


# --------------------------------------------------------------------------- live, through the CLI


def _estate_config(
    tmp: Path, moto: Server, dynalite: Server, tables: list[Any], **top: Any
) -> Path:
    path = write_config(
        tmp / "estate.yaml",
        source_url=moto.url,
        source_table="unused",
        target_url=dynalite.url,
        target_table="unused",
        savepoints=tmp / "sp",
        source_extra={"scanSegments": 4},
        top_extra={"savepoints": {"path": str(tmp / "sp"), "intervalSeconds": 0.3}, **top},
    )
    data = yaml.safe_load(path.read_text())
    del data["source"]["table"], data["target"]["table"]
    data["tables"] = tables
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _three_tables(src: Any, base: str) -> dict[str, tuple[str, ...]]:
    """Three source tables with different key schemas (one with a GSI); their key names."""
    a, b, c = f"{base}-a", f"{base}-b", f"{base}-c"
    create_table(src, a)
    create_table(src, b, hash_key=("user", "S"), range_key=("ts", "N"))
    create_table(
        src,
        c,
        hash_key=("id", "N"),
        extra_attrs=[("city", "S")],
        gsis=[
            {
                "IndexName": "by-city",
                "KeySchema": [{"AttributeName": "city", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    batch_put(src, a, [{"pk": {"S": f"k{i}"}, "v": {"S": "x" * 300}} for i in range(600)])
    batch_put(
        src,
        b,
        [
            {"user": {"S": f"u{i % 50}"}, "ts": {"N": str(i)}, "v": {"N": str(i)}}
            for i in range(600)
        ],
    )
    batch_put(src, c, [{"id": {"N": str(i)}, "city": {"S": f"c{i % 7}"}} for i in range(600)])
    return {a: ("pk",), b: ("user", "ts"), c: ("id",)}


def _mutate(src: Any, keys: dict[str, tuple[str, ...]], rng: random.Random, n: int) -> None:
    """Puts and deletes on all three tables from one thread (moto's stream wants one writer)."""
    a, b, c = keys
    for i in range(n):
        t = rng.choice([a, b, c])
        j = rng.randrange(700)
        if t == a:
            key = {"pk": {"S": f"k{j}"}}
            item = {**key, "v": {"S": f"live{i}"}}
        elif t == b:
            key = {"user": {"S": f"u{j % 50}"}, "ts": {"N": str(j)}}
            item = {**key, "v": {"N": str(-i)}}
        else:
            key = {"id": {"N": str(j)}}
            item = {**key, "city": {"S": f"c{i % 3}"}}
        if rng.random() < 0.2:
            src.delete_item(TableName=t, Key=key)
        else:
            src.put_item(TableName=t, Item=item)


def _status(cfg: Path) -> str:
    p = cli_process("status", "--config", str(cfg))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return out


def test_three_tables_live_in_one_run_with_kill9_resume_status_and_validate(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    keys = _three_tables(src, table_name[:40])
    a, b, c = keys
    renamed_c = f"{c}-renamed"
    cfg = _estate_config(
        tmp_path,
        moto,
        dynalite,
        [a, {"source": b, "target": b, "scanSegments": 2}, {"source": c, "target": renamed_c}],
        maxTablesInParallel=2,
    )
    data = yaml.safe_load(cfg.read_text())
    data["target"]["writeThroughput"] = 400  # the copy takes a few seconds: room for a kill
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))

    before = _status(cfg)
    assert before.count(": not started,") == 3 and "Total: 3 tables (3 not started)" in before

    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    p = start_cli(["migrate", "--config", str(cfg), "--no-progress"], log1)
    try:
        eventually(
            lambda: any(
                json.loads(f.read_bytes()).get("segmentsDone")
                for f in (tmp_path / "sp").glob("savepoint-*.json")
            ),
            90,
            0.05,
            "some snapshot progress saved",
        )
    finally:
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
    saved = [json.loads(f.read_bytes()) for f in (tmp_path / "sp").glob("savepoint-*.json")]
    assert saved and not all(s["snapshotDone"] for s in saved), "killed too late"
    assert "Migrating 3 tables" in log1.read_text()
    mid = _status(cfg)
    assert "snapshot" in mid and "Total: 3 tables" in mid

    _mutate(src, keys, random.Random(1), 60)  # while the migrator is down
    writer_done = threading.Event()

    def writer() -> None:
        try:
            _mutate(src, keys, random.Random(2), 200)
        finally:
            writer_done.set()

    data["target"]["writeThroughput"] = 5000
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    p2 = start_cli(["migrate", "--config", str(cfg), "--no-progress"], log2)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        eventually(writer_done.is_set, 120, 0.2, "live mutations written")
        for name, target_name in ((a, a), (b, b), (c, renamed_c)):
            eventually(
                lambda n=name, tn=target_name: table_diff(src, n, dst, tn, keys[n]) == [],
                120,
                0.5,
                f"{name} converged",
            )
        eventually(lambda: _status(cfg).count("caught up: yes") == 3, 60, 1.0, "all caught up")
    finally:
        p2.send_signal(signal.SIGINT)
        assert p2.wait(60) == 0, log2.read_text()[-3000:]
    text = log2.read_text()
    assert text.count("Resuming") >= 1 and "All 3 tables ran" in text
    assert f"[{a}]" in text and f"[{renamed_c}]" not in text  # lines are tagged by source table
    assert f"Changes to be applied to {a}:" in text  # each table's op table names it
    assert dst.describe_table(TableName=renamed_c)["Table"]["GlobalSecondaryIndexes"]

    ok = cli_process("validate", "--config", str(cfg))
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, out + err
    assert "All 3 tables identical" in out
    # A difference planted in one table is found and that table is named.
    dst.put_item(TableName=b, Item={"user": {"S": "u1"}, "ts": {"N": "1"}, "v": {"N": "999"}})
    bad = cli_process("validate", "--config", str(cfg))
    out, err = bad.communicate(timeout=120)
    assert bad.returncode == 1, out + err
    assert f"Tables that differ: {b} (1 of 3)" in out


def test_a_failing_table_stops_the_run_before_any_table_is_touched(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    base = table_name[:40]
    good, clash, missing = f"{base}-good", f"{base}-clash", f"{base}-missing"
    for n in (good, clash):
        create_table(src, n)
        batch_put(src, n, [{"pk": {"S": f"k{i}"}} for i in range(50)])
    create_table(dst, clash, hash_key=("other", "N"))  # the target exists with other keys
    cfg = _estate_config(tmp_path, moto, dynalite, [good, clash, missing])
    plan = cli_process("plan", "--config", str(cfg), "--json")
    out, err = plan.communicate(timeout=120)
    assert plan.returncode == 1, out + err
    feasible = {t["sourceTable"]: t["feasible"] for t in json.loads(out)["tables"]}
    assert feasible == {good: True, clash: False, missing: False}
    p = cli_process("migrate", "--config", str(cfg), "--no-progress", "--stop-when-caught-up", "1")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, out + err
    assert "2 of 3 tables cannot be migrated" in err and "no table was touched" in err
    assert clash in err and missing in err and "does not exist" in err
    # Nothing touched: no target table created, no stream enabled, no savepoint written.
    assert good not in dst.list_tables()["TableNames"]
    assert (
        not src.describe_table(TableName=good)["Table"]
        .get("StreamSpecification", {})
        .get("StreamEnabled")
    )
    assert not list((tmp_path / "sp").glob("savepoint-*.json"))

    p = cli_process(
        "migrate",
        "--config",
        str(cfg),
        "--no-progress",
        "--stop-when-caught-up",
        "1",
        "--skip-failing-tables",
    )
    out, err = p.communicate(timeout=180)
    assert p.returncode == 1, out + err  # the run went on, but not everything was migrated
    assert table_diff(src, good, dst, good, ("pk",)) == []
    last = out.strip().splitlines()[-1]
    assert last.startswith("Tables not migrated:") and clash in last and missing in last


def test_the_metrics_of_a_table_carry_its_name() -> None:
    """What one table of a multi-table run builds counts under `table=`; nothing else does."""
    from alternator_migrator.metrics import METRICS
    from alternator_migrator.target.sink import Sink

    class _Target:
        retry = None
        affinity = None
        label, url, stop = "target", "http://fake", None

        def call_raw(self, op: str, payload: bytes, **kw: Any) -> dict[str, Any]:
            return {"UnprocessedItems": {}}

    with METRICS.scoped(table="orders"):
        orders = Sink(_Target(), "orders", ["pk"])  # type: ignore[arg-type]
    plain = Sink(_Target(), "plain", ["pk"])  # type: ignore[arg-type]
    before = METRICS.counter("items_written_total", table="orders")
    unlabelled = METRICS.counter("items_written_total")
    orders.put_items([{"pk": {"S": f"k{i}"}} for i in range(3)])
    plain.put_items([{"pk": {"S": "x"}}])
    assert METRICS.counter("items_written_total", table="orders") == before + 3
    assert METRICS.counter("items_written_total") == unlabelled + 1
    assert METRICS.scope() == {}


def test_the_last_line_names_every_table_whose_snapshot_is_not_complete() -> None:
    import io

    from alternator_migrator.pipeline.estate import EstateResult, TableOutcome, summary
    from alternator_migrator.pipeline.migrate import MigrationResult

    cfgs = table_configs(_cfg(tables=["a", "b"]))
    done = EstateResult([TableOutcome(c, MigrationResult(True, "arn", None, True)) for c in cfgs])
    out = io.StringIO()
    assert summary(done, out) == 0
    assert out.getvalue().splitlines()[-1] == "All 2 tables ran; every snapshot complete"
    stopped = EstateResult(
        [
            TableOutcome(cfgs[0], MigrationResult(True, None, None, False)),
            TableOutcome(cfgs[1], MigrationResult(False, "arn", None, True)),
        ]
    )
    out = io.StringIO()
    assert summary(stopped, out) == 0
    assert out.getvalue().splitlines()[-1] == (
        "All 2 tables ran; snapshot not complete for: b (stopped)"
    )
