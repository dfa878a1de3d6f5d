"""validate's runs: spilled buckets, --sample, a partial report on a stop, resume, --fresh."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.config import load
from alternator_migrator.localservers import Server
from alternator_migrator.validate import validator as validate_mod
from alternator_migrator.validate.buckets import BucketStore
from alternator_migrator.validate.compare import DIFFER, EXTRA, MISSING
from alternator_migrator.validate.position import PositionFile
from alternator_migrator.validate.validator import validate

from ..helpers import batch_put, create_table, eventually, start_cli, write_config


def _item(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"k{i:03d}"}, "n": {"N": str(i)}, "s": {"S": "v" * 50}}


def _config(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    table: str,
    source: dict[str, Any] | None = None,
) -> Path:
    return write_config(
        tmp_path / "cfg.yaml",
        source_url=moto.url,
        source_table=table,
        target_url=dynalite.url,
        target_table=table,
        savepoints=tmp_path / "sp",
        stream=False,
        source_extra={"scanSegments": 4, "maxMapTasks": 1, **(source or {})},
        top_extra={"validation": {"failuresToFetch": 5}},
    )


def _tables(src: Any, dst: Any, table: str, n: int = 60) -> None:
    """The same n items on both sides but for one missing, one extra and one differing."""
    create_table(src, table)
    create_table(dst, table)
    items = [_item(i) for i in range(n)]
    batch_put(src, table, items)
    target = [dict(it) for it in items if it["pk"]["S"] != "k003"]
    target.append({"pk": {"S": "zz-extra"}})
    next(t for t in target if t["pk"]["S"] == "k010")["n"] = {"N": "-1"}
    batch_put(dst, table, target)


def test_spilled_buckets_find_each_kind_of_difference(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A budget of a few items: every page spills to files, and buckets are split again.
    monkeypatch.setattr(validate_mod, "MEMORY_BUDGET", 2_000)
    monkeypatch.setattr(validate_mod, "BUCKETS", 3)
    stores: list[BucketStore] = []

    class Recorded(BucketStore):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            stores.append(self)

    monkeypatch.setattr(validate_mod, "BucketStore", Recorded)
    _tables(src, dst, table_name)
    cfg = load(_config(tmp_path, moto, dynalite, table_name))
    report = validate(cfg, out=io.StringIO())
    assert report.counts == {MISSING: 1, EXTRA: 1, DIFFER: 1}
    assert (report.source_items, report.target_items) == (60, 60)
    assert stores[-1].spilled > 0
    # Finished: neither the position nor the spilled files stay behind.
    assert not PositionFile(cfg).file.exists() and not PositionFile(cfg).buckets.exists()


def test_sample_compares_the_sampled_segments_and_says_so(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    batch_put(src, table_name, [_item(i) for i in range(80)])  # the target is empty
    out = io.StringIO()
    report = validate(load(_config(tmp_path, moto, dynalite, table_name)), out=out, sample=0.25)
    text = out.getvalue()
    assert "fraction 0.25" in report.sample and "sample" in text, text
    # One of the four source segments: exactly its items are found missing, not all 80.
    seg = json.loads(report.sample.split("source segments ")[1].split(" and")[0])
    assert len(seg) == 1
    items = src.scan(TableName=table_name, Segment=seg[0], TotalSegments=4)["Items"]
    assert report.counts[MISSING] == report.source_items == len(items) < 80
    assert report.exit_code == 1


def _slow_source_config(tmp_path: Path, moto: Server, dynalite: Server, table: str) -> Path:
    # moto charges 1 unit a Scan page; 0.1 unit/s keeps the source scan waiting on its budget.
    return _config(
        tmp_path, moto, dynalite, table, {"readThroughput": 1, "throughputReadPercent": 0.1}
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_gives_a_partial_report_that_is_not_a_pass(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    sig: signal.Signals,
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    items = [_item(i) for i in range(30)]
    batch_put(src, table_name, items)
    batch_put(dst, table_name, items)  # identical: a stopped run must still not pass
    cfg = _slow_source_config(tmp_path, moto, dynalite, table_name)
    log = tmp_path / "validate.log"
    proc = start_cli(["--log-format", "text", "validate", "--config", str(cfg)], log)
    try:
        eventually(
            lambda: "Validating 'validate" in log.read_text() or "Validating" in log.read_text(), 30
        )
        proc.send_signal(sig)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 4, text
    assert "PARTIAL REPORT" in text and "NOT a pass" in text, text
    assert "source and target are identical" not in text
    assert PositionFile(load(cfg)).file.exists()


def test_a_resumed_run_skips_the_segments_already_scanned(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _tables(src, dst, table_name)
    cfg = load(_config(tmp_path, moto, dynalite, table_name))
    original = validate_mod._Side.scan
    calls: list[tuple[str, int]] = []
    stop_at: dict[str, Any] = {}

    def scan(
        self: Any, segment: int, total: int, keys_only: bool, stop: Any = None
    ) -> Iterator[list[dict[str, Any]]]:
        calls.append((self.label, segment))
        if stop_at.get("segment") == (self.label, segment):
            stop_at["event"].set()  # as a Ctrl-C right after the segment before it ended
        return original(self, segment, total, keys_only, stop)

    monkeypatch.setattr(validate_mod._Side, "scan", scan)

    stop = threading.Event()
    stop_at.update(segment=("source", 2), event=stop)
    first = validate(cfg, out=io.StringIO(), stop=stop)
    assert first.partial and first.exit_code == 4
    saved = json.loads(PositionFile(cfg).file.read_bytes())
    assert saved["scanned"][0] == [0, 1]

    calls.clear()
    stop_at.clear()
    out = io.StringIO()
    second = validate(cfg, out=out)
    assert ("source", 0) not in calls and ("source", 1) not in calls
    assert ("source", 2) in calls and ("source", 3) in calls
    assert "resumed" in out.getvalue() and "2/4 source" in second.resumed
    assert second.counts == {MISSING: 1, EXTRA: 1, DIFFER: 1}, out.getvalue()
    assert (second.source_items, second.target_items) == (60, 60)
    assert second.exit_code == 1
    assert not PositionFile(cfg).file.exists()  # done: the next run starts over

    # --fresh ignores a stopped run's position.
    stop = threading.Event()
    stop_at.update(segment=("source", 2), event=stop)
    validate(cfg, out=io.StringIO(), stop=stop)
    calls.clear()
    stop_at.clear()
    third = validate(cfg, out=io.StringIO(), fresh=True)
    assert ("source", 0) in calls and not third.resumed
    assert third.counts == {MISSING: 1, EXTRA: 1, DIFFER: 1}


def test_expired_source_items_are_neither_missing_nor_extra(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    src.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    live = [_item(i) for i in range(10)]
    # An hour ago: DynamoDB's TTL deletes these (a time over five years old it never would).
    an_hour_ago = str(int(time.time()) - 3600)
    gone = [{**_item(i), "exp": {"N": an_hour_ago}} for i in range(10, 14)]
    batch_put(src, table_name, live + gone)
    batch_put(dst, table_name, live + gone[:2])  # two expired ones were copied, two not
    report = validate(load(_config(tmp_path, moto, dynalite, table_name)), out=io.StringIO())
    assert report.identical, report.format()
    assert report.expired_skipped == 4
    assert report.source_items == 10


def test_a_run_stopped_while_comparing_resumes_without_scanning_again(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validate_mod, "MEMORY_BUDGET", 3_000)  # spilled: compared from files
    monkeypatch.setattr(validate_mod, "BUCKETS", 8)
    _tables(src, dst, table_name)
    cfg = load(_config(tmp_path, moto, dynalite, table_name))
    stop = threading.Event()
    original = validate_mod.Validator._compare_part
    parts: list[int] = []

    def compare_part(self: Any, s: dict[str, str], t: dict[str, str]) -> None:
        parts.append(len(s))
        original(self, s, t)
        if len(parts) == 3:
            stop.set()  # a Ctrl-C in the middle of comparing

    monkeypatch.setattr(validate_mod.Validator, "_compare_part", compare_part)
    first = validate(cfg, out=io.StringIO(), stop=stop)
    assert first.exit_code == 4 and "while comparing" in first.partial
    saved = json.loads(PositionFile(cfg).file.read_bytes())
    assert 0 < len(saved["compared"]) < 8 and saved["scanned"] == [[0, 1, 2, 3]] * 2

    scans: list[Any] = []
    original_scan = validate_mod._Side.scan
    monkeypatch.setattr(
        validate_mod._Side, "scan", lambda *a, **k: scans.append(a) or original_scan(*a, **k)
    )
    second = validate(cfg, out=io.StringIO())
    assert scans == []  # both tables were scanned by the first run
    assert second.counts == {MISSING: 1, EXTRA: 1, DIFFER: 1}
    assert (second.source_items, second.target_items) == (60, 60)
    assert second.exit_code == 1
