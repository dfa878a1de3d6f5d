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
        from alternator_migrator.migrate import migrate

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
