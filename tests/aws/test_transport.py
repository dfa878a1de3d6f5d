"""The lean HTTP transport against scripted servers: framing, resets, CRC32, fds >= 1024,
deadlines, proxies (CONNECT and absolute-form), TLS with a private CA, AWS endpoint resolution."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from alternator_migrator.aws.client import (
    CredentialSource,
    DynamoClient,
    DynamoError,
    FrozenCreds,
    RetryPolicy,
    aws_endpoints,
)
from alternator_migrator.aws.signing import Signer
from alternator_migrator.aws.transport import HttpPool, Response, TransportError, post_many
from alternator_migrator.cli import main
from alternator_migrator.config import Credentials
from alternator_migrator.errors import EndpointError, Interrupted
from alternator_migrator.localservers import Server

from ..helpers import eventually, write_config
from ..netfakes import ConnectProxy, HttpForwarder, PrivateCA, ScriptedServer, http_response

CREDS = CredentialSource(Credentials(access_key="AKID", secret_key="secret"), None, None)
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in (*_PROXY_VARS, "AWS_CA_BUNDLE"):
        monkeypatch.delenv(v, raising=False)


@pytest.fixture
def scripted() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for s in servers:
        s.stop()


def serve(scripted: list[ScriptedServer], *answers: bytes | None) -> ScriptedServer:
    """A server answering its i-th request with answers[i] (the last one from then on)."""
    s = ScriptedServer(lambda i, head, body: answers[min(i, len(answers) - 1)]).start()
    scripted.append(s)
    return s


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return PrivateCA(tmp_path_factory.mktemp("ca"))


def client(url: str, **kw: Any) -> DynamoClient:
    return DynamoClient(url, "us-east-1", CREDS, retry=RetryPolicy(base=0.001, cap=0.01), **kw)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n{}", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            "chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
            "chunk size",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", "CRLF"),
        (b"SMTP ready\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "header larger"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "exceeds"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "closed"),
        # A large body is read in place (recv_into), a path of its own.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"{" * 100_000, "closed"),
        (None, "reset|closed"),
    ],
    ids=[
        "length-not-a-number",
        "length-negative",
        "length-twice",
        "chunk-size-not-hex",
        "chunk-size-negative",
        "chunk-without-crlf",
        "not-http",
        "header-too-large",
        "body-over-cap",
        "closed-mid-body",
        "closed-mid-large-body",
        "reset",
    ],
)
def test_bad_framing_is_a_transport_error(
    scripted: list[ScriptedServer], answer: bytes | None, problem: str
) -> None:
    # Closing after the answer makes a short body visible as "closed mid-response".
    s = ScriptedServer(lambda i, h, b: answer, close=True).start()
    scripted.append(s)
    pool = HttpPool(s.url)
    with pytest.raises(TransportError, match=problem):
        pool.post({}, b"{}")


def test_chunked_body_with_trailers_and_crc_is_read(scripted: list[ScriptedServer]) -> None:
    body = b'{"ok":1}'
    s = serve(
        scripted,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        + f"x-amz-crc32: {zlib.crc32(body)}\r\n\r\n".encode()
        + b"3;ext=1\r\n"
        + body[:3]
        + b"\r\n5\r\n"
        + body[3:]
        + b"\r\n0\r\nX-Trailer: y\r\n\r\n",
    )
    pool = HttpPool(s.url)
    assert pool.post({}, b"{}").body == body
    assert pool.post({}, b"{}").body == body  # the connection was left at a clean boundary
    assert len(pool._idle) == 1


def test_crc_mismatch_is_retried_and_the_bad_body_never_used(
    scripted: list[ScriptedServer],
) -> None:
    bad = orjson.dumps({"Item": {"pk": {"S": "corrupted"}}})
    good = orjson.dumps({"Item": {"pk": {"S": "right"}}})
    s = serve(
        scripted,
        http_response(bad, headers=f"x-amz-crc32: {zlib.crc32(good)}\r\n"),
        http_response(good, headers=f"x-amz-crc32: {zlib.crc32(good)}\r\n"),
    )
    retries: list[str] = []
    out = client(s.url).call(
        "GetItem", {"TableName": "t"}, on_retry=lambda e, n: retries.append(e.message)
    )
    assert out == {"Item": {"pk": {"S": "right"}}}
    assert len(s.requests) == 2
    assert len(retries) == 1 and "x-amz-crc32" in retries[0]


def test_a_large_body_is_read_whole_checked_and_the_connection_kept(
    scripted: list[ScriptedServer],
) -> None:
    # ~1 MB, as a GetRecords or Scan page: read in place, over many recv_into calls.
    good = orjson.dumps({"Items": [{"pk": {"S": f"k{i:07d}"}} for i in range(45_000)]})
    bad = good.replace(b"k0012345", b"k0012346")
    crc = f"x-amz-crc32: {zlib.crc32(good)}\r\n"
    s = serve(
        scripted,
        http_response(good, headers=crc),
        http_response(bad, headers=crc),
        http_response(good, headers=crc),
    )
    c = client(s.url)
    assert len(good) > 1_000_000
    assert c.call_bytes("Scan", {}) == good
    retries: list[str] = []
    out = c.call("Scan", {}, on_retry=lambda e, n: retries.append(e.message))
    assert out["Items"][12345] == {"pk": {"S": "k0012345"}}  # the corrupted copy was dropped
    assert len(retries) == 1 and "x-amz-crc32" in retries[0]
    assert len(s.requests) == 3


def test_descriptors_above_1024_work(scripted: list[ScriptedServer]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"cannot open 1,100 files here (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        s = serve(scripted, http_response(b'{"n":1}'))
        pool = HttpPool(s.url)
        for _ in range(3):  # the 2nd and 3rd reuse the idle connection (its stale check)
            assert pool.post({}, b"{}").body == b'{"n":1}'
        assert pool._idle[0].sock.fileno() >= 1024
        assert len(s.requests) == 3
        pool.close()
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("length", [100, 1_000_000], ids=["small-body", "large-body"])
def test_a_call_has_a_deadline_not_only_a_read_timeout(
    scripted: list[ScriptedServer], length: int
) -> None:
    # Headers, then a body that never completes: each recv would wait read_timeout anew.
    s = serve(scripted, f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n{{".encode())
    pool = HttpPool(s.url, read_timeout=30, call_timeout=0.3)
    with pytest.raises(TransportError, match=r"within 0.3s"):
        pool.post({}, b"{}")


def test_endpoint_path_is_used_and_signed_as_botocore_does(
    scripted: list[ScriptedServer],
) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCreds

    s = serve(scripted, http_response(b"{}"))
    client(s.url + "/alternator/api").call("ListTables", {})
    head = s.requests[0][0].decode()
    assert head.startswith("POST /alternator/api HTTP/1.1")

    now = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
    ours = Signer("us-east-1").headers(
        "h:1",
        "DynamoDB_20120810.ListTables",
        b"{}",
        FrozenCreds("AKID", "secret", None),
        now,
        "/alternator/api",
    )
    req = AWSRequest(
        "POST",
        "http://h:1/alternator/api",
        data=b"{}",
        headers={
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "DynamoDB_20120810.ListTables",
            "x-amz-date": "20261129T120000Z",
        },
    )
    auth = SigV4Auth(BotoCreds("AKID", "secret"), "dynamodb", "us-east-1")
    req.context["timestamp"] = "20261129T120000Z"
    canonical = auth.canonical_request(req)
    assert canonical.split("\n")[1] == "/alternator/api"
    sts = auth.string_to_sign(req, canonical)
    assert ours["authorization"].endswith(auth.signature(sts, req))


def test_aws_endpoints_partitions_and_environment() -> None:
    assert aws_endpoints("eu-west-1", {}) == (
        "https://dynamodb.eu-west-1.amazonaws.com",
        "https://streams.dynamodb.eu-west-1.amazonaws.com",
    )
    assert aws_endpoints("cn-north-1", {})[0] == "https://dynamodb.cn-north-1.amazonaws.com.cn"
    assert aws_endpoints("us-iso-east-1", {})[1].endswith(".c2s.ic.gov")
    env = {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:1", "AWS_ENDPOINT_URL": "http://g:2"}
    assert aws_endpoints("us-east-1", env) == ("http://127.0.0.1:1", "http://g:2")
    env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = "http://127.0.0.1:3"
    assert aws_endpoints("us-east-1", env) == ("http://127.0.0.1:1", "http://127.0.0.1:3")
    env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
    assert aws_endpoints("us-east-1", env)[0] == "https://dynamodb.us-east-1.amazonaws.com"
    with pytest.raises(EndpointError, match="AWS_ENDPOINT_URL_DYNAMODB"):
        aws_endpoints("us-east-1", {"AWS_ENDPOINT_URL_DYNAMODB": "127.0.0.1:1"})


def test_http_proxy_gets_absolute_form_and_no_proxy_bypasses_it(
    scripted: list[ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = serve(scripted, http_response(b'{"TableNames":[]}'))
    proxy = ConnectProxy().start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert client(s.url).call("ListTables", {}) == {"TableNames": []}
        assert proxy.seen == {f"POST 127.0.0.1:{s.port}": 1}
        assert s.requests[0][0].startswith(f"POST http://127.0.0.1:{s.port}/ HTTP/1.1".encode())

        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        client(s.url).call("ListTables", {})
        assert sum(proxy.seen.values()) == 1
        assert s.requests[1][0].startswith(b"POST / HTTP/1.1")
    finally:
        proxy.stop()


@contextlib.contextmanager
def tls_and_proxy(
    dynalite: Server, ca: PrivateCA, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HttpForwarder, ConnectProxy]]:
    """dynalite behind TLS with the private CA trusted (AWS_CA_BUNDLE), and a CONNECT proxy
    (not in use until HTTPS_PROXY names it)."""
    tls = HttpForwarder(dynalite.url, tls=ca.server_ctx).start()
    proxy = ConnectProxy().start()
    try:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.pem))
        yield tls, proxy
    finally:
        proxy.stop()
        tls.stop()


def test_https_with_private_ca_from_env_through_connect_proxy(
    dynalite: Server, ca: PrivateCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_and_proxy(dynalite, ca, monkeypatch) as (tls, proxy):
        assert "TableNames" in client(tls.url).call("ListTables", {})
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        assert "TableNames" in client(tls.url).call("ListTables", {})
        assert proxy.seen == {f"CONNECT 127.0.0.1:{tls.port}": 1}
        assert tls.ops["ListTables"] == 2


def test_untrusted_certificate_is_exit_2_naming_endpoint_and_problem(
    dynalite: Server, ca: PrivateCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = HttpForwarder(dynalite.url, tls=ca.server_ctx).start()
    try:
        cfg = write_config(
            tmp_path / "c.yaml",
            source_url=f"https://127.0.0.1:{tls.port}",
            source_table="t",
            target_url=dynalite.url,
            target_table="t",
            savepoints=tmp_path / "sp",
            stream=False,
        )
        assert main(["migrate", "--config", str(cfg)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert f"source endpoint https://127.0.0.1:{tls.port}" in err
        assert "not trusted" in err and "certificate" in err
        assert "caBundle" in err and "AWS_CA_BUNDLE" in err

        # ... and the same endpoint with `endpoint.caBundle` in the config is trusted.
        assert "TableNames" in client(tls.url, ca_bundle=str(ca.pem)).call("ListTables", {})
    finally:
        tls.stop()


def test_missing_ca_bundle_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="caBundle"):
        client("https://127.0.0.1:1", ca_bundle=str(tmp_path / "nope.pem"))


def test_max_connections_and_time_to_live_per_pool(scripted: list[ScriptedServer]) -> None:
    import threading

    from alternator_migrator.aws.transport import ConnectError

    release = threading.Event()

    def script(i: int, head: bytes, body: bytes) -> bytes:
        if i == 0:
            release.wait(10)  # the first request holds its connection
        return http_response(b"{}")

    s = ScriptedServer(script).start()
    scripted.append(s)
    pool = HttpPool(s.url, max_connections=1, acquire_timeout=0.05, time_to_live=1e-6)
    first = threading.Thread(target=pool.post, args=({}, b"{}"))
    first.start()
    eventually(lambda: len(s.requests) == 1, 10, message="first request arrived")
    with pytest.raises(ConnectError, match="maxConnections"):
        pool.post({}, b"{}")
    release.set()
    first.join(10)
    pool.post({}, b"{}")  # the slot is free again; the old connection outlived its TTL
    assert len(s.requests) == 2 and len(s._conns) == 2


# --------------------------------------------------------------------------- post_many


def _echo(i: int, head: bytes, body: bytes) -> bytes | None:
    return (
        None
        if body == b"reset"
        else http_response(b'{"echo":' + orjson.dumps(body.decode()) + b"}")
    )


def test_post_many_answers_in_order_with_each_failure_in_its_place(
    scripted: list[ScriptedServer],
) -> None:
    s = ScriptedServer(_echo).start()
    scripted.append(s)
    pool = HttpPool(s.url)
    bodies = [b"a", b"b", b"reset", b"d", b"e"]
    out = post_many(iter([(pool, pool.request({}, b)) for b in bodies]), in_flight=3)
    assert [type(r).__name__ for r in out] == [
        "Response",
        "Response",
        "TransportError",
        "Response",
        "Response",
    ]
    assert [orjson.loads(r.body)["echo"] for r in out if isinstance(r, Response)] == [
        "a",
        "b",
        "d",
        "e",
    ]
    assert not pool._busy  # every connection given back or closed
    assert len(pool._idle) <= 3


def test_post_many_keeps_in_flight_requests_on_the_wire_at_once(
    scripted: list[ScriptedServer],
) -> None:
    # Each answer waits until 3 requests are in the server at once: with fewer sent before
    # the first answer is read, the barrier breaks and the requests are reset.
    barrier = threading.Barrier(3, timeout=10)
    inside = [0, 0]  # now, most
    lock = threading.Lock()

    def script(i: int, head: bytes, body: bytes) -> bytes | None:
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return None
        finally:
            with lock:
                inside[0] -= 1
        return http_response(b"{}")

    s = ScriptedServer(script).start()
    scripted.append(s)
    pool = HttpPool(s.url)
    out = post_many(iter([(pool, pool.request({}, b"{}")) for _ in range(6)]), in_flight=3)
    assert all(isinstance(r, Response) and r.status == 200 for r in out), out
    assert inside[1] == 3  # never more than in_flight


def test_post_many_within_max_connections_waits_for_its_own_answers(
    scripted: list[ScriptedServer],
) -> None:
    s = ScriptedServer(_echo).start()
    scripted.append(s)
    pool = HttpPool(s.url, max_connections=2, acquire_timeout=0.5)
    out = post_many(iter([(pool, pool.request({}, b"%d" % i)) for i in range(7)]), in_flight=5)
    assert [orjson.loads(r.body)["echo"] for r in out if isinstance(r, Response)] == [
        str(i) for i in range(7)
    ]
    assert len(pool._idle) <= 2 and not pool._busy


def test_post_many_abandons_what_is_on_the_wire_when_its_producer_fails(
    scripted: list[ScriptedServer],
) -> None:
    s = ScriptedServer(_echo).start()
    scripted.append(s)
    pool = HttpPool(s.url, max_connections=4)

    def requests() -> Iterator[tuple[HttpPool, bytes]]:
        yield pool, pool.request({}, b"sent")
        yield pool, pool.request({}, b"sent too")
        raise Interrupted("stop requested while waiting for the write budget")

    with pytest.raises(Interrupted):
        post_many(requests(), in_flight=4)
    assert not pool._busy
    assert pool._slots is not None
    for _ in range(4):  # every slot was given back
        assert pool._slots.acquire(False)


def test_call_many_over_tls_through_a_proxy_answers_each_call_in_its_place(
    dynalite: Server, ca: PrivateCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_and_proxy(dynalite, ca, monkeypatch) as (tls, proxy):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        names = ["missing-a", "missing-b", "missing-c", "missing-d", "missing-e"]
        out = client(tls.url).call_many(
            "DescribeTable",
            len(names),
            lambda i: orjson.dumps({"TableName": names[i]}),
            in_flight=3,
        )
        assert [type(r).__name__ for r in out] == ["DynamoError"] * 5
        assert all(
            isinstance(r, DynamoError)
            and r.code == "ResourceNotFoundException"
            and names[i] in r.message
            for i, r in enumerate(out)
        ), out
        assert tls.ops["DescribeTable"] == 5
        assert proxy.seen[f"CONNECT 127.0.0.1:{tls.port}"] >= 3  # three on the wire at once
