"""Test helpers: boto3 clients (an independent implementation to check ours), tables, configs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import yaml
from botocore.config import Config as BotoConfig

T = TypeVar("T")


def boto_client(url: str, service: str = "dynamodb") -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"max_attempts": 10, "mode": "standard"}),
    )


def eventually(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, message: str = ""
) -> T:
    """Poll until ``condition`` returns a truthy value; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {message} (last: {last!r})")
        time.sleep(interval)


def create_table(
    client: Any,
    name: str,
    *,
    hash_key: tuple[str, str] = ("pk", "S"),
    range_key: tuple[str, str] | None = None,
    gsis: list[dict[str, Any]] | None = None,
    lsis: list[dict[str, Any]] | None = None,
    extra_attrs: list[tuple[str, str]] | None = None,
) -> None:
    keys = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    attrs = {hash_key[0]: hash_key[1]}
    if range_key:
        keys.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
        attrs[range_key[0]] = range_key[1]
    for n, t in extra_attrs or []:
        attrs[n] = t
    req: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": t} for n, t in attrs.items()
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if gsis:
        req["GlobalSecondaryIndexes"] = gsis
    if lsis:
        req["LocalSecondaryIndexes"] = lsis
    client.create_table(**req)
    # dynalite creates tables asynchronously even with --createTableMs 0: a write right after
    # CreateTable can meet ResourceNotFoundException.
    eventually(
        lambda: client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE",
        timeout=30,
        message=f"table {name} ACTIVE",
    )


