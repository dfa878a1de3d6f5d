"""validate: the three kinds of difference, value semantics, re-check, repair, exit codes."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.cli import main
from alternator_migrator.config import load
from alternator_migrator.localservers import Server
from alternator_migrator.validate import validator as validate_mod
from alternator_migrator.validate.compare import DIFFER, EXTRA, MISSING
from alternator_migrator.validate.validator import validate

from ..helpers import batch_put, by_key, create_table, scan_all, write_config


def _item(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"k{i:03d}"},
        "n": {"N": str(i)},
        "s": {"S": f"value {i}"},
        "ss": {"SS": ["a", "b", "c"]},
        "m": {"M": {"inner": {"L": [{"N": "1"}, {"S": "x"}, {"BOOL": True}]}, "z": {"NULL": True}}},
    }


def _config(
    tmp_path: Path, moto: Server, dynalite: Server, src_table: str, dst_table: str, **top: Any
) -> Path:
    return write_config(
        tmp_path / "cfg.yaml",
        source_url=moto.url,
        source_table=src_table,
        target_url=dynalite.url,
        target_table=dst_table,
        savepoints=tmp_path / "sp",
        stream=False,
        top_extra=top or None,
    )


# --------------------------------------------------------------------------- against servers


def test_identical_tables_with_numbers_written_differently(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    items = [_item(i) for i in range(40)]
    batch_put(dst, table_name, items)
    # moto keeps numbers as written (dynalite normalises them), so the source side differs
    # textually from the target.
    rewritten = copy.deepcopy(items)
    for it in rewritten:
        it["n"] = {"N": it["n"]["N"] + ".000"}
        it["m"]["M"]["inner"]["L"][0] = {"N": "1.0"}
        it["ss"] = {"SS": ["c", "a", "b"]}
    batch_put(src, table_name, rewritten)
    assert src.get_item(TableName=table_name, Key={"pk": {"S": "k001"}})["Item"]["n"] == {
        "N": "1.000"
    }

    cfg = _config(tmp_path, moto, dynalite, table_name, table_name)
    out = io.StringIO()
    report = validate(load(cfg), out=out)
    assert report.identical, out.getvalue()
    assert (report.source_items, report.target_items) == (40, 40)
    assert "identical" in out.getvalue()
    assert main(["validate", "--config", str(cfg)]) == 0


def test_finds_each_kind_of_difference_and_repair_fixes_them(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    items = [_item(i) for i in range(30)]
    batch_put(src, table_name, items)
    target = {it["pk"]["S"]: copy.deepcopy(it) for it in items}
    del target["k003"]  # missing in target
    target["k010"]["s"] = {"S": "stale"}  # top-level difference
    target["k011"]["m"]["M"]["inner"]["L"][2] = {"BOOL": False}  # nested difference
    target["zz-extra"] = {"pk": {"S": "zz-extra"}, "s": {"S": "only here"}}  # only in target
    batch_put(dst, table_name, list(target.values()))

    cfg = _config(
        tmp_path, moto, dynalite, table_name, table_name, validation={"failuresToFetch": 10}
    )
    out = io.StringIO()
    report = validate(load(cfg), out=out)
    text = out.getvalue()
    assert report.counts == {MISSING: 1, EXTRA: 1, DIFFER: 2}, text
    found = {(d.kind, d.key["pk"]["S"]) for d in report.samples}
    assert found == {(MISSING, "k003"), (EXTRA, "zz-extra"), (DIFFER, "k010"), (DIFFER, "k011")}
    nested = next(d for d in report.samples if d.key["pk"]["S"] == "k011")
    assert [(a.path, a.source, a.target) for a in nested.attrs] == [
        ("m.inner[2]", {"BOOL": True}, {"BOOL": False})
    ]
    assert 'm.inner[2]: source={"BOOL":true} target={"BOOL":false}' in text
    assert '"stale"' in text and "k003" in text and "zz-extra" in text

    assert main(["validate", "--config", str(cfg)]) == 1
    assert main(["validate", "--config", str(cfg), "--repair"]) == 1  # found (and fixed) them
    assert main(["validate", "--config", str(cfg)]) == 0
    # Checked independently of the validator: the target now equals the source.
    assert by_key(scan_all(dst, table_name)) == by_key(scan_all(src, table_name))


def test_failures_to_fetch_limits_the_listing_not_the_counts(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    batch_put(src, table_name, [_item(i) for i in range(12)])
    cfg = _config(
        tmp_path, moto, dynalite, table_name, table_name, validation={"failuresToFetch": 3}
    )
    out = io.StringIO()
    report = validate(load(cfg), out=out)
    assert report.counts[MISSING] == 12
    assert len(report.samples) == 3
    assert "First 3 of 12 differences" in out.getvalue()


def test_renames_are_applied(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "old": {"N": str(i)}} for i in range(5)])
    batch_put(dst, table_name, [{"pk": {"S": f"k{i}"}, "new": {"N": str(i)}} for i in range(5)])
    renames = [{"from": "old", "to": "new"}]
    cfg = _config(tmp_path, moto, dynalite, table_name, table_name, renames=renames)
    assert validate(load(cfg), out=io.StringIO()).identical

    dst.put_item(TableName=table_name, Item={"pk": {"S": "k1"}, "old": {"N": "1"}})
    report = validate(load(cfg), out=io.StringIO())
    assert report.counts[DIFFER] == 1
    assert {a.path for a in report.samples[0].attrs} == {"new", "old"}


def test_a_difference_that_clears_on_recheck_is_not_reported(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name)
    items = [_item(i) for i in range(5)]
    batch_put(src, table_name, items)
    batch_put(dst, table_name, items[1:])
    original = validate_mod.Validator._recheck_forward

    def catch_up_first(self: validate_mod.Validator, keys: list[dict[str, Any]]) -> None:
        # As if the migrator applied the pending change between the scan and the re-read.
        dst.put_item(TableName=table_name, Item=items[0])
        original(self, keys)

    monkeypatch.setattr(validate_mod.Validator, "_recheck_forward", catch_up_first)
    report = validate(
        load(_config(tmp_path, moto, dynalite, table_name, table_name)), out=io.StringIO()
    )
    assert report.identical
    assert report.cleared_on_recheck == 1


def test_error_exits_2(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str
) -> None:
    create_table(src, table_name)
    cfg = _config(tmp_path, moto, dynalite, table_name, table_name + "-absent")
    assert main(["validate", "--config", str(cfg)]) == 2
    assert main(["validate", "--config", str(tmp_path / "no-such.yaml")]) == 2
