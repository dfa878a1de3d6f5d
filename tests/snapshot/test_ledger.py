"""The snapshot ledger's account, without servers: the to-do list, what a skip leaves, when a
unit is done, what the savepoint then says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.config import Config, load
from alternator_migrator.errors import ConfigError
from alternator_migrator.snapshot.ledger import SnapshotLedger, UnitTally
from alternator_migrator.state.savepoint import Savepoint, SavepointStore, SnapshotOrigin

from ..helpers import write_config


def _store(tmp_path: Path, **top: Any) -> tuple[SavepointStore, Config]:
    path = write_config(
        tmp_path / "c.yaml",
        source_url="http://127.0.0.1:8",
        source_table="t",
        target_url="http://127.0.0.1:9",
        target_table="t",
        savepoints=tmp_path / "sp",
        top_extra=top,
    )
    cfg = load(path)
    return SavepointStore(cfg), cfg


def test_skipped_units_are_neither_copied_nor_done(tmp_path: Path) -> None:
    store, cfg = _store(tmp_path, skipSegments=[1, 2])
    sp = store.new()
    sp.segments_done = {3}
    ledger = SnapshotLedger(cfg, sp, store, 5)
    assert ledger.todo() == [0, 4]
    with ledger:
        ledger.acknowledged(0, {"pk": {"S": "a"}}, 10)
        assert 0 not in sp.segments_done and sp.unit_position(0) == {"pk": {"S": "a"}}
        ledger.acknowledged(0, None, 5)
        ledger.acknowledged(4, None, 1)
    outcome = ledger.outcome()
    assert not outcome.complete and outcome.missing == (1, 2) and outcome.skipped == (1, 2)
    assert "2 of 5 segments never copied" in outcome.incomplete_line()
    saved = store.load()
    assert saved is not None and saved.segments_done == {0, 3, 4} and not saved.segment_keys
    with pytest.raises(ValueError, match="not done"):
        saved.mark_snapshot_done()
    assert not saved.snapshot_done


def test_a_later_run_copies_what_an_earlier_one_skipped(tmp_path: Path) -> None:
    store, cfg = _store(tmp_path, skipSegments=[0])
    sp = store.new()
    sp.total_segments, sp.segments_done = 3, {0}
    ledger = SnapshotLedger(cfg, sp, store, 3)
    assert ledger.todo() == [1, 2]  # segment 0 is done, so skipping it skips nothing
    for n in ledger.todo():
        ledger.acknowledged(n, None, 1)
    assert ledger.outcome().complete
    sp.mark_snapshot_done()
    assert sp.snapshot_done


def test_skip_beyond_the_segment_count_names_the_key(tmp_path: Path) -> None:
    store, cfg = _store(tmp_path, skipSegments=[7])
    with pytest.raises(ConfigError, match="skipSegments"):
        SnapshotLedger(cfg, store.new(), store, 4)


def test_export_units_are_never_skipped(tmp_path: Path) -> None:
    store, cfg = _store(tmp_path)
    sp = store.new()
    origin = SnapshotOrigin.export("arn:x")
    ledger = SnapshotLedger(cfg, sp, store, 2, kind="data file", origin=origin)
    assert ledger.todo() == [0, 1] and sp.snapshot_origin == origin


def test_a_resumed_snapshot_keeps_its_unit_count() -> None:
    sp = Savepoint(fingerprint="f", table="t", total_segments=4)
    with pytest.raises(ValueError, match="records 4 units"):
        sp.begin_snapshot(6, SnapshotOrigin())


def test_tally_keeps_a_tasks_positions() -> None:
    tally = UnitTally({2: {"pk": {"S": "x"}}})
    assert tally.position(2) == {"pk": {"S": "x"}} and tally.position(3) is None
    tally.acknowledged(2, {"pk": {"S": "y"}}, 4)
    tally.acknowledged(3, None, 1)
    assert tally.positions == {2: {"pk": {"S": "y"}}} and tally.finished == {3}
    assert tally.items == 5