def scan_all(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        r = client.scan(**kwargs)
        items.extend(r["Items"])
        if "LastEvaluatedKey" not in r:
            return items
        kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def by_key(
    items: list[dict[str, Any]], keys: tuple[str, ...] = ("pk",)
) -> dict[Any, dict[str, Any]]:
    return {tuple(repr(i[k]) for k in keys): i for i in items}


def batch_put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 25):
        reqs: dict[str, Any] = {table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
        while reqs:
            r = client.batch_write_item(RequestItems=reqs)
            reqs = r.get("UnprocessedItems") or {}


def write_config(
    path: Path,
    *,
    source_url: str,
    source_table: str,
    target_url: str,
    target_table: str,
    savepoints: Path,
    stream: bool = True,
    source_extra: dict[str, Any] | None = None,
    target_extra: dict[str, Any] | None = None,
    top_extra: dict[str, Any] | None = None,
) -> Path:
    def endpoint(url: str) -> dict[str, Any]:
        host, port = url.rsplit(":", 1)
        return {"host": host, "port": int(port)}

    cfg: dict[str, Any] = {
        "source": {
            "type": "dynamodb",
            "table": source_table,
            "region": "us-east-1",
            "endpoint": endpoint(source_url),
            "credentials": {"accessKey": "AKIDSOURCE", "secretKey": "source-secret-do-not-log"},
            **(source_extra or {}),
        },
        "target": {
            "type": "dynamodb",
            "table": target_table,
            "region": "us-east-1",
            "endpoint": endpoint(target_url),
            "credentials": {"accessKey": "AKIDTARGET", "secretKey": "target-secret-do-not-log"},
            "streamChanges": stream,
            **(target_extra or {}),
        },
        "savepoints": {"path": str(savepoints), "intervalSeconds": 1},
        **(top_extra or {}),
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def offline_savepoint(tmp: Path, url: str) -> tuple[Any, Any, Any]:
    """A config of table ``t`` on both sides at ``url`` (for tests that never call it), its
    savepoint store and a fresh savepoint."""
    from alternator_migrator.config import load
    from alternator_migrator.state.savepoint import SavepointStore

    cfg = load(
        write_config(
            tmp / "c.yaml",
            source_url=url,
            source_table="t",
            target_url=url,
            target_table="t",
            savepoints=tmp / "sp",
        )
    )
    store = SavepointStore(cfg)
    return cfg, store, store.new()


def normalize(value: Any) -> Any:
    """A wire-format value in a canonical form: numbers by value, sets as sets, bytes as bytes.

    Two servers may spell the same number differently ("1.50" vs "1.5") or reorder a set;
    neither is a migration error.
    """
    from decimal import Decimal

    if isinstance(value, dict) and len(value) == 1:
        ((t, v),) = value.items()
        if t == "N":
            return ("N", Decimal(v).normalize())
        if t == "NS":
            return ("NS", frozenset(Decimal(x).normalize() for x in v))
        if t == "SS":
            return ("SS", frozenset(v))
        if t == "BS":
            return ("BS", frozenset(bytes(x) for x in v))
        if t == "B":
            return ("B", bytes(v))
        if t == "M":
            return ("M", {k: normalize(x) for k, x in v.items()})
        if t == "L":
            return ("L", [normalize(x) for x in v])
        return (t, v)
    if isinstance(value, dict):
        return {k: normalize(x) for k, x in value.items()}
    return value


def table_diff(
    src: Any, src_table: str, dst: Any, dst_table: str, keys: tuple[str, ...]
) -> list[str]:
    """Differences between two tables in both directions (empty when identical)."""
    a = {k: normalize(v) for k, v in by_key(scan_all(src, src_table), keys).items()}
    b = {k: normalize(v) for k, v in by_key(scan_all(dst, dst_table), keys).items()}
    out = [f"missing in target: {k}" for k in a.keys() - b.keys()]
    out += [f"only in target: {k}" for k in b.keys() - a.keys()]
    out += [f"differs: {k}: {a[k]} != {b[k]}" for k in a.keys() & b.keys() if a[k] != b[k]]
    return sorted(out)


class BackgroundMigration:
    """``migrate`` in a thread, as a test drives a live migration; errors are kept to assert on."""

    def __init__(self, cfg: Any, **kwargs: Any) -> None:
        import threading

        self.stop = threading.Event()
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(
            target=self._run, args=(cfg, kwargs), name="migrate", daemon=True
        )

    def _run(self, cfg: Any, kwargs: dict[str, Any]) -> None:
        from alternator_migrator.pipeline.migrate import migrate

        try:
            self.results.append(migrate(cfg, self.stop, show_progress=False, **kwargs))
        except BaseException as e:
            self.errors.append(e)

    def start(self) -> BackgroundMigration:
        self.thread.start()
        return self

    def check(self) -> None:
        assert not self.errors, f"the migration stopped: {self.errors}"

    def finish(self, timeout: float = 60) -> Any:
        """Stop (or wait for a self-stopping run), then return its MigrationResult."""
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the migration did not stop"
        self.check()
        return self.results[0]


def local_config(tmp: Path, source: Any, target: Any, table: str, **kwargs: Any) -> Any:
    """A loaded Config from ``source`` (moto) to ``target`` (dynalite) servers, same table name
    on both sides unless ``target_table`` is given; other keywords as ``write_config``."""
    from alternator_migrator.config import load

    return load(
        write_config(
            tmp / kwargs.pop("file", "c.yaml"),
            source_url=source.url,
            source_table=table,
            target_url=target.url,
            target_table=kwargs.pop("target_table", table),
            savepoints=tmp / "sp",
            **kwargs,
        )
    )


def cli_process(*args: str) -> Any:
    """The CLI as a child process (``subprocess.Popen``, text pipes), for runs a test watches
    or stops while they go on."""
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "alternator_migrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def read_savepoint(directory: Path) -> dict[str, Any]:
    """The one savepoint file in ``directory`` as JSON ({} while there is none)."""
    import json

    files = list(directory.glob("savepoint-*.json"))
    return json.loads(files[0].read_bytes()) if files else {}


def start_cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> Any:
    """``python -m alternator_migrator ARGS`` in the background, stdout+stderr into ``log``."""
    import os
    import subprocess
    import sys

    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "alternator_migrator", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )


Answer = Callable[[dict[str, str], bytes], tuple[int, str, bytes]]


def serve_http(answer: Answer) -> Any:
    """A threaded HTTP server on a free loopback port; every POST is answered by
    ``answer(lower-cased headers, body) -> (status, content type, body)``. Stop it with
    ``shutdown()`` then ``server_close()``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, content_type, data = answer(headers, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class StaticHttpServer:
    """Answers every POST on loopback with one fixed status and body (a web server, a REST
    port, a captive proxy: anything that is not a DynamoDB API)."""

    def __init__(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        self._server = serve_http(lambda headers, _: (status, content_type, body))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- DynamoDB exports


def every_type_item(i: int) -> dict[str, Any]:
    """An item (boto3's low-level form) with every DynamoDB attribute type."""
    return {
        "pk": {"S": f"item#{i}"},
        "n": {"N": str(i * 7 - 3.5)},
        "b": {"B": bytes([i % 256, 0, 255])},
        "t": {"BOOL": i % 2 == 0},
        "z": {"NULL": True},
        "ss": {"SS": ["a", f"s{i}"]},
        "ns": {"NS": ["1", str(i + 2)]},
        "bs": {"BS": [b"\x00", bytes([i % 200 + 1])]},
        "l": {"L": [{"S": "x"}, {"N": "2"}, {"M": {"deep": {"B": b"\x01\x02"}}}]},
        "m": {"M": {"k": {"S": "v"}, "nested": {"L": [{"BOOL": False}, {"NULL": True}]}}},
        "u": {"S": "ünïcödé ✓ " + "p" * (i % 50)},
    }


def to_wire(value: Any) -> Any:
    """boto3's low-level form -> DynamoDB JSON (binary as base64), as an export file holds it."""
    import base64

    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


def write_aws_export(
    s3: Any,
    bucket: str,
    prefix: str,
    export_id: str,
    files: list[list[dict[str, Any]]] | None = None,
    data_keys: list[str] | None = None,
    output_format: str = "DYNAMODB_JSON",
) -> str:
    """AWS's documented export layout: gzipped data files of `{"Item": ...}` lines (from
    ``files``, or already in S3 at ``data_keys``), manifest-files.json, manifest-summary.json.
    Returns the key of manifest-summary.json."""
    import gzip

    import orjson

    base = f"{prefix}/AWSDynamoDB/{export_id}"
    entries: list[dict[str, Any]] = []
    for n, items in enumerate(files or []):
        key = f"{base}/data/file{n:03d}.json.gz"
        body = b"".join(orjson.dumps({"Item": to_wire(it)}) + b"\n" for it in items)
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body))
        entries.append({"dataFileS3Key": key})
    entries += [{"dataFileS3Key": k} for k in data_keys or []]
    lines = [{**export_file_facts(s3, bucket, e["dataFileS3Key"]), **e} for e in entries]
    s3.put_object(
        Bucket=bucket,
        Key=f"{base}/manifest-files.json",
        Body=b"".join(orjson.dumps(x) + b"\n" for x in lines),
    )
    summary = {
        "version": "2020-06-30",
        "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/t/export/{export_id}",
        "startTime": "2026-01-01T00:00:00.000Z",
        "endTime": "2026-01-01T00:05:00.000Z",
        "tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t",
        "exportTime": "2026-01-01T00:00:00.000Z",
        "s3Bucket": bucket,
        "s3Prefix": prefix,
        "s3SseAlgorithm": "AES256",
        "manifestFilesS3Key": f"{base}/manifest-files.json",
        "billedSizeBytes": 0,
        "itemCount": sum(len(f) for f in files or []),
        "outputFormat": output_format,
    }
    s3.put_object(Bucket=bucket, Key=f"{base}/manifest-summary.json", Body=orjson.dumps(summary))
    return f"{base}/manifest-summary.json"


