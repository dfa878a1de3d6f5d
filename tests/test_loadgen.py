"""loadgen: table creation and prepopulation, varied types, rate and mix, CLI."""

from __future__ import annotations

import io
import random
import time
from typing import Any

import pytest

from alternator_migrator.cli import main
from alternator_migrator.errors import MigratorError
from alternator_migrator.loadgen import (
    KeySpace,
    LoadgenOptions,
    _Runner,
    parse_mix,
    parse_rate,
    run,
)
from alternator_migrator.localservers import Server

from .helpers import create_table, scan_all


def _types(value: dict[str, Any], seen: set[str]) -> None:
    ((t, v),) = value.items()
    seen.add(t)
    if t == "M":
        for sub in v.values():
            _types(sub, seen)
    elif t == "L":
        for sub in v:
            _types(sub, seen)


@pytest.mark.parametrize("server", ["moto", "dynalite"])
def test_create_prepopulates_every_key_with_varied_types(
    server: str, request: pytest.FixtureRequest, table_name: str
) -> None:
    srv: Server = request.getfixturevalue(server)
    client = request.getfixturevalue("src" if server == "moto" else "dst")
    out = io.StringIO()
    stats = run(
        LoadgenOptions(
            srv.url, table_name, keys=150, create=True, duration=0, seed=7, large_fraction=0.05
        ),
        out=out,
    )
    assert stats.prepopulated == 150 and stats.total == 0
    items = scan_all(client, table_name)
    assert sorted(i["pk"]["S"] for i in items) == [f"key-{n:07d}" for n in range(150)]
    seen: set[str] = set()
    for it in items:
        for v in it.values():
            _types(v, seen)
    assert {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"} <= seen
    sizes = [len(str(it)) for it in items]
    assert max(sizes) > 10_000 > min(sizes)
    assert "created table" in out.getvalue()


def test_rate_and_every_scheduled_operation_are_honoured(
    dynalite: Server, dst: Any, table_name: str
) -> None:
    create_table(dst, table_name)
    lo, hi = 30, 50
    out = io.StringIO()
    started = time.monotonic()
    stats = run(
        LoadgenOptions(dynalite.url, table_name, keys=200, rate=(lo, hi), duration=5, seed=3),
        out=out,
    )
    elapsed = time.monotonic() - started
    assert stats.errors == 0
    assert len(stats.targets) == 5
    assert all(lo <= n <= hi for n in stats.targets)  # each second draws from the range
    assert stats.total == sum(stats.targets)  # nothing scheduled was skipped
    # Loose bounds: a loaded machine may stretch the run, never squeeze it.
    assert lo * 0.7 <= stats.total / elapsed <= hi * 1.1, (stats.total, elapsed)
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("loadgen ")]
    assert len(lines) == 5 and "ops (put" in lines[0]


def test_mix_is_honoured(dynalite: Server, dst: Any, table_name: str) -> None:
    create_table(dst, table_name)
    stats = run(
        LoadgenOptions(
            dynalite.url,
            table_name,
            keys=100,
            rate=(150, 150),
            duration=2,
            seed=11,
            mix={"put": 60, "update": 30, "delete": 10},
        ),
        out=io.StringIO(),
    )
    assert stats.errors == 0 and stats.total == 300
    shares = {op: stats.counts[op] / stats.total for op in ("put", "update", "delete")}
    assert shares == pytest.approx({"put": 0.6, "update": 0.3, "delete": 0.1}, abs=0.08)


def test_updates_and_deletes_take_effect_on_moto(moto: Server, src: Any, table_name: str) -> None:
    """moto is the source in every rehearsal: its UpdateItem must accept what we send."""
    stats = run(
        LoadgenOptions(
            moto.url,
            table_name,
            keys=50,
            create=True,
            rate=(100, 100),
            duration=2,
            seed=5,
            mix={"update": 70, "delete": 30},
        ),
        out=io.StringIO(),
    )
    assert stats.errors == 0
    assert stats.counts["update"] > 100 and stats.counts["delete"] > 30
    items = scan_all(src, table_name)
    assert len(items) < 50  # deletes happened
    assert any("counter" in it for it in items)  # ADD from updates happened


def test_same_seed_same_operations(dynalite: Server, dst: Any, table_name: str) -> None:
    create_table(dst, table_name)
    desc = dst.describe_table(TableName=table_name)["Table"]
    opts = LoadgenOptions(dynalite.url, table_name, keys=1000)

    def sequence(seed: int) -> list[Any]:
        r = _Runner(None, opts, KeySpace(desc, 1000), random.Random(seed))  # type: ignore[arg-type]
        return [r.next_op() for _ in range(50)]

    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)


def test_option_parsing() -> None:
    assert parse_rate("10-25") == (10, 25)
    assert parse_rate("7") == (7, 7)
    assert parse_mix("put=1,delete=3") == {"put": 1, "update": 0, "delete": 3}
    for bad in ("x", "25-10", "-3"):
        with pytest.raises(MigratorError):
            parse_rate(bad)
    for bad in ("put", "get=3", "put=-1", "put=0"):
        with pytest.raises(MigratorError):
            parse_mix(bad)


def test_cli_prints_counts_each_second(
    dynalite: Server, dst: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "loadgen",
            "--endpoint",
            dynalite.url,
            "--table",
            table_name,
            "--create",
            "--keys",
            "20",
            "--rate",
            "20",
            "--duration",
            "2",
            "--seed",
            "1",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "prepopulated 20 items" in out
    assert out.count("| total ") == 2
    assert "done: 40 operations" in out
    assert main(["loadgen", "--endpoint", dynalite.url, "--table", table_name + "-none"]) == 2
