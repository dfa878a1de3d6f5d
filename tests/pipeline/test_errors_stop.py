"""Stop means stop: SIGINT ends the run promptly in every phase, even while a call is being
retried or a low write budget holds the writers back; the savepoint keeps what was written,
and a restart converges. Plus the retry helper's warning and interruption, one by one."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.aws import retry
from alternator_migrator.aws.client import CredentialSource, DynamoClient
from alternator_migrator.aws.retry import RetryPolicy
from alternator_migrator.aws.throttle import RateLimiter
from alternator_migrator.changes.enable import ensure_stream
from alternator_migrator.config import Credentials
from alternator_migrator.errors import Interrupted
from alternator_migrator.localservers import Server
from alternator_migrator.metrics import METRICS

from ..fakes import FakeStreams, lean_client
from ..helpers import (
    batch_put,
    create_table,
    eventually,
    read_savepoint,
    scan_all,
    start_cli,
    table_diff,
    write_config,
)
from ..proxy import FaultProxy

# Bounds on how long a stopped run may take, so a hang fails the test instead of blocking it.
# Before this change the same runs took 300 s (the retry deadline) and minutes (the budget).
STOP_BOUND = 30


def _seed(client: Any, table: str, n: int, pad: int) -> None:
    create_table(client, table)
    batch_put(
        client,
        table,
        [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}, "pad": {"S": "x" * pad}} for i in range(n)],
    )


def _stop(p: Any, log: Path) -> int:
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        rc: int = p.wait(STOP_BOUND)
    except Exception:
        p.kill()
        raise AssertionError(
            "the run did not stop after SIGINT:\n" + log.read_text()[-3000:]
        ) from None
    print(f"\nSIGINT to exit: {time.monotonic() - t0:.2f}s")
    return rc


@pytest.mark.parametrize("phase", ["schema", "snapshot", "replay"])
def test_sigint_while_the_source_answers_500_exits_0_with_a_savepoint(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    phase: str,
) -> None:
    _seed(src, table_name, 50, pad=10)
    # The first call of the phase, and every call after it, fails with 500 and is retried.
    first = {"schema": "DescribeTable", "snapshot": "Scan", "replay": None}[phase]
    with FaultProxy(moto.url, ops={first} if first else None).start() as proxy:
        cfg = write_config(
            tmp_path / "c.yaml",
            source_url=proxy.url,
            source_table=table_name,
            target_url=dynalite.url,
            target_table=table_name,
            savepoints=tmp_path / "sp",
        )
        if first:
            proxy.set_faults(error500=1.0)
        log = tmp_path / "run.log"
        p = start_cli(["migrate", "--config", str(cfg), "--no-progress"], log)
        try:
            if phase == "replay":
                eventually(
                    lambda: read_savepoint(tmp_path / "sp").get("snapshotDone"), 60, 0.1, "replay"
                )
                proxy.set_faults(error500=1.0)
            eventually(lambda: proxy.count("error500") >= 5, 30, 0.05, "retries under way")
        except BaseException:
            p.kill()
            raise
        rc = _stop(p, log)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "error:" not in text
    assert "Stop requested (SIGINT)" in text
    sp = read_savepoint(tmp_path / "sp")
    if phase == "schema":
        return  # nothing was started, so there is nothing to save
    assert sp["streamArn"]  # the stream enabled before the snapshot is ours on restart
    assert sp["snapshotDone"] == (phase == "replay")
    if phase == "replay":
        assert len(scan_all(dst, table_name)) == 50


def test_sigint_during_a_slow_budget_snapshot_then_resume_is_identical(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    # ~2.5 KB items, so Scan pages hold ~400 items; 20 WCU/s writes ~8 of them a second: the
    # pages already read would take minutes to write.
    _seed(src, table_name, 2000, pad=2500)
    common: dict[str, Any] = {
        "source_url": moto.url,
        "source_table": table_name,
        "target_url": dynalite.url,
        "target_table": table_name,
        "savepoints": tmp_path / "sp",
        "stream": False,
        "top_extra": {"savepoints": {"path": str(tmp_path / "sp"), "intervalSeconds": 0.2}},
    }
    slow = write_config(
        tmp_path / "slow.yaml",
        **common,
        source_extra={"scanSegments": 4, "maxMapTasks": 2},
        target_extra={"writeThroughput": 40},
    )
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    p = start_cli(["migrate", "--config", str(slow), "--no-progress"], log1)
    try:
        eventually(lambda: _target_count(dst, table_name) > 0, 60, 0.1, "the first batches written")
    except BaseException:
        p.kill()
        raise
    rc = _stop(p, log1)
    text = log1.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text
    sp = read_savepoint(tmp_path / "sp")
    assert sp and not sp["snapshotDone"]
    written = _target_count(dst, table_name)
    assert written < 2000
    # Same migration (same fingerprint), no budget: the restart resumes and completes.
    fast = write_config(
        tmp_path / "fast.yaml", **common, source_extra={"scanSegments": 4, "maxMapTasks": 2}
    )
    p2 = start_cli(["migrate", "--config", str(fast), "--no-progress"], log2)
    assert p2.wait(120) == 0, log2.read_text()[-3000:]
    assert read_savepoint(tmp_path / "sp")["snapshotDone"]
    assert table_diff(src, table_name, dst, table_name, ("pk",)) == []
    print(f"\nstopped with {written} of 2000 items written; resumed to an identical target")


def _target_count(dst: Any, table: str) -> int:
    try:
        return int(dst.scan(TableName=table, Select="COUNT")["Count"])
    except dst.exceptions.ResourceNotFoundException:
        return 0


def test_a_long_retry_warns_naming_the_endpoint_and_the_stop_interrupts_it(
    moto: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fast_watchdog(monkeypatch)
    stop = threading.Event()
    errors: list[BaseException] = []
    before = METRICS.counter("retries_total", cause="server_error", endpoint="source")
    with FaultProxy(moto.url, error500=1.0).start() as proxy:
        url = proxy.url
        client = lean_client(url, retry=RetryPolicy(base=0.05, cap=0.1))
        client.stop = stop

        def call() -> None:
            try:
                client.call("DescribeTable", {"TableName": "whatever"})
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=call, daemon=True)
        with caplog.at_level(logging.WARNING, logger="alternator_migrator.aws.retry"):
            t.start()
            line = eventually(
                lambda: [r.getMessage() for r in caplog.records if "failing for" in r.getMessage()],
                20,
                0.05,
                "a warning about the failing call",
            )[0]
            stop.set()
            t.join(STOP_BOUND)
        client.close()
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Interrupted), errors
    assert errors[0].exit_code == 0
    assert f"source endpoint {url}" in line
    assert "DescribeTable" in line and "server_error" in line and "InternalServerError" in line
    # One line per endpoint and operation per WARN_EVERY, not one per attempt.
    assert sum("failing for" in r.getMessage() for r in caplog.records) == 1
    assert METRICS.counter("retries_total", cause="server_error", endpoint="source") > before


def _fast_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "WARN_AFTER", 0.3)
    monkeypatch.setattr(retry, "WATCH_PERIOD", 0.05)
    monkeypatch.setattr(retry, "_warned", {})


class _Hanging:
    """Accepts connections and reads requests, but never answers (a hung target)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.conns.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _call_in_background(
    hung: _Hanging, read_timeout: float
) -> tuple[DynamoClient, threading.Event, threading.Thread, list[BaseException]]:
    """A target client (with a stop event) whose BatchWriteItem to ``hung`` runs in a thread."""
    stop = threading.Event()
    client = DynamoClient(
        hung.url,
        "us-east-1",
        CredentialSource(Credentials("AKIDTEST", "test-secret"), None, "us-east-1"),
        label="target",
        read_timeout=read_timeout,
        stop=stop,
    )
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.call("BatchWriteItem", {"RequestItems": {}})
        except BaseException as e:
            errors.append(e)

    return client, stop, threading.Thread(target=call, daemon=True), errors