def export_file_facts(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """What AWS writes for a data file in manifest-files.json, from the object as stored:
    itemCount (its lines) and md5Checksum (base64 MD5 of the gzipped bytes, as on the real AWS
    export in the Scylla Migrator's tests); etag as S3 gives it."""
    import base64
    import gzip
    import hashlib

    obj = s3.get_object(Bucket=bucket, Key=key)
    raw = obj["Body"].read()
    lines = [x for x in gzip.decompress(raw).splitlines() if x.strip()]
    return {
        "itemCount": len(lines),
        "md5Checksum": base64.b64encode(hashlib.md5(raw).digest()).decode(),
        "etag": str(obj.get("ETag", "")).strip('"'),
    }


def aws_export_answers(s3: Any) -> Callable[[str, str, bytes], bytes]:
    """A FaultProxy ``on_answer`` that makes moto's exports look like AWS's: once DescribeExport
    says COMPLETED, the manifests exist (moto writes only a data file) and are named."""
    import orjson

    def on_answer(op: str, path: str, body: bytes) -> bytes:
        if op != "DescribeExport":
            return body
        d = orjson.loads(body)
        desc = d["ExportDescription"]
        if desc["ExportStatus"] != "COMPLETED" or "ExportManifest" in desc:
            return body
        bucket, prefix = desc["S3Bucket"], desc["S3Prefix"]
        export_id = desc["ExportArn"].rsplit("/", 1)[-1]
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/AWSDynamoDB/")
        data = [o["Key"] for o in listed.get("Contents", []) if "/data/" in o["Key"]]
        desc["ExportManifest"] = write_aws_export(s3, bucket, prefix, export_id, data_keys=data)
        return orjson.dumps(d)

    return on_answer
