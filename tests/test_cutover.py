"""Cutover with a way back, end to end on two stream-capable servers: moto plays DynamoDB (the
old primary) and a second moto plays Alternator (the new primary). The differences of
Alternator Streams are covered on the scripted endpoint (tests/changes/test_alternator.py);
the 400 KB refusal uses it too, as moto refuses such an item itself."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from alternator_migrator.config import load
from alternator_migrator.localservers import Server
from alternator_migrator.state.savepoint import SavepointStore
from alternator_migrator.status import status

from .alternator_fakes import AlternatorStreams
from .helpers import (
    batch_put,
    boto_client,
    by_key,
    cli_process,
    create_table,
    eventually,
    normalize,
    read_savepoint,
    scan_all,
    start_cli,
    write_config,
)


def _configs(
    tmp: Path, moto: Server, moto_alt: Server, table: str, rev_settle: float = 1.0
) -> tuple[Path, Path]:
    fwd = write_config(
        tmp / "fwd.yaml",
        source_url=moto.url,
        source_table=table,
        target_url=moto_alt.url,
        target_table=table,
        savepoints=tmp / "sp-fwd",
        target_extra={"type": "alternator"},
    )
    rev = write_config(
        tmp / "rev.yaml",
        source_url=moto_alt.url,
        source_table=table,
        target_url=moto.url,
        target_table=table,
        savepoints=tmp / "sp-rev",
        source_extra={"type": "alternator", "streamsSettleSeconds": rev_settle},
    )
    return fwd, rev


class Writer:
    """The application: one thread of puts and deletes on a fixed key space (moto's stream
    wants one writer), until stopped."""

    def __init__(self, client: Any, table: str, keys: int = 40) -> None:
        self.client, self.table, self.keys = client, table, keys
        self.stop = threading.Event()
        self.n = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            k = f"k{self.n % self.keys}"
            if self.n % 7 == 3:
                self.client.delete_item(TableName=self.table, Key={"pk": {"S": k}})
            else:
                item = {"pk": {"S": k}, "v": {"N": str(self.n)}}
                self.client.put_item(TableName=self.table, Item=item)
            self.n += 1
            self.stop.wait(0.02)

    def start(self) -> Writer:
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _same(a: Any, b: Any, table: str) -> bool:
    return normalize(by_key(scan_all(a, table))) == normalize(by_key(scan_all(b, table)))


def _start_forward(tmp: Path, fwd: Path) -> Any:
    proc = start_cli(["migrate", "--config", str(fwd), "--no-progress"], tmp / "fwd.log")
    eventually(lambda: status(load(fwd), probe_stream=False).phase == "replay", 60)
    return proc


def test_cutover_and_reverse_replay(
    tmp_path: Path, moto: Server, moto_alt: Server, table_name: str
) -> None:
    old, new = boto_client(moto.url), boto_client(moto_alt.url)
    create_table(old, table_name)
    batch_put(old, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": "0"}} for i in range(100)])
    fwd, rev = _configs(tmp_path, moto, moto_alt, table_name)
    forward = _start_forward(tmp_path, fwd)
    app = Writer(old, table_name).start()
    try:
        log = tmp_path / "cutover.log"
        cut = start_cli(
            [
                "cutover",
                "--config",
                str(fwd),
                "--reverse-config",
                str(rev),
                "--yes",
                "--settle",
                "1",
            ],
            log,
        )
        # The application still writes: cutover waits in step (c) until it stops.
        eventually(lambda: "(c) Waiting until" in log.read_text(), 60)
        app.finish()
        assert cut.wait(120) == 0, log.read_text()
    finally:
        app.finish()
        if forward.poll() is None:
            forward.kill()
    text = log.read_text()
    print(text)  # the timeline, for the record
    assert "Switch the application to the target now" in text
    assert "Cutover timeline:" in text
    # The forward run was stopped cleanly by cutover, after applying everything.
    assert forward.wait(30) == 0
    assert _same(old, new, table_name)
    recorded = read_savepoint(tmp_path / "sp-rev")
    assert recorded["snapshotDone"] is True and recorded["shards"]
    # Cutover again: nothing to do, it says so.
    again = cli_process("cutover", "--config", str(fwd), "--reverse-config", str(rev), "--yes")
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "already done" in out

    # The reverse run from the recorded position: the forward run's own writes (in the new
    # primary's stream before that position) are not copied back.
    first = cli_process(
        "migrate", "--config", str(rev), "--stop-when-caught-up", "1", "--no-progress"
    )
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "Changes to be applied" not in out

    # The application writes on the new primary; the reverse run copies them to the old one.
    for i in range(60):
        new.put_item(TableName=table_name, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(1000 + i)}})
    for i in range(60, 70):
        new.delete_item(TableName=table_name, Key={"pk": {"S": f"k{i}"}})
    reverse = start_cli(["migrate", "--config", str(rev), "--no-progress"], tmp_path / "rev.log")
    try:
        # kill -9 once the reverse run has saved a position past the recorded one.
        eventually(lambda: read_savepoint(tmp_path / "sp-rev")["shards"] != recorded["shards"], 60)
        # Both directions at once would copy writes back and forth: the forward run refuses.
        both = cli_process("migrate", "--config", str(fwd), "--no-progress")
        _, err = both.communicate(timeout=60)
        assert both.returncode == 2 and "reverse run" in err
        for i in range(70, 90):
            new.put_item(TableName=table_name, Item={"pk": {"S": f"n{i}"}, "v": {"N": str(i)}})
        reverse.send_signal(signal.SIGKILL)  # kill -9: no savepoint written on the way out
        reverse.wait(30)
    finally:
        if reverse.poll() is None:
            reverse.kill()
    for i in range(90, 100):
        new.put_item(TableName=table_name, Item={"pk": {"S": f"n{i}"}, "v": {"N": str(i)}})
    resumed = cli_process(
        "migrate", "--config", str(rev), "--stop-when-caught-up", "2", "--no-progress"
    )
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "Changes to be applied" in out
    assert _same(old, new, table_name)
    # status of the reverse run: caught up once the new primary's stream has settled.
    eventually(lambda: status(load(rev)).caught_up, 60)
    check = cli_process("validate", "--config", str(rev))
    out, err = check.communicate(timeout=120)
    assert check.returncode == 0, out + err


def test_item_over_400kb_stops_the_reverse_run_naming_its_key(
    tmp_path: Path, moto: Server, table_name: str
) -> None:
    alt = AlternatorStreams(table_name).start()
    try:
        alt.new_generation(3)
        old = boto_client(moto.url)
        create_table(old, table_name)
        cfg = write_config(
            tmp_path / "rev.yaml",
            source_url=alt.url,
            source_table=table_name,
            target_url=moto.url,
            target_table=table_name,
            savepoints=tmp_path / "sp",
            source_extra={"type": "alternator", "streamsSettleSeconds": 0},
            target_extra={"skipInitialSnapshotTransfer": True},
        )
        store = SavepointStore(load(cfg))
        sp = store.new()
        sp.stream_arn = alt.arn
        store.save(sp)
        alt.write("small", 1)
        alt.write("huge", "x" * 500_000)  # Alternator takes it; DynamoDB refuses over 400 KB
        alt.write("after", 2)
        huge_seq = next(
            r["dynamodb"]["SequenceNumber"]
            for r in alt.shards[alt.shard_of("huge")].records
            if r["dynamodb"]["Keys"]["pk"]["S"] == "huge"
        )
        run = cli_process(
            "migrate", "--config", str(cfg), "--stop-when-caught-up", "1", "--no-progress"
        )
        _, err = run.communicate(timeout=120)
    finally:
        alt.stop()
    assert run.returncode == 1, err
    assert '{"pk":{"S":"huge"}}' in err and "400 KB" in err
    assert "x" * 100 not in err  # the key only, never the item
    # Not written, and its shard's savepoint position stays before it (other shards, other
    # keys, may go on: order is per item).
    keys = {i["pk"]["S"] for i in scan_all(boto_client(moto.url), table_name)}
    assert "huge" not in keys
    saved = store.load()
    assert saved is not None
    at = saved.shards.get(alt.shard_of("huge"))
    assert at is None or at.sequence_number is None or int(at.sequence_number) < int(huge_seq)


def _start_cutover(fwd: Path, rev: Path, log: Path, *extra: str) -> Any:
    """cutover as a child process whose stdin is a pipe nobody writes to (the prompt waits)."""
    import os
    import subprocess
    import sys

    with log.open("ab") as fh:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "alternator_migrator", "cutover", "--config", str(fwd)),
                *("--reverse-config", str(rev), "--settle", "1", *extra),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _interrupt(proc: Any, log: Path, waiting_for: str) -> None:
    """Ctrl-C once cutover says it waits for ``waiting_for``."""
    eventually(lambda: waiting_for in log.read_text(), 60, message=waiting_for)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130, log.read_text()
    assert "Cutover stopped" in log.read_text()


def _as_before(tmp: Path) -> None:
    assert read_savepoint(tmp / "sp-rev") == {}
    assert not list(tmp.glob("sp-*/cutover-*.json"))


def test_ctrl_c_at_each_step_then_cutover_again(
    tmp_path: Path, moto: Server, moto_alt: Server, table_name: str
) -> None:
    old, new = boto_client(moto.url), boto_client(moto_alt.url)
    create_table(old, table_name)
    batch_put(old, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": "0"}} for i in range(50)])
    fwd, rev = _configs(tmp_path, moto, moto_alt, table_name)
    # The same reverse migration (same tables: same savepoint) with a long settle window, so
    # that step (d) waits long enough to be interrupted.
    rev_slow = write_config(
        tmp_path / "rev-slow.yaml",
        source_url=moto_alt.url,
        source_table=table_name,
        target_url=moto.url,
        target_table=table_name,
        savepoints=tmp_path / "sp-rev",
        source_extra={"type": "alternator", "streamsSettleSeconds": 60},
    )
    forward = _start_forward(tmp_path, fwd)
    fcfg = load(fwd)
    try:
        # (a) the forward run is stuck behind a change: cutover waits for it.
        forward.send_signal(signal.SIGSTOP)
        old.put_item(TableName=table_name, Item={"pk": {"S": "k0"}, "v": {"N": "1"}})
        cut = _start_cutover(fwd, rev, tmp_path / "a.log", "--yes")
        _interrupt(cut, tmp_path / "a.log", "caught up no, lag unknown")
        _as_before(tmp_path)
        forward.send_signal(signal.SIGCONT)
        eventually(lambda: status(fcfg).caught_up, 60)

        # (c) the prompt: the operator has not stopped the application yet.
        cut = _start_cutover(fwd, rev, tmp_path / "c1.log")
        _interrupt(cut, tmp_path / "c1.log", "Type 'yes'")
        _as_before(tmp_path)

        # (c) the application still writes: the source never goes quiet.
        app = Writer(old, table_name).start()
        try:
            cut = _start_cutover(fwd, rev, tmp_path / "c2.log", "--yes")
            _interrupt(cut, tmp_path / "c2.log", "forward run caught up:")
        finally:
            app.finish()
        _as_before(tmp_path)

        # (d) waiting for the new primary's stream to show the last writes.
        eventually(lambda: status(fcfg).caught_up, 60)
        cut = _start_cutover(fwd, rev_slow, tmp_path / "d.log", "--yes")
        _interrupt(cut, tmp_path / "d.log", "(d) Waiting")
        _as_before(tmp_path)

        # (e) the forward run does not exit yet (stopped): Ctrl-C while waiting for it.
        forward.send_signal(signal.SIGSTOP)
        cut = _start_cutover(fwd, rev, tmp_path / "e.log", "--yes")
        _interrupt(cut, tmp_path / "e.log", "to release its lock")
        # The position is recorded but the cutover unfinished: the reverse run refuses it.
        early = cli_process("migrate", "--config", str(rev), "--no-progress")
        _, err = early.communicate(timeout=60)
        assert early.returncode == 2 and "has not finished" in err
        forward.send_signal(signal.SIGCONT)  # it now takes the SIGTERM: saves and exits
        assert forward.wait(60) == 0
    finally:
        forward.send_signal(signal.SIGCONT)
        if forward.poll() is None:
            forward.kill()
    # Run again: it sees the forward run stopped after applying everything, and finishes.
    cut = _start_cutover(fwd, rev, tmp_path / "again.log", "--yes")
    assert cut.wait(60) == 0, (tmp_path / "again.log").read_text()
    assert "Switch the application to the target now" in (tmp_path / "again.log").read_text()
    new.put_item(TableName=table_name, Item={"pk": {"S": "k1"}, "v": {"N": "77"}})
    reverse = cli_process(
        "migrate", "--config", str(rev), "--stop-when-caught-up", "1", "--no-progress"
    )
    _, err = reverse.communicate(timeout=120)
    assert reverse.returncode == 0, err
    check = cli_process("validate", "--config", str(rev))
    out, err = check.communicate(timeout=120)
    assert check.returncode == 0, out + err


def test_reverse_config_must_be_the_forward_tables_the_other_way_round(
    tmp_path: Path, moto: Server, moto_alt: Server
) -> None:
    from alternator_migrator.cutover import check_pair
    from alternator_migrator.errors import ConfigError

    fwd, rev = _configs(tmp_path, moto, moto_alt, "T")
    check_pair(load(fwd), load(rev))
    wrong = write_config(
        tmp_path / "wrong.yaml",
        source_url=moto.url,  # the old primary, not the new one
        source_table="T",
        target_url=moto_alt.url,
        target_table="T",
        savepoints=tmp_path / "sp-x",
    )
    try:
        check_pair(load(fwd), load(wrong))
    except ConfigError as e:
        assert "wrong.yaml" in str(e) and "`source`" in str(e)
    else:
        raise AssertionError("a reverse config reading the old primary was accepted")


def test_target_without_streams_stops_cutover_and_changes_nothing(
    tmp_path: Path, moto: Server, dynalite: Server, table_name: str
) -> None:
    old = boto_client(moto.url)
    create_table(old, table_name)
    fwd = write_config(
        tmp_path / "fwd.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,  # dynalite has no Streams API
        target_table=table_name,
        savepoints=tmp_path / "sp-fwd",
    )
    rev = write_config(
        tmp_path / "rev.yaml",
        source_url=dynalite.url,
        source_table=table_name,
        target_url=moto.url,
        target_table=table_name,
        savepoints=tmp_path / "sp-rev",
    )
    forward = _start_forward(tmp_path, fwd)
    try:
        cut = cli_process("cutover", "--config", str(fwd), "--reverse-config", str(rev), "--yes")
        _, err = cut.communicate(timeout=120)
        assert cut.returncode == 2, err
        assert "cannot enable a stream on the target table" in err
        assert forward.poll() is None  # the forward run goes on
        _as_before(tmp_path)
    finally:
        forward.terminate()
        forward.wait(30)
