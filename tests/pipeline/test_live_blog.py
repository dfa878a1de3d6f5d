"""The blog's rehearsal, scaled down: a live migration under load ends with identical tables.

The Scylla Migrator's test mutated 10,000 keys at 10-25 operations per second while the
migration ran; here 1,000 keys and about 20 seconds of load keep CI quick.
"""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from alternator_migrator.config import load
from alternator_migrator.loadgen import LoadgenOptions, LoadgenStats, run
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import MigrationResult, migrate
from alternator_migrator.validate.validator import validate

from ..helpers import by_key, eventually, scan_all, write_config


def test_live_migration_under_load_ends_identical(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    base = LoadgenOptions(moto.url, table_name, keys=1000, rate=(10, 25), seed=2024)
    prepared = run(replace(base, create=True, duration=0))
    assert prepared.prepopulated == 1000

    # One writer: concurrent writers can make moto repeat stream sequence numbers.
    load_stop = threading.Event()
    load_stats: list[LoadgenStats] = []
    load_out = io.StringIO()
    loader = threading.Thread(
        target=lambda: load_stats.append(run(replace(base, duration=20), load_stop, load_out)),
        name="loadgen",
    )
    loader.start()
    eventually(lambda: "ops (put" in load_out.getvalue(), 15, message="load started")

    cfg = load(
        write_config(
            tmp_path / "cfg.yaml",
            source_url=moto.url,
            source_table=table_name,
            target_url=dynalite.url,
            target_table=table_name,
            savepoints=tmp_path / "sp",
            stream=True,
        )
    )
    results: list[MigrationResult] = []
    errors: list[BaseException] = []
    replay_out = io.StringIO()
    stop = threading.Event()

    def migration() -> None:
        try:
            results.append(
                migrate(cfg, stop, stop_when_caught_up=4, out=replay_out, show_progress=False)
            )
        except BaseException as e:
            errors.append(e)

    migrator = threading.Thread(target=migration, name="migrate")
    migrator.start()
    try:
        loader.join(timeout=90)
        assert not loader.is_alive() and load_stats, "loadgen did not finish"
        # The migrator stops by itself once caught up with the stream.
        eventually(lambda: not migrator.is_alive(), 90, 0.5, "migrator caught up and stopped")
    finally:
        load_stop.set()
        stop.set()
        loader.join(timeout=30)
        migrator.join(timeout=60)
    assert not errors, errors
    stats = load_stats[0]
    assert stats.errors == 0 and stats.total >= 150, stats
    result = results[0]
    assert result.snapshot_complete and not result.stopped
    # Some load came before the stream was enabled (it reached the target via the snapshot).
    assert result.replay is not None and result.replay.records > 50
    assert "| DELETE" in replay_out.getvalue()

    out = io.StringIO()
    report = validate(cfg, out=out)
    assert report.identical, out.getvalue()
    assert report.source_items == len(scan_all(src, table_name)) > 0
    # And checked without the validator: same keys on both sides.
    assert by_key(scan_all(dst, table_name)).keys() == by_key(scan_all(src, table_name)).keys()
