"""Operator experience: metrics scraped during a run, status at each phase, JSON logs, renames."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from alternator_migrator.localservers import Server, free_port
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.status import print_status, status
from alternator_migrator.validate.validator import validate

from .helpers import (
    BackgroundMigration,
    batch_put,
    create_table,
    eventually,
    local_config,
    write_config,
)


def _items(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"pk": {"S": f"k{i}"}, "colour": {"S": "red"}, "n": {"N": str(i)}}
        for i in range(start, start + n)
    ]


def _scrape(port: int) -> dict[str, float]:
    """The metrics as name{labels} -> value; empty while the server is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except urllib.error.URLError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_scraped_during_a_run_and_json_logs(
    moto: Server, dynalite: Server, src: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(300))
    cfg = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alternator_migrator",
            "--log-format",
            "json",
            "migrate",
            "--config",
            str(cfg),
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        m = eventually(
            lambda: (
                (s := _scrape(port)).get('alternator_migrator_phase{phase="replay"}') == 1.0 and s
            ),
            timeout=60,
            message="replay phase in metrics",
        )
        assert m["alternator_migrator_items_copied_total"] == 300
        assert (
            m["alternator_migrator_segments_total"] == m["alternator_migrator_segments_done_total"]
        )
        for i in range(20):
            src.put_item(TableName=table_name, Item={"pk": {"S": f"new{i}"}, "n": {"N": "1"}})
        src.delete_item(TableName=table_name, Key={"pk": {"S": "k1"}})
        m = eventually(
            lambda: (
                (s := _scrape(port)).get(
                    'alternator_migrator_stream_records_applied_total{type="DELETE"}'
                )
                and s
            ),
            timeout=30,
            message="replayed records counted",
        )
        assert m['alternator_migrator_stream_records_applied_total{type="INSERT"}'] == 20
        assert any(k.startswith("alternator_migrator_replay_shard_lag_seconds{shard=") for k in m)
        assert "alternator_migrator_savepoint_age_seconds" in m
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [orjson.loads(ln) for ln in err.decode().splitlines()]  # every line is JSON
    messages = [e["msg"] for e in lines]
    assert "Stream enabled successfully" in messages
    assert "Done transferring table snapshot. Starting to transfer changes" in messages
    assert any(msg.startswith("Stop requested (SIGTERM)") for msg in messages)
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in lines)
    assert "| DELETE        |    1|" in out.decode()


def test_status_at_each_phase(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(100))
    # The target exists and is ACTIVE: a run stopped from the start then gets past the schema
    # step (a stop while waiting for a new table to be ACTIVE would end the run right there).
    create_table(dst, table_name)
    cfg = local_config(tmp_path, moto, dynalite, table_name, source_extra={"scanSegments": 4})
    assert status(cfg).phase == "not started"

    stopped = threading.Event()
    stopped.set()  # stopped before any segment is copied
    r = migrate(cfg, stopped, show_progress=False)
    assert not r.snapshot_complete
    st = status(cfg)
    assert (st.phase, st.segments_done, st.segments_total, st.caught_up) == ("snapshot", 0, 4, None)

    migrate(cfg, stop_when_caught_up=1, show_progress=False)
    st = status(cfg)
    assert (st.phase, st.segments_done) == ("replay", 4)
    assert st.shards and st.caught_up is True

    src.put_item(TableName=table_name, Item={"pk": {"S": "late"}})
    st = status(cfg)
    assert st.caught_up is False
    assert any(s.pending for s in st.shards)
    buf = io.StringIO()
    print_status(st, buf)
    assert (
        "Phase: replay" in buf.getvalue()
        and "behind" in buf.getvalue()
        and "Caught up: no" in buf.getvalue()
    )

    migrate(cfg, stop_when_caught_up=1, show_progress=False)
    assert status(cfg).caught_up is True

    snapshot_only = local_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        file="c2.yaml",
        target_table=table_name + "-2",
        stream=False,
    )
    migrate(snapshot_only, show_progress=False)
    assert status(snapshot_only).phase == "done"


def test_renames_apply_in_snapshot_replay_and_validate(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, _items(50))
    cfg = local_config(
        tmp_path,
        moto,
        dynalite,
        table_name,
        top_extra={"renames": [{"from": "colour", "to": "color"}]},
    )
    run = BackgroundMigration(cfg).start()
    eventually(lambda: table_name in dst.list_tables()["TableNames"], 30, message="target created")
    eventually(lambda: dst.get_item(TableName=table_name, Key={"pk": {"S": "k49"}}).get("Item"), 60)
    src.put_item(TableName=table_name, Item={"pk": {"S": "live"}, "colour": {"S": "blue"}})
    got = eventually(
        lambda: dst.get_item(TableName=table_name, Key={"pk": {"S": "live"}}).get("Item"), 30
    )
    run.finish()
    assert got == {"pk": {"S": "live"}, "color": {"S": "blue"}}
    snap = dst.get_item(TableName=table_name, Key={"pk": {"S": "k3"}})["Item"]
    assert "colour" not in snap and snap["color"] == {"S": "red"}
    assert validate(cfg, out=io.StringIO()).identical
