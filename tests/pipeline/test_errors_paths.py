"""Each failure path ends in ONE clear line with the right exit code, through the CLI, on the
real servers (a fake Streams endpoint or a static server where they cannot fail this way)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator import cli
from alternator_migrator.aws.client import DynamoError, RetryPolicy
from alternator_migrator.aws.transport import HttpPool, TransportError
from alternator_migrator.localservers import Server, free_port
from alternator_migrator.metrics import MetricsServer
from alternator_migrator.state.savepoint import SavepointStore

from ..fakes import FakeStreams, fake_config, lean_client
from ..helpers import (
    StaticHttpServer,
    create_table,
    eventually,
    read_savepoint,
    start_cli,
    write_config,
)
from ..test_cli_errors import assert_clean_error, config, run_cli


def _error_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("alternator-migrator: error:")]
    assert len(lines) == 1, text[-3000:]
    print("\n" + lines[0])
    return lines[0]


# ---------------------------------------------------------------------- endpoints


def test_assume_role_with_sts_unreachable(
    tmp_path: Path, moto: Server, dynalite: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = "arn:aws:iam::123456789012:role/migrator"
    sts = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # Both variables keep every STS call on loopback, whatever the boto3 version honours.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sts)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    p = config(
        tmp_path,
        moto,
        dynalite,
        "x",
        source_extra={
            "credentials": {
                "accessKey": "AKIDSOURCE",
                "secretKey": "source-secret-do-not-log",
                "assumeRole": {"arn": role, "sessionName": "h2-test"},
            }
        },
    )
    r = run_cli("migrate", "--config", str(p))
    _error_line(r.stderr)
    assert_clean_error(
        r,
        2,
        f"cannot assume role {role}",
        "STS",
        "source.credentials.assumeRole",
    )


def test_an_http_200_answer_that_is_not_json(
    tmp_path: Path, moto: Server, dynalite: Server
) -> None:
    web = StaticHttpServer(200, b"<html><body>It works!</body></html>")
    try:
        p = config(tmp_path, moto, dynalite, "x", source_url=web.url)
        r = run_cli("migrate", "--config", str(p))
    finally:
        web.stop()
    _error_line(r.stderr)
    assert_clean_error(
        r, 2, "source", web.url, "DescribeTable", "not a JSON object", "source.endpoint"
    )


# ---------------------------------------------------------------------- stream records


@pytest.fixture
def fake() -> Iterator[FakeStreams]:
    f = FakeStreams(records_per_call=3).start()
    yield f
    f.stop()


def _break_last(fake: FakeStreams, how: str) -> None:
    rec = fake.shards["a"].records[-1]
    if how == "no NewImage":
        rec["dynamodb"].pop("NewImage")
    elif how == "unknown eventName":
        rec["eventName"] = "UPSERT"
    else:
        rec["dynamodb"].pop("Keys")


@pytest.mark.parametrize("how", ["no NewImage", "unknown eventName", "no Keys"])
def test_a_bad_stream_record_stops_the_run_before_it(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table_name: str, how: str
) -> None:
    fake.add_shard("a")
    good = [fake.put("a", f"k{i}", i) for i in range(3)]  # the first GetRecords page
    fake.put("a", "k-bad", 99)
    _break_last(fake, how)
    bad = fake.shards["a"].records[-1]
    fake.put("a", "k-after", 100)  # must not be applied: it comes after the bad one
    cfg = fake_config(tmp_path, fake, dynalite, table_name)
    store = SavepointStore(cfg)
    sp = store.new()
    sp.stream_arn, sp.snapshot_done, sp.total_segments = fake.arn, True, 4
    sp.segments_done = {0, 1, 2, 3}
    store.save(sp)

    r = run_cli("migrate", "--config", cfg.path, "--no-progress")
    _error_line(r.stderr)

    assert_clean_error(
        r,
        1,
        f"stream record {bad['eventID']}",
        bad["dynamodb"]["SequenceNumber"],
        "of shard a",
        how if how != "unknown eventName" else "unknown eventName 'UPSERT'",
    )
    # Everything before it applied and checkpointed, nothing at or after it.
    assert read_savepoint(tmp_path / "sp")["shards"]["a"]["sequenceNumber"] == good[-1]
    keys = {i["pk"]["S"] for i in dst.scan(TableName=table_name)["Items"]}
    assert keys == {"k0", "k1", "k2"}


def test_source_table_deleted_during_replay(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, table_name: str
) -> None:
    create_table(src, table_name)
    src.put_item(TableName=table_name, Item={"pk": {"S": "a"}})
    cfg = config(tmp_path, moto, dynalite, table_name)
    log = tmp_path / "run.log"
    p = start_cli(["migrate", "--config", str(cfg), "--no-progress"], log)
    try:
        eventually(lambda: read_savepoint(tmp_path / "sp").get("snapshotDone"), 60, 0.1, "replay")
        src.delete_table(TableName=table_name)
        rc = p.wait(90)  # the shard tree is re-read every 10 s
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert rc == 2, text[-3000:]
    assert "Traceback" not in text
    line = _error_line(text)
    assert f"source table {table_name!r} was deleted during the replay" in line
    assert moto.url in line


# ---------------------------------------------------------------------- writes


def test_a_refused_write_names_the_key_not_the_item(
    tmp_path: Path, moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str
) -> None:
    private = "4111-1111-1111-1111"  # an attribute value that must not reach a log or an error
    create_table(src, table_name)
    src.put_item(
        TableName=table_name,
        Item={"pk": {"S": "the-bad-one"}, "colour": {"S": "red"}, "card": {"S": private}},
    )
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
    p = write_config(
        tmp_path / "c.yaml",
        source_url=moto.url,
        source_table=table_name,
        target_url=dynalite.url,
        target_table=table_name,
        savepoints=tmp_path / "sp",
        stream=False,
    )
    r = run_cli("migrate", "--config", str(p), "--no-progress")
    assert_clean_error(r, 1, 'key {"pk":{"S":"the-bad-one"}}', "refused")
    assert private not in r.stderr and private not in r.stdout
    assert "red" not in _error_line(r.stderr)


# ---------------------------------------------------------------------- the CLI itself


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_v(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(path: str) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("alternator_migrator.config.load", boom)
    assert cli.main(["--log-format", "text", "migrate", "--config", "x.yaml"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _error_line(err) == (
        "alternator-migrator: error: unexpected error: RuntimeError: boom second line "
        "(rerun with -v for the traceback)"
    )
    assert cli.main(["-v", "--log-format", "text", "migrate", "--config", "x.yaml"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err
    logging.getLogger().handlers.clear()  # main() installed a handler on the captured stderr


def test_metrics_listen_on_loopback_unless_asked() -> None:
    args = cli.build_parser().parse_args(["migrate", "--config", "x.yaml", "--metrics-port", "0"])
    assert args.metrics_host == "127.0.0.1"
    server = MetricsServer(0).start()
    try:
        assert server._server.server_address[0] == "127.0.0.1"
    finally:
        server.stop()
    args = cli.build_parser().parse_args(
        ["migrate", "--config", "x.yaml", "--metrics-port", "0", "--metrics-host", "127.0.0.2"]
    )
    server = MetricsServer(0, args.metrics_host).start()
    try:
        assert server._server.server_address[0] == "127.0.0.2"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "failure", [TransportError("bad status line 'HELLO'"), ConnectionResetError(104, "reset")]
)
def test_a_transport_failure_is_a_dynamo_error_naming_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    # Whatever the transport raises (bad framing, a reset) becomes one retryable ConnectionError
    # that the CLI prints as one line, never a traceback.
    def post(self: HttpPool, headers: dict[str, str], body: bytes) -> None:
        raise failure

    monkeypatch.setattr(HttpPool, "post", post)
    client = lean_client("http://127.0.0.1:9", retry=RetryPolicy(max_attempts=1))
    with pytest.raises(DynamoError) as e:
        client.call("Scan", {"TableName": "t"})
    client.close()
    assert e.value.code == "ConnectionError" and e.value.retryable
    assert e.value.exit_code == 2
    assert str(e.value).startswith("source endpoint http://127.0.0.1:9: Scan: ConnectionError:")