def test_a_call_without_an_answer_is_reported_while_it_waits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fast_watchdog(monkeypatch)
    hung = _Hanging()
    client, stop, t, errors = _call_in_background(hung, read_timeout=60)
    with caplog.at_level(logging.WARNING, logger="alternator_migrator.aws.retry"):
        t.start()
        line = eventually(
            lambda: [r.getMessage() for r in caplog.records if "no answer" in r.getMessage()],
            20,
            0.05,
            "a warning about the unanswered call",
        )[0]
        stop.set()
        hung.close()  # the connection drops; the retry that follows sees the stop
        t.join(STOP_BOUND)
    client.close()
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Interrupted), errors
    assert line.startswith(f"target endpoint {hung.url}: BatchWriteItem has had no answer for")


def test_budget_wait_is_interrupted_by_the_stop() -> None:
    limiter = RateLimiter(1.0)  # one unit a second; 10,000 units would wait hours
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        limiter.acquire(10_000, stop)


def test_the_wait_for_an_enabling_stream_ends_on_stop() -> None:
    fake = FakeStreams().start()
    try:
        fake.status = "ENABLING"  # as Alternator's or DynamoDB's stream is for a while
        client = lean_client(fake.url)
        client.stop = threading.Event()
        client.stop.set()
        src = fake.handle(".DescribeTable", {"TableName": fake.table})["Table"]
        with pytest.raises(Interrupted):
            ensure_stream(client, src, fake.arn, poll_seconds=3600)
        client.close()
    finally:
        fake.stop()


def test_the_wait_for_an_active_target_table_ends_on_stop() -> None:
    """A target stuck in CREATING must not hold a stopped run for the 600 s deadline."""
    from alternator_migrator.errors import Interrupted
    from alternator_migrator.target.schema import _wait_active

    class Creating:
        stop = threading.Event()
        calls = 0

        def call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
            self.calls += 1
            return {"Table": {"TableName": body["TableName"], "TableStatus": "CREATING"}}

    client = Creating()
    client.stop.set()
    with pytest.raises(Interrupted, match="ACTIVE"):
        _wait_active(client, "t")  # type: ignore[arg-type]
    assert client.calls == 1


def test_a_hung_call_is_cut_a_grace_period_after_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server never answers and the read timeout is long: the stop cuts the exchange."""
    import alternator_migrator.aws.client as clients

    monkeypatch.setattr(clients, "STOP_GRACE", 0.2)
    hung = _Hanging()
    client, stop, t, errors = _call_in_background(hung, read_timeout=600)
    t.start()
    eventually(lambda: hung.conns, 20, 0.05, "the request reached the server")
    stop.set()
    t.join(STOP_BOUND)  # the server stays up: only the cut can end the call
    alive = t.is_alive()
    hung.close()
    client.close()
    assert not alive
    assert len(errors) == 1 and isinstance(errors[0], Interrupted), errors
