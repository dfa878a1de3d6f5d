"""The savepoint is trusted only when it matches the world (issue 10, part A): target identity,
strict schema, one run at a time, the 'enabling' marker, same-table refusal, savepoint-dir
errors. Through the CLI on the real servers."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.cli import main
from alternator_migrator.config import load
from alternator_migrator.localservers import Server
from alternator_migrator.state.savepoint import Origin, SavepointStore, SnapshotOrigin
from alternator_migrator.status import status

from ..helpers import (
    batch_put,
    cli_process,
    create_table,
    eventually,
    scan_all,
    table_diff,
    write_config,
)
from ..test_cli_errors import assert_clean_error, run_cli

CAUGHT_UP = ("--stop-when-caught-up", "0.5", "--no-progress")


def _items(lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(lo, hi)]


def _config(tmp_path: Path, source_url: str, target_url: str, table: str, **kw: Any) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        source_url=source_url,
        source_table=table,
        target_url=target_url,
        target_table=kw.pop("target_table", table),
        savepoints=kw.pop("savepoints", tmp_path / "sp"),
        **kw,
    )


def _migrate_ok(cfg: Path, *extra: str) -> str:
    p = run_cli("migrate", "--config", str(cfg), *CAUGHT_UP, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    return p.stderr


def _savepoint(cfg: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SavepointStore(load(cfg)).file.read_bytes())
    return data


# ------------------------------------------------------------------ 1. target identity


@pytest.mark.parametrize("loss", ["dropped", "emptied"])
def test_target_lost_between_runs_is_copied_again(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    loss: str,
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 300))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name)
    _migrate_ok(cfg)
    saved = _savepoint(cfg)
    assert saved["snapshotDone"] and saved["targetTable"]["CreationDateTime"]

    batch_put(src, table_name, _items(300, 350))  # changes only the stream carries
    if loss == "dropped":
        dst.delete_table(TableName=table_name)
    else:
        for it in scan_all(dst, table_name):
            dst.delete_item(TableName=table_name, Key={"pk": it["pk"]})
    log = _migrate_ok(cfg)

    assert "Copying the snapshot again" in log
    assert ("dropped or recreated" if loss == "dropped" else "its data was lost") in log
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
    assert run_cli("validate", "--config", str(cfg)).returncode == 0
    # The new table is recorded: a third run trusts it and copies nothing again.
    assert "Copying the snapshot again" not in _migrate_ok(cfg)


def test_recreated_source_stops_with_fresh(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 20))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name, stream=False)
    _migrate_ok(cfg)
    src.delete_table(TableName=table_name)
    create_table(src, table_name)
    assert_clean_error(
        run_cli("migrate", "--config", str(cfg)), 2, "was recreated", "--fresh", table_name
    )
    _migrate_ok(cfg, "--fresh")


# ------------------------------------------------------------------ 2. strict schema

GOOD: dict[str, Any] = {
    "version": 1,
    "table": "t",
    "streamArn": None,
    "snapshotDone": False,
    "totalSegments": 4,
    "segmentsDone": [0, 1],
    "segmentKeys": {"2": {"pk": {"S": "k9"}}},
    "shards": {"s-1": {"sequenceNumber": "100", "finished": False, "parent": None}},
    "createdAt": 1.0,
    "updatedAt": 2.0,
}
BAD = [
    ({"totalSegments": 0}, "totalSegments"),
    ({"totalSegments": -3}, "totalSegments"),
    ({"totalSegments": True}, "totalSegments"),
    ({"snapshotDone": "false"}, "snapshotDone"),
    ({"segmentsDone": "0123"}, "segmentsDone"),
    ({"segmentsDone": [0, 4]}, "segmentsDone"),
    ({"segmentKeys": {"0123": {"pk": {"S": "a"}}}}, "segmentKeys"),
    ({"shards": [["s-1", {}]]}, "shards"),
    ({"shards": {"s-1": {"sequenceNumber": "abc"}}}, "shards.s-1.sequenceNumber"),
    ({"shards": {"s-1": {"sequenceNumber": 100}}}, "shards.s-1.sequenceNumber"),
    ({"fingerprint": 7}, "fingerprint"),
    ({"snapshotSource": "exported arn:x"}, "snapshotSource"),
    ({"snapshotSource": "export"}, "snapshotSource"),
    ({"snapshotSource": "scan arn:x"}, "snapshotSource"),
]


def _write_savepoint(cfg_path: Path, body: Any) -> Path:
    store = SavepointStore(load(cfg_path))
    store.dir.mkdir(parents=True, exist_ok=True)
    if isinstance(body, dict):
        body = {"fingerprint": store.fingerprint, **body}
    store.file.write_bytes(json.dumps(body).encode())
    return store.file


@pytest.mark.parametrize(
    ("body", "field"),
    [({**GOOD, **change}, name) for change, name in BAD]
    + [([], "JSON object"), (None, "JSON object")],
    ids=[name for _, name in BAD] + ["list", "null"],
)
def test_impossible_savepoint_is_refused_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: Any, field: str
) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:8", "http://127.0.0.1:9", "t")
    f = _write_savepoint(cfg, body)
    assert main(["status", "--config", str(cfg), "--no-stream"]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and field in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_current_savepoint_format_still_loads(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:8", "http://127.0.0.1:9", "t")
    _write_savepoint(cfg, GOOD)  # written by the previous release: no table identities
    sp = SavepointStore(load(cfg)).load()
    assert sp is not None and sp.segments_done == {0, 1} and sp.target_table is None
    assert sp.shards["s-1"].sequence_number == "100"


@pytest.mark.parametrize(
    ("wire", "origin"),
    [
        (None, SnapshotOrigin()),
        (
            "export arn:aws:dynamodb:r:1:table/t/export/e1",
            SnapshotOrigin.export("arn:aws:dynamodb:r:1:table/t/export/e1"),
        ),
        (
            "export s3://b/x/manifest-summary.json",
            SnapshotOrigin.export("s3://b/x/manifest-summary.json"),
        ),
        ("failed arn:e2", SnapshotOrigin(Origin.FAILED_EXPORT, "arn:e2")),
    ],
)
def test_snapshot_origin_of_earlier_savepoints_loads_typed_and_saves_the_same(
    tmp_path: Path, wire: str | None, origin: SnapshotOrigin
) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:8", "http://127.0.0.1:9", "t")
    keys = {"2": 5} if origin.kind is Origin.EXPORT else GOOD["segmentKeys"]
    _write_savepoint(cfg, {**GOOD, "snapshotSource": wire, "segmentKeys": keys})
    store = SavepointStore(load(cfg))
    sp = store.load()
    assert sp is not None and sp.snapshot_origin == origin
    store.save(sp)
    assert json.loads(store.file.read_bytes())["snapshotSource"] == wire


def test_snapshot_an_earlier_version_called_done_despite_skipped_segments_is_not_done(
    tmp_path: Path,
) -> None:
    """Earlier versions set snapshotDone after a run with skipSegments: such a savepoint
    loads, but as what it is, a snapshot with segments never copied."""
    cfg_path = _config(tmp_path, "http://127.0.0.1:8", "http://127.0.0.1:9", "t")
    body = {**GOOD, "snapshotDone": True, "segmentKeys": {}, "segmentsDone": [0], "shards": {}}
    _write_savepoint(cfg_path, {**body, "totalSegments": 3})
    sp = SavepointStore(load(cfg_path)).load()
    assert sp is not None and not sp.snapshot_done and sp.units_missing() == [1, 2]
    assert status(load(cfg_path), probe_stream=False).phase == "snapshot"
    # Every segment copied: done stays done.
    _write_savepoint(cfg_path, {**body, "totalSegments": 1})
    sp = SavepointStore(load(cfg_path)).load()
    assert sp is not None and sp.snapshot_done


def test_impossible_savepoint_stops_migrate_before_any_write(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 10))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name)
    _write_savepoint(cfg, {**GOOD, "table": table_name, "totalSegments": 0, "segmentsDone": []})
    p = run_cli("migrate", "--config", str(cfg))
    assert_clean_error(p, 2, "totalSegments", "--fresh")
    assert "StreamSpecification" not in src.describe_table(TableName=table_name)["Table"]


# ------------------------------------------------------------------ 3. one run at a time


def test_two_concurrent_runs_exactly_one_runs(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 200))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name)
    runs = [cli_process("migrate", "--config", str(cfg), *CAUGHT_UP) for _ in range(2)]
    outs = [(p.wait(120), p.communicate()[1]) for p in runs]
    codes = sorted(rc for rc, _ in outs)
    assert codes == [0, 2], outs
    loser = next(err for rc, err in outs if rc == 2)
    assert "another run holds" in loser and "savepoint-" in loser and "(pid " in loser
    for _, err in outs:
        assert "did not enable" not in err and "Traceback" not in err
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []


def test_lock_dies_with_its_process_and_status_reads_meanwhile(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 100))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name)
    run = cli_process("migrate", "--config", str(cfg), "--no-progress")
    try:
        store = SavepointStore(load(cfg))
        eventually(lambda: store.file.exists() and _savepoint(cfg)["snapshotDone"], 60)
        assert store.lock_file.read_text().strip() == str(run.pid)
        st = run_cli("status", "--config", str(cfg), "--no-stream")
        assert st.returncode == 0 and "Phase: replay" in st.stdout, st.stderr
        second = run_cli("migrate", "--config", str(cfg))
        assert_clean_error(second, 2, "another run holds", f"(pid {run.pid})")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    batch_put(src, table_name, _items(100, 120))
    _migrate_ok(cfg)  # nothing stale: the kernel dropped the lock with the process
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []


# ------------------------------------------------------------------ 4. 'enabling' marker


@pytest.mark.parametrize("marker_first", [True, False])
def test_stream_enabled_after_the_marker_is_ours(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    marker_first: bool,
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 30))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name)
    store = SavepointStore(load(cfg))

    def crash_state(marker: float) -> None:
        sp = store.new()
        sp.stream_enabling = marker
        store.save(sp)

    if marker_first:  # the run saved the marker, enabled the stream, and died
        crash_state(time.time())
    src.update_table(
        TableName=table_name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    if not marker_first:  # someone else's stream, older than our marker
        crash_state(time.time() + 60)
    batch_put(src, table_name, _items(30, 40))
    if marker_first:
        log = _migrate_ok(cfg)
        assert "earlier run of this migration" in log
        assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
        saved = _savepoint(cfg)
        assert saved["streamArn"] and saved["streamEnabling"] is None
    else:
        assert_clean_error(run_cli("migrate", "--config", str(cfg)), 2, "did not enable")


# ------------------------------------------------------------------ 5. same table


@pytest.mark.parametrize("spelling", ["same", "alias"])
def test_source_and_target_the_same_table_is_refused(
    tmp_path: Path, moto: Server, src: Any, table_name: str, spelling: str
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 10))
    # Caught from the config (another spelling of one URL), or by what the endpoints answer.
    target = (
        moto.url.replace("http", "HTTP")
        if spelling == "same"
        else moto.url.replace("127.0.0.1", "localhost")
    )
    cfg = _config(tmp_path, moto.url, target, table_name)
    assert_clean_error(run_cli("migrate", "--config", str(cfg)), 2, "same table", "target.table")
    desc = src.describe_table(TableName=table_name)["Table"]
    assert "StreamSpecification" not in desc  # refused before enabling anything
    assert len(scan_all(src, table_name)) == 10


# ------------------------------------------------------------------ 6. errors


def test_savepoints_path_that_is_a_file_or_cannot_be_made(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str
) -> None:
    create_table(src, table_name)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for where, needle in ((blocker, "is a file"), (blocker / "sub", "savepoint directory")):
        cfg = _config(tmp_path, moto.url, dynalite.url, table_name, savepoints=where)
        assert_clean_error(run_cli("migrate", "--config", str(cfg)), 2, needle, str(where))
    assert "StreamSpecification" not in src.describe_table(TableName=table_name)["Table"]


def test_savepoint_directory_lost_mid_run_stops_and_resumes(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(0, 100))
    cfg = _config(tmp_path, moto.url, dynalite.url, table_name)
    sp_dir, moved = tmp_path / "sp", tmp_path / "sp.moved"
    run = cli_process("migrate", "--config", str(cfg), "--no-progress")
    try:
        eventually(lambda: (sp_dir / SavepointStore(load(cfg)).file.name).exists(), 60)
        eventually(lambda: _savepoint(cfg)["snapshotDone"], 60)
        # Root ignores a read-only mode, so the directory is replaced by a file instead.
        sp_dir.rename(moved)
        sp_dir.write_text("not a directory")
        batch_put(src, table_name, _items(100, 110))
        rc = run.wait(60)
        err = run.communicate()[1]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)
    assert rc == 2, err[-2000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("alternator-migrator: error:")]
    assert len(errors) == 1 and str(sp_dir) in errors[0] and "Traceback" not in err
    sp_dir.unlink()
    moved.rename(sp_dir)
    assert "Snapshot already done" in _migrate_ok(cfg)
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []


@pytest.mark.parametrize(
    "table",
    ["../../escape", "a/b", "nul\0byte", "x" * 1000, "..", "é", "Valid_name.v-2" + "x" * 200],
)
def test_savepoint_file_stays_inside_its_directory(tmp_path: Path, table: str) -> None:
    cfg = load(
        write_config(
            tmp_path / "c.yaml",
            source_url="http://127.0.0.1:8",
            source_table=table,
            target_url="http://127.0.0.1:9",
            target_table="t",
            savepoints=tmp_path / "sp",
        )
    )
    store = SavepointStore(cfg)
    assert store.file.parent == tmp_path / "sp" and store.lock_file.parent == tmp_path / "sp"
    assert len(store.file.name) <= 255 and "\0" not in store.file.name
    sp = store.new()
    store.save(sp)
    assert [p.name for p in (tmp_path / "sp").iterdir()] == [store.file.name]
    if table.startswith("Valid"):  # earlier versions' savepoints keep their names
        assert store.file.name == f"savepoint-{table}-{cfg.fingerprint()}.json"


def test_source_without_streams_says_so(
    tmp_path: Path, dynalite: Server, dst: Any, table_name: str
) -> None:
    create_table(dst, table_name)
    cfg = write_config(
        tmp_path / "c.yaml",
        source_url=dynalite.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name + "-copy",
        savepoints=tmp_path / "sp",
    )
    p = run_cli("migrate", "--config", str(cfg))
    assert_clean_error(p, 2, "does not support DynamoDB Streams", "ValidationException")
    assert "already has a stream" not in p.stderr


@pytest.mark.parametrize("side", ["source", "target"])
def test_table_errors_say_which_side(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str, side: str
) -> None:
    create_table(src, table_name)
    # A name the endpoint refuses outright (too short): not "missing", an error of its own.
    cfg = write_config(
        tmp_path / "c.yaml",
        source_url=dynalite.url if side == "source" else moto.url,
        source_table="ab" if side == "source" else table_name,
        target_url=dynalite.url,
        target_table="ab" if side == "target" else table_name,
        savepoints=tmp_path / "sp",
        stream=False,
    )
    assert_clean_error(run_cli("migrate", "--config", str(cfg)), 2, f"{side} table 'ab'")
