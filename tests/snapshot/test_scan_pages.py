"""Scan pages kept as bytes: each item is written as the span of the page it was read in, and
what the copier and the sink need from an item (its key, its TTL attribute, its size) is read
from those bytes alone, giving what the decoded item gives."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from alternator_migrator.aws.client import CredentialSource, DynamoClient, DynamoError
from alternator_migrator.config.model import Credentials
from alternator_migrator.localservers import Server
from alternator_migrator.snapshot.copier import ScanPlan, ScanSource, SnapshotCopier
from alternator_migrator.target.sink import Sink
from alternator_migrator.target.ttl import ExpiryCheck

from ..helpers import (
    StaticHttpServer,
    batch_put,
    create_table,
    every_type_item,
    local_config,
    table_diff,
)

CREDS = CredentialSource(Credentials(access_key="AKID", secret_key="secret"), None, None)
NOW = 1_800_000_000.0


def test_items_are_written_as_the_bytes_they_were_read_as(
    tmp_path: Path, dynalite: Server, dst: Any, table_name: str
) -> None:
    create_table(dst, table_name)
    create_table(dst, table_name + "-t")
    batch_put(dst, table_name, [every_type_item(i) for i in range(60)])
    cfg = local_config(tmp_path, dynalite, dynalite, table_name, target_table=table_name + "-t")
    with DynamoClient(dynalite.url, "us-east-1", CREDS) as client:
        source = ScanSource(client, cfg, ScanPlan(2, 2, 2, None))
        pages = [p for unit in range(2) for p in source.pages(unit, None, threading.Event())]
        items = [i for page, _ in pages for i in page]
        assert len(items) == 60 and not any(isinstance(i, dict) for i in items)
        sink = Sink(client, table_name + "-t", ["pk"])
        assert sink.put_raw(items[0]) == b'{"PutRequest":{"Item":' + bytes(items[0]) + b"}}"
        for page, _ in pages:
            sink.put_items(page)
    assert table_diff(dst, table_name, dst, table_name + "-t", ("pk",)) == []


def test_a_renamed_attribute_is_renamed_in_an_item_kept_as_bytes() -> None:
    with DynamoClient("http://127.0.0.1:9", "us-east-1", CREDS) as client:
        sink = Sink(client, "t", ["pk"], renames={"a": "b"})
        raw = b'{"pk": {"S": "x"}, "a": {"N": "1"}}'
        assert orjson.loads(sink.put_raw(raw)) == {
            "PutRequest": {"Item": {"pk": {"S": "x"}, "b": {"N": "1"}}}
        }


@pytest.mark.parametrize(
    "key",
    [{"S": "k\u00e9y"}, {"N": "12.50"}, {"B": "AAEC"}],
)
def test_an_item_kept_as_bytes_routes_by_the_same_key_bytes_as_its_dict(key: Any) -> None:
    # Spaced and escaped unlike orjson writes it: the key is parsed, not sliced.
    raw = b'{ "v" : {"S": "z"} ,\n "pk" :' + orjson.dumps(key).replace(b"\\u00e9", b"\\u00E9")
    raw += b"}"
    with DynamoClient("http://127.0.0.1:9", "us-east-1", CREDS) as client:
        sink = Sink(client, "t", ["pk"])
        assert sink._item_key(raw) == sink._item_key(orjson.loads(raw)) == orjson.dumps(key)


def test_expired_items_kept_as_bytes_are_dropped_as_their_dicts_are() -> None:
    items = [
        {"pk": {"S": "gone"}, "exp": {"N": str(int(NOW) - 60)}},
        {"pk": {"S": "later"}, "exp": {"N": str(int(NOW) + 60)}},
        {"pk": {"S": "never"}, "exp": {"S": "not a number"}},
        {"pk": {"S": "absent"}},
    ]

    def copier() -> SnapshotCopier:
        return SnapshotCopier(
            None,  # type: ignore[arg-type]  # only the TTL rule is used here
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            ScanPlan(1, 1, 1, None),
            threading.Event(),
            expired=ExpiryCheck("exp", lambda: NOW),
        )

    as_dicts, as_bytes = copier(), copier()
    kept = as_bytes._drop_expired([orjson.dumps(i) for i in items])
    assert [orjson.loads(i) for i in kept] == as_dicts._drop_expired(items) == items[1:]
    assert (as_bytes.skipped_expired, as_bytes.kept_unexpiring) == (1, 1)
    assert (as_dicts.skipped_expired, as_dicts.kept_unexpiring) == (1, 1)


@pytest.mark.parametrize(
    ("body", "items"),
    [
        # Unknown fields, odd spacing: the items are the bytes between the commas.
        (
            b'{"Count": 2, "Items" : [ {"pk":{"S":"a"}} ,{"pk": {"S":"b"}}], "X": [1]}',
            [b'{"pk":{"S":"a"}}', b'{"pk": {"S":"b"}}'],
        ),
        # A shape the struct does not describe is read as the plain client reads it.
        (b'{"Items": [], "LastEvaluatedKey": 5}', []),
    ],
)
def test_a_scan_page_is_split_into_its_items_bytes(
    tmp_path: Path, dynalite: Server, body: bytes, items: list[bytes]
) -> None:
    server = StaticHttpServer(200, body, "application/x-amz-json-1.0")
    try:
        cfg = local_config(tmp_path, dynalite, dynalite, "t")
        with DynamoClient(server.url, "us-east-1", CREDS) as client:
            source = ScanSource(client, cfg, ScanPlan(1, 1, 1, None))
            got, _ = next(iter(source.pages(0, None, threading.Event())))
        assert [bytes(i) for i in got] == items
    finally:
        server.stop()


def test_a_scan_answer_that_is_not_a_json_object_is_named(tmp_path: Path, dynalite: Server) -> None:
    server = StaticHttpServer(200, b"<html>hello</html>")
    try:
        cfg = local_config(tmp_path, dynalite, dynalite, "t")
        with DynamoClient(server.url, "us-east-1", CREDS) as client:
            source = ScanSource(client, cfg, ScanPlan(1, 1, 1, None))
            with pytest.raises(DynamoError) as e:
                next(iter(source.pages(0, None, threading.Event())))
        assert e.value.code == "InvalidResponse" and "<html>" in e.value.message
    finally:
        server.stop()
