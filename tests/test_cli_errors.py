"""Bad input: a short error naming the problem and the fix, exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.localservers import Server, free_port, start_moto

from .helpers import boto_client, create_table, write_config

SECRETS = ("source-secret-do-not-log", "target-secret-do-not-log")


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alternator_migrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def assert_clean_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert p.returncode == code, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("alternator-migrator: error:")]
    assert len(errors) == 1, p.stderr[-2000:]
    for n in needles:
        assert n in errors[0], errors[0]
    for s in SECRETS:
        assert s not in p.stderr and s not in p.stdout


def config(tmp_path: Path, moto: Server, dynalite: Server, table: str, **kw: Any) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        source_url=kw.pop("source_url", moto.url),
        source_table=table,
        target_url=kw.pop("target_url", dynalite.url),
        target_table=kw.pop("target_table", table),
        savepoints=tmp_path / "sp",
        **kw,
    )


def test_help_works() -> None:
    p = run_cli("--help")
    assert p.returncode == 0 and "migrate" in p.stdout


def test_malformed_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("source:\n  type: dynamodb\n   table: x\n")
    assert_clean_error(
        run_cli("migrate", "--config", str(bad)), 2, str(bad), "malformed YAML at line"
    )


def test_unknown_key_suggests(tmp_path: Path, moto: Server, dynalite: Server) -> None:
    p = config(tmp_path, moto, dynalite, "x", source_extra={"scanSegmnts": 4})
    assert_clean_error(
        run_cli("migrate", "--config", str(p)), 2, "scanSegmnts", "did you mean `scanSegments`"
    )


def test_wrong_type_and_range(tmp_path: Path, moto: Server, dynalite: Server) -> None:
    p = config(tmp_path, moto, dynalite, "x", source_extra={"throughputReadPercent": 3})
    assert_clean_error(
        run_cli("migrate", "--config", str(p)), 2, "throughputReadPercent", "0.1 to 1.5"
    )
    p = config(tmp_path, moto, dynalite, "x", source_extra={"scanSegments": "lots"})
    assert_clean_error(run_cli("migrate", "--config", str(p)), 2, "scanSegments", "whole number")


def test_missing_source_table(tmp_path: Path, moto: Server, dynalite: Server) -> None:
    p = config(tmp_path, moto, dynalite, "no-such-table")
    assert_clean_error(
        run_cli("migrate", "--config", str(p)), 2, "'no-such-table' does not exist", "source.table"
    )


def test_unreachable_endpoint_answers_quickly(
    tmp_path: Path, moto: Server, dynalite: Server
) -> None:
    port = free_port()
    p = config(tmp_path, moto, dynalite, "x", source_url=f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    r = run_cli("migrate", "--config", str(p))
    elapsed = time.monotonic() - t0
    assert_clean_error(r, 2, f"127.0.0.1:{port}", "unreachable", "source.endpoint")
    assert elapsed < 60  # bound of the subprocess run, not a performance assertion


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """moto checking credentials against its IAM: our dummy keys are rejected for real."""
    s = start_moto(tmp_path_factory.mktemp("moto-auth"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield s
    s.stop()


def test_rejected_credentials(tmp_path: Path, moto_with_auth: Server, dynalite: Server) -> None:
    p = config(tmp_path, moto_with_auth, dynalite, "x", source_url=moto_with_auth.url)
    assert_clean_error(
        run_cli("migrate", "--config", str(p)), 2, "rejected the credentials", "source.credentials"
    )


def test_source_with_foreign_stream_is_refused(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str
) -> None:
    create_table(src, table_name)
    src.update_table(
        TableName=table_name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    p = config(tmp_path, moto, dynalite, table_name)
    assert_clean_error(
        run_cli("migrate", "--config", str(p)),
        2,
        "already has a stream",
        "24 hours",
        "Disable the stream",
    )


def test_target_with_other_keys_is_refused(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    create_table(src, table_name)
    create_table(dst, table_name, hash_key=("id", "N"))
    p = config(tmp_path, moto, dynalite, table_name, stream=False)
    assert_clean_error(
        run_cli("migrate", "--config", str(p)), 2, "exists with key schema", "target.table"
    )


def test_permanent_write_failure_names_the_key(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    # The target's index wants `colour` as a number; the source has strings: the target
    # refuses the item for good, and the run must stop saying which one, not drop it.
    create_table(src, table_name)
    src.put_item(TableName=table_name, Item={"pk": {"S": "the-bad-one"}, "colour": {"S": "red"}})
    create_table(
        dst,
        table_name,
        extra_attrs=[("colour", "N")],
        gsis=[
            {
                "IndexName": "by-colour",
                "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    p = config(tmp_path, moto, dynalite, table_name, stream=False)
    r = run_cli("migrate", "--config", str(p), "--no-progress")
    assert_clean_error(r, 1, "the-bad-one", "refused")
    assert (
        boto_client(dynalite.url)
        .get_item(TableName=table_name, Key={"pk": {"S": "the-bad-one"}})
        .get("Item")
        is None
    )
