"""The expiry rule: only what DynamoDB's TTL will delete counts as expired. Pure tests of the
rule, then one run of the CLI on the real servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alternator_migrator.localservers import Server
from alternator_migrator.target.ttl import (
    FAR_FUTURE,
    FIVE_YEARS,
    Ttl,
    expiry_check,
    is_expired,
    ttl_state,
)

from ..helpers import batch_put, create_table, scan_all, write_config

NOW = 1_764_700_000.25  # a fixed "now" in epoch seconds (Dec 2025), with a fraction
DAY = 86400


def _item(value: dict[str, str] | None) -> dict[str, object]:
    it: dict[str, object] = {"pk": {"S": "k"}}
    if value is not None:
        it["exp"] = value
    return it


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ({"N": str(int(NOW) - DAY)}, Ttl.EXPIRED),  # yesterday: DynamoDB deletes it
        ({"N": str(int(NOW) + DAY)}, Ttl.PENDING),  # tomorrow
        ({"N": "0"}, Ttl.NEVER),  # the usual "never expires"
        ({"N": str(int(NOW) - 10 * 365 * DAY)}, Ttl.NEVER),  # older than five years
        ({"N": str(int(NOW * 1000) - DAY * 1000)}, Ttl.NEVER),  # yesterday in milliseconds
        ({"S": str(int(NOW) - DAY)}, Ttl.NEVER),  # a string, however it reads
        ({"NS": [str(int(NOW) - DAY)]}, Ttl.NEVER),  # a number set is not a Number
        ({"N": "-5"}, Ttl.NEVER),
        ({"N": "NaN"}, Ttl.NEVER),  # not a DynamoDB number at all
        ({"N": "garbage"}, Ttl.NEVER),
        (None, Ttl.ABSENT),
    ],
)
def test_only_a_number_of_seconds_at_most_five_years_past_is_expired(
    value: dict[str, str] | None, state: Ttl
) -> None:
    assert ttl_state(_item(value), "exp", NOW) is state
    assert is_expired(_item(value), "exp", NOW) is (state is Ttl.EXPIRED)


def test_the_boundaries_now_and_five_years_ago() -> None:
    at = Decimal(str(NOW))
    assert ttl_state(_item({"N": str(at)}), "exp", NOW) is Ttl.PENDING  # not yet past
    assert ttl_state(_item({"N": str(at - Decimal("0.001"))}), "exp", NOW) is Ttl.EXPIRED
    oldest = at - FIVE_YEARS
    assert ttl_state(_item({"N": str(oldest)}), "exp", NOW) is Ttl.EXPIRED
    assert ttl_state(_item({"N": str(oldest - Decimal("0.001"))}), "exp", NOW) is Ttl.NEVER
    # Five years of 365 days: less than five calendar years, so never more is skipped.
    assert FIVE_YEARS <= 5 * 365.25 * DAY


seconds = st.decimals(min_value=-(10**12), max_value=10**12, places=3, allow_nan=False)


@given(seconds)
def test_expired_exactly_in_the_window_from_five_years_ago_to_now(value: Decimal) -> None:
    expired = Decimal(NOW) - FIVE_YEARS <= value < Decimal(NOW)
    assert is_expired(_item({"N": str(value)}), "exp", NOW) is expired


@given(st.integers(min_value=int(NOW) - FIVE_YEARS, max_value=int(NOW) + 10 * 365 * DAY))
def test_a_plausible_seconds_value_in_milliseconds_never_expires(value: int) -> None:
    assert ttl_state(_item({"N": str(value * 1000)}), "exp", NOW) is Ttl.NEVER


@given(st.text(max_size=20))
def test_a_string_never_expires(value: str) -> None:
    assert not is_expired(_item({"S": value}), "exp", NOW)


def test_the_check_reads_the_clock_at_each_call() -> None:
    now = [NOW]
    check = expiry_check("exp", lambda: now[0])
    assert check is not None and expiry_check(None, lambda: NOW) is None
    item = _item({"N": str(int(NOW) + 10)})
    assert not check(item) and check.state(item) is Ttl.PENDING
    now[0] += 11
    assert check(item) and check.state(item) is Ttl.EXPIRED
    assert FAR_FUTURE > 900 * 365 * DAY  # far beyond any real expiry date


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alternator_migrator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_cli_copies_every_item_dynamodb_keeps_and_validate_agrees(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    """The issue's case: TTL on, `exp` of 0, ten years ago, a string, milliseconds and
    tomorrow are all kept by DynamoDB, so all are copied; only yesterday's is skipped."""
    create_table(src, table_name)
    src.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    now = int(time.time())
    values = {
        "zero": {"N": "0"},
        "ten-years-ago": {"N": str(now - 10 * 365 * DAY)},
        "string": {"S": str(now - DAY)},
        "milliseconds": {"N": str((now - DAY) * 1000)},
        "tomorrow": {"N": str(now + DAY)},
        "yesterday": {"N": str(now - DAY)},
    }
    batch_put(src, table_name, [{"pk": {"S": k}, "exp": v} for k, v in values.items()])
    cfg = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
        stream=False,
    )

    run = _cli("migrate", "--config", str(cfg), "--no-progress")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "Skipped 1 expired items" in run.stderr, run.stderr
    assert "copied 4 items whose 'exp' DynamoDB will never expire" in run.stderr, run.stderr
    assert {i["pk"]["S"] for i in scan_all(dst, table_name)} == set(values) - {"yesterday"}

    ok = _cli("validate", "--config", str(cfg))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 expired source items skipped" in ok.stdout + ok.stderr

    # A planted loss of an item DynamoDB keeps (TTL 0) is reported, however "past" its TTL.
    dst.delete_item(TableName=table_name, Key={"pk": {"S": "zero"}})
    bad = _cli("validate", "--config", str(cfg))
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1, out
    assert re.search(r"missing in target\s*:\s*1\b", out), out
    assert "zero" in out, out
