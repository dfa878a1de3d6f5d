"""A small, scriptable DynamoDB Streams endpoint (moto has one shard that never splits).

It speaks the JSON protocol over HTTP on loopback: DescribeStream (paginated), GetShardIterator,
GetRecords, plus just enough DynamoDB (DescribeTable, DescribeTimeToLive, an empty Scan) to run
the whole pipeline against it. A test scripts the shard tree (parents, children, closing),
appends records, expires iterators and trims data, then reads ``calls`` to see what the
migrator asked for.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from alternator_migrator.aws.client import CredentialSource, DynamoClient, RetryPolicy
from alternator_migrator.config import Config, Credentials, load
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.replay import Replayer
from alternator_migrator.state.savepoint import Savepoint, SavepointStore
from alternator_migrator.target.sink import Element, Redo, Request, Sink

from .helpers import by_key, create_table, scan_all, serve_http, write_config

STREAM_ARN_PREFIX = "arn:aws:dynamodb:us-east-1:000000000000:table"


def seq_str(n: int) -> str:
    """Real sequence numbers are decimal strings of 21+ digits, compared as numbers."""
    return f"{n:021d}"


@dataclass
class FakeShard:
    shard_id: str
    parent: str | None
    start: int  # the first sequence number this shard may hold
    records: list[dict[str, Any]] = field(default_factory=list)
    end: int | None = None  # EndingSequenceNumber once closed
    trimmed_upto: int | None = None  # highest sequence number removed by retention
    # Whether DescribeStream moves StartingSequenceNumber up to the oldest retained record.
    range_follows_trim: bool = True
    get_records_trimmed: bool = False  # GetRecords answers TrimmedDataAccessException


class _Fault(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class FakeStreams:
    """State plus a threaded HTTP server; every public method is thread-safe."""

    def __init__(
        self,
        table: str = "fake-table",
        *,
        hash_key: str = "pk",
        shards_per_page: int = 2,
        records_per_call: int = 3,
    ) -> None:
        self.table = table
        self.hash_key = hash_key
        self.arn = f"{STREAM_ARN_PREFIX}/{table}/stream/2024-01-01T00:00:00.000"
        self.shards_per_page = shards_per_page
        self.records_per_call = records_per_call
        self.shards: dict[str, FakeShard] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.status = "ENABLED"
        self._live: set[str] = set()  # items that exist: INSERT vs MODIFY, as DynamoDB names them
        self._seq = itertools.count(100)
        self._lock = threading.RLock()
        self._iterators: dict[str, tuple[str, int, int]] = {}  # token -> shard, after, generation
        self._iter_ids = itertools.count(1)
        self._generation = 0
        self._expire_next = 0
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ scripting
    def add_shard(self, shard_id: str, parent: str | None = None) -> FakeShard:
        with self._lock:
            s = FakeShard(shard_id, parent, next(self._seq))
            self.shards[shard_id] = s
            return s

    def put(self, shard_id: str, pk: str, value: Any = None, *, event: str | None = None) -> str:
        """Append a change of item ``pk`` (a REMOVE when ``value`` is None)."""
        with self._lock:
            s = self.shards[shard_id]
            assert s.end is None, f"shard {shard_id} is closed"
            n = next(self._seq)
            keys = {self.hash_key: {"S": pk}}
            d: dict[str, Any] = {
                "ApproximateCreationDateTime": float(int(time.time())),
                "Keys": keys,
                "SequenceNumber": seq_str(n),
                "SizeBytes": 20,
                "StreamViewType": "NEW_IMAGE",
            }
            if value is None:
                name = event or "REMOVE"
                self._live.discard(pk)
            else:
                name = event or ("MODIFY" if pk in self._live else "INSERT")
                self._live.add(pk)
                d["NewImage"] = {
                    **keys,
                    "v": {"N": str(value)} if isinstance(value, int) else {"S": str(value)},
                }
            s.records.append(
                {
                    "eventID": f"ev{n}",
                    "eventName": name,
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": d,
                }
            )
            return seq_str(n)

    def close(self, shard_id: str) -> None:
        with self._lock:
            s = self.shards[shard_id]
            last = int(s.records[-1]["dynamodb"]["SequenceNumber"]) if s.records else s.start
            s.end = last

    def split(self, parent: str, *children: str) -> list[FakeShard]:
        """Close ``parent`` and open its children (DynamoDB splits a busy or old shard)."""
        with self._lock:
            self.close(parent)
            return [self.add_shard(c, parent) for c in children]

    def trim(self, shard_id: str, upto: str) -> None:
        """Retention removed every record of ``shard_id`` up to and including ``upto``."""
        with self._lock:
            s = self.shards[shard_id]
            n = int(upto)
            s.records = [r for r in s.records if int(r["dynamodb"]["SequenceNumber"]) > n]
            s.trimmed_upto = max(n, s.trimmed_upto or 0)

    def remove_shard(self, shard_id: str) -> None:
        """The shard aged out of the stream (24 hours after it closed)."""
        with self._lock:
            del self.shards[shard_id]

    def expire_iterators(self, next_calls: int = 0) -> None:
        """Expire every iterator handed out so far, and fail the next ``next_calls`` GetRecords."""
        with self._lock:
            self._generation += 1
            self._expire_next += next_calls

    def ops(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for op, body in self.calls if op == name]

    # ------------------------------------------------------------------ protocol
    def _describe_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("StreamArn") != self.arn:
            raise _Fault("ResourceNotFoundException", f"stream {body.get('StreamArn')} not found")
        ids = list(self.shards)
        start = body.get("ExclusiveStartShardId")
        pos = ids.index(start) + 1 if start in ids else 0
        limit = min(int(body.get("Limit") or 100), self.shards_per_page)
        page = ids[pos : pos + limit]
        shards = []
        for sid in page:
            s = self.shards[sid]
            first = s.start
            if s.range_follows_trim and s.trimmed_upto is not None:
                first = max(first, s.trimmed_upto + 1)
            rng = {"StartingSequenceNumber": seq_str(first)}
            if s.end is not None:
                rng["EndingSequenceNumber"] = seq_str(s.end)
            entry: dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": rng}
            if s.parent:
                entry["ParentShardId"] = s.parent
            shards.append(entry)
        desc: dict[str, Any] = {
            "StreamArn": self.arn,
            "StreamLabel": "2024-01-01T00:00:00.000",
            "StreamStatus": self.status,
            "StreamViewType": "NEW_IMAGE",
            "TableName": self.table,
            "KeySchema": [{"AttributeName": self.hash_key, "KeyType": "HASH"}],
            "Shards": shards,
        }
        if pos + limit < len(ids):
            desc["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": desc}

    def _shard(self, sid: str) -> FakeShard:
        s = self.shards.get(sid)
        if s is None:
            raise _Fault("ResourceNotFoundException", f"shard {sid} not found")
        return s

    def _iterator(self, sid: str, after: int) -> str:
        token = f"it-{next(self._iter_ids)}-{sid}"
        self._iterators[token] = (sid, after, self._generation)
        return token

    def _get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self._shard(body["ShardId"])
        kind = body["ShardIteratorType"]
        horizon = s.trimmed_upto if s.trimmed_upto is not None else s.start - 1
        if kind == "TRIM_HORIZON":
            after = horizon
        elif kind == "LATEST":
            after = int(s.records[-1]["dynamodb"]["SequenceNumber"]) if s.records else horizon
        else:
            n = int(body["SequenceNumber"])
            after = n if kind == "AFTER_SEQUENCE_NUMBER" else n - 1
            if after < horizon:
                raise _Fault(
                    "TrimmedDataAccessException",
                    f"sequence number {body['SequenceNumber']} is beyond the trim horizon",
                )
        return {"ShardIterator": self._iterator(s.shard_id, after)}

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body["ShardIterator"]
        found = self._iterators.get(token)
        if found is None:
            raise _Fault("ValidationException", "invalid ShardIterator")
        sid, after, gen = found
        if self._expire_next > 0 or gen < self._generation:
            self._expire_next = max(0, self._expire_next - 1)
            raise _Fault("ExpiredIteratorException", "Iterator expired")
        s = self._shard(sid)
        if s.get_records_trimmed or (s.trimmed_upto is not None and after < s.trimmed_upto):
            raise _Fault("TrimmedDataAccessException", "the requested records were trimmed")
        limit = min(int(body.get("Limit") or 1000), self.records_per_call)
        pending = [r for r in s.records if int(r["dynamodb"]["SequenceNumber"]) > after]
        out = pending[:limit]
        resp: dict[str, Any] = {"Records": out}
        last = int(out[-1]["dynamodb"]["SequenceNumber"]) if out else after
        # A closed shard read to its end has no next iterator: that is how readers learn it is done.
        if s.end is None or len(pending) > len(out):
            resp["NextShardIterator"] = self._iterator(sid, last)
        return resp

    def _describe_table(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("TableName") != self.table:
            raise _Fault("ResourceNotFoundException", "Requested resource not found")
        return {
            "Table": {
                "TableName": self.table,
                "TableStatus": "ACTIVE",
                "KeySchema": [{"AttributeName": self.hash_key, "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": self.hash_key, "AttributeType": "S"}],
                "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
                "ItemCount": 0,
                "TableSizeBytes": 0,
                "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
                "LatestStreamArn": self.arn,
                "LatestStreamLabel": "2024-01-01T00:00:00.000",
            }
        }

    def handle(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        op = target.rsplit(".", 1)[-1]
        with self._lock:
            self.calls.append((op, body))
            handlers = {
                "DescribeStream": self._describe_stream,
                "GetShardIterator": self._get_shard_iterator,
                "GetRecords": self._get_records,
                "DescribeTable": self._describe_table,
                "DescribeTimeToLive": lambda b: {
                    "TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}
                },
                "Scan": lambda b: {"Items": [], "Count": 0, "ScannedCount": 0},
            }
            fn = handlers.get(op)
            if fn is None:
                raise _Fault("UnknownOperationException", f"unknown operation {op}")
            return fn(body)

    # ------------------------------------------------------------------ server
    def start(self) -> FakeStreams:
        def answer(headers: dict[str, str], raw: bytes) -> tuple[int, str, bytes]:
            body = orjson.loads(raw) if raw else {}
            try:
                status, out = 200, self.handle(headers.get("x-amz-target", ""), body)
            except _Fault as f:
                status = f.status
                out = {"__type": f"com.amazonaws.dynamodb.v20120810#{f.code}", "message": f.message}
            return status, "application/x-amz-json-1.0", orjson.dumps(out)

        self._server = serve_http(answer)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# ---------------------------------------------------------------------- wiring for tests


def lean_client(url: str, label: str = "source", retry: RetryPolicy | None = None) -> DynamoClient:
    """The migrator's own client, with fixed test credentials."""
    creds = CredentialSource(Credentials("AKIDTEST", "test-secret"), None, "us-east-1")
    return DynamoClient(url, "us-east-1", creds, label=label, retry=retry)


