"""The soak harness's own parts: its schedule replays from the seed, and its savepoint monitor
really catches the false claims it is there to catch."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..helpers import batch_put, create_table
from .harness import Dataset, Monitor, ProxiedTarget, draw_schedule


def _schedule(seed: int, target: ProxiedTarget) -> list[str]:
    return [str(s) for s in draw_schedule(random.Random(seed), 120, target.actions())]


def test_a_seed_replays_its_schedule_and_every_fault_kind_comes_up() -> None:
    target = ProxiedTarget("http://127.0.0.1:9", seed=1)  # never contacted
    try:
        assert _schedule(5, target) == _schedule(5, target)
        assert _schedule(5, target) != _schedule(6, target)
        kinds = {s.split()[1] for seed in range(20) for s in _schedule(seed, target)}
    finally:
        target.stop()
    assert kinds == {
        "kill9",
        "second_run",
        "sigstop",
        "sigterm_restart",
        "target_500",
        "target_throttle",
        "target_resets",
        "target_mixed",
        "target_outage",
        "target_slow",
    }


def _sp(done: list[int], *, total: int = 4, snapshot_done: bool = False, **more: Any) -> Any:
    return {
        "fingerprint": "f",
        "totalSegments": total,
        "segmentsDone": done,
        "segmentKeys": {},
        "snapshotDone": snapshot_done,
        "shards": {},
        **more,
    }


def test_monitor_flags_claims_that_are_false(tmp_path: Path, dst: Any, table_name: str) -> None:
    data = Dataset(table_name, cold=12, pad=10)
    create_table(dst, table_name)
    # Segment 0's never-changed items are on the target; segment 1's are not.
    frozen = {0: ["cold#0", "cold#3"], 1: ["cold#6"], 2: [], 3: ["cold#9"]}
    batch_put(dst, table_name, [data.seed_item(0), data.seed_item(3), data.seed_item(9)])
    m = Monitor(tmp_path, dst, data, frozen)
    shard = {"sequenceNumber": "200", "finished": False, "parent": None}

    m.check(_sp([0], shards={"s": shard}))
    assert m.violations == []
    m.check(_sp([0, 1]))
    assert len(m.violations) == 2
    assert "shard s dropped" in m.violations[0]
    assert "segment 1 recorded done but 1 of its never-changed items" in m.violations[1]
    m.violations.clear()
    m.check(_sp([0, 1, 3], shards={"s": {**shard, "sequenceNumber": "100"}}))
    m.check(_sp([0, 3], shards={"s": {**shard, "sequenceNumber": "90"}}, snapshot_done=True))
    assert any("segments no longer done: [1]" in v for v in m.violations)
    assert any("shard s went back from 100 to 90" in v for v in m.violations)
    assert any("snapshotDone with segments [0, 3] of 4 (missing [1, 2])" in v for v in m.violations)
    assert not any("segment 3" in v for v in m.violations)  # its item is there