class RecordingSink(Sink):
    """A real sink that also remembers every batch it wrote, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[Request]] = []
        self._lock = threading.Lock()

    def write(self, requests: Sequence[Element]) -> int:
        n = super().write(requests)
        self._remember(requests)
        return n

    def write_first(self, chunks: Sequence[Sequence[Element]], in_flight: int) -> list[Redo]:
        # Each batch remembered once, when first sent (a redo writes what is left of it).
        left = super().write_first(chunks, in_flight)
        for chunk in chunks:
            self._remember(chunk)
        return left

    def _remember(self, requests: Sequence[Element]) -> None:
        with self._lock:  # the replay hands encoded elements: remembered as requests
            self.batches.append([orjson.loads(r) if isinstance(r, bytes) else r for r in requests])


def fake_config(tmp_path: Path, fake: FakeStreams, dynalite: Server, table: str) -> Config:
    return load(
        write_config(
            tmp_path / "cfg.yaml",
            source_url=fake.url,
            source_table=fake.table,
            target_url=dynalite.url,
            target_table=table,
            savepoints=tmp_path / "sp",
        )
    )


def replay_setup(
    tmp_path: Path, fake: FakeStreams, dynalite: Server, dst: Any, table: str
) -> tuple[SavepointStore, Savepoint, RecordingSink]:
    create_table(dst, table)
    store = SavepointStore(fake_config(tmp_path, fake, dynalite, table))
    sp = store.new()
    sp.stream_arn, sp.snapshot_done = fake.arn, True
    sink = RecordingSink(lean_client(dynalite.url, "target"), table, ["pk"])
    return store, sp, sink


def run_replay(
    fake: FakeStreams, store: SavepointStore, sp: Savepoint, sink: Sink, **options: Any
) -> tuple[Replayer, str]:
    out = io.StringIO()
    r = Replayer(
        lean_client(fake.url),
        sink,
        fake.arn,
        store,
        sp,
        out=out,
        refresh_seconds=0.2,
        max_idle_sleep=0.05,
        **options,
    )
    r.run(threading.Event(), stop_when_caught_up=0.3)
    return r, out.getvalue()


def target_values(dst: Any, table: str) -> dict[str, str]:
    return {k[0].strip("{}'S: "): i["v"]["N"] for k, i in by_key(scan_all(dst, table)).items()}
