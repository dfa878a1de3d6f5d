"""Kinesis test doubles: DynamoDB change records in AWS's Kinesis format, a scripted Kinesis
endpoint that reshards as AWS documents, and a bridge that forwards a moto table's changes
into moto's Kinesis with duplicates and reorderings.

AWS's format ("Kinesis Data Streams for DynamoDB", record format): a JSON object with
``awsRegion``, ``eventID``, ``eventName``, ``userIdentity``, ``recordFormat``
("application/json"), ``tableName``, ``eventSource`` ("aws:dynamodb") and ``dynamodb`` holding
``ApproximateCreationDateTime`` (epoch, milliseconds or microseconds per the destination's
precision), ``ApproximateCreationDateTimePrecision``, ``Keys``, ``NewImage`` (and ``OldImage``),
``SizeBytes``. It travels base64-encoded as the Kinesis record's ``Data``.
"""

from __future__ import annotations

import base64
import itertools
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import orjson

from .helpers import serve_http, to_wire

KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/{name}"


def kinesis_change(
    table: str,
    keys: dict[str, Any],
    image: dict[str, Any] | None,
    t_us: int,
    event: str | None = None,
) -> dict[str, Any]:
    """One DynamoDB change in the Kinesis record format (``image`` None: a REMOVE)."""
    d: dict[str, Any] = {
        "ApproximateCreationDateTime": t_us,
        "ApproximateCreationDateTimePrecision": "MICROSECOND",
        "Keys": keys,
        "SizeBytes": 40,
    }
    if image is not None:
        d["NewImage"] = image
    return {
        "awsRegion": "us-east-1",
        "eventID": str(uuid.uuid4()),
        "eventName": event or ("REMOVE" if image is None else "MODIFY"),
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": d,
        "eventSource": "aws:dynamodb",
    }


def item_change(table: str, pk: str, value: int | None, t_us: int) -> dict[str, Any]:
    keys = {"pk": {"S": pk}}
    image = None if value is None else {**keys, "v": {"N": str(value)}}
    return kinesis_change(table, keys, image, t_us)


# ---------------------------------------------------------------------- scripted endpoint


@dataclass
class KShard:
    shard_id: str
    parent: str | None
    adjacent: str | None
    start: int
    records: list[dict[str, Any]] = field(default_factory=list)
    end: int | None = None


def kseq(n: int) -> str:
    """Kinesis sequence numbers are decimal strings of up to 129 digits."""
    return f"{n:056d}"


class FakeKinesis:
    """A Kinesis endpoint on loopback whose resharding behaves as AWS documents: a closed
    parent keeps its records and reading past its end answers no NextShardIterator. Also
    answers DynamoDB's Describe/EnableKinesisStreamingDestination."""

    def __init__(self, name: str = "changes", *, shards_per_page: int = 2, per_call: int = 3):
        self.arn = KINESIS_ARN.format(name=name)
        self.shards: dict[str, KShard] = {}
        self.shards_per_page = shards_per_page
        self.per_call = per_call
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.destinations: dict[str, str] = {}  # stream ARN -> DestinationStatus
        self.active_after = 1  # Describe calls an ENABLING destination takes to be ACTIVE
        self._seq = itertools.count(1000)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- scripting
    def add_shard(self, sid: str, parent: str | None = None, adjacent: str | None = None) -> None:
        with self._lock:
            self.shards[sid] = KShard(sid, parent, adjacent, next(self._seq))

    def put(self, sid: str, change: dict[str, Any]) -> str:
        with self._lock:
            s = self.shards[sid]
            assert s.end is None, f"{sid} is closed"
            seq = kseq(next(self._seq))
            s.records.append(
                {
                    "SequenceNumber": seq,
                    "Data": base64.b64encode(orjson.dumps(change)).decode(),
                    "PartitionKey": "pk",
                    "ApproximateArrivalTimestamp": time.time(),
                }
            )
            return seq

    def close(self, sid: str) -> None:
        with self._lock:
            s = self.shards[sid]
            s.end = int(s.records[-1]["SequenceNumber"]) if s.records else s.start

    def split(self, parent: str, a: str, b: str) -> None:
        with self._lock:
            self.close(parent)
            self.add_shard(a, parent)
            self.add_shard(b, parent)

    def merge(self, first: str, second: str, child: str) -> None:
        with self._lock:
            self.close(first)
            self.close(second)
            self.add_shard(child, first, second)

    def ops(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for op, b, _ in self.calls if op == name]

    # -- protocol
    def _list_shards(self, body: dict[str, Any]) -> dict[str, Any]:
        if "NextToken" in body and "StreamARN" in body:
            raise _Fault("InvalidArgumentException", "NextToken and StreamARN together")
        pos = int(body["NextToken"]) if "NextToken" in body else 0
        if "NextToken" not in body and body.get("StreamARN") != self.arn:
            raise _Fault("ResourceNotFoundException", "stream not found")
        ids = list(self.shards)
        out = []
        for sid in ids[pos : pos + self.shards_per_page]:
            s = self.shards[sid]
            rng = {"StartingSequenceNumber": kseq(s.start)}
            if s.end is not None:
                rng["EndingSequenceNumber"] = kseq(s.end)
            e: dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": rng}
            if s.parent:
                e["ParentShardId"] = s.parent
            if s.adjacent:
                e["AdjacentParentShardId"] = s.adjacent
            out.append(e)
        resp: dict[str, Any] = {"Shards": out}
        if pos + self.shards_per_page < len(ids):
            resp["NextToken"] = str(pos + self.shards_per_page)
        return resp

    def _get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self.shards[body["ShardId"]]
        if body["ShardIteratorType"] == "TRIM_HORIZON":
            after = s.start - 1
        else:
            assert body["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
            after = int(body["StartingSequenceNumber"])
        return {"ShardIterator": f"{s.shard_id}|{after}"}

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        sid, after_s = body["ShardIterator"].split("|")
        s, after = self.shards[sid], int(after_s)
        pending = [r for r in s.records if int(r["SequenceNumber"]) > after]
        out = pending[: min(int(body.get("Limit") or 10000), self.per_call)]
        last = int(out[-1]["SequenceNumber"]) if out else after
        resp: dict[str, Any] = {"Records": out, "MillisBehindLatest": 0}
        if s.end is not None and len(out) == len(pending):
            # AWS: past a closed shard's end the next iterator is null, the children are named.
            resp["NextShardIterator"] = None
            resp["ChildShards"] = [
                {"ShardId": c.shard_id, "ParentShards": [p for p in (c.parent, c.adjacent) if p]}
                for c in self.shards.values()
                if sid in (c.parent, c.adjacent)
            ]
        else:
            resp["NextShardIterator"] = f"{sid}|{last}"
        return resp

    def _describe_destination(self, body: dict[str, Any]) -> dict[str, Any]:
        dests = []
        for arn, status in self.destinations.items():
            if status == "ENABLING":
                self.active_after -= 1
                if self.active_after < 0:
                    self.destinations[arn] = status = "ACTIVE"
            dests.append({"StreamArn": arn, "DestinationStatus": status})
        return {"TableName": body["TableName"], "KinesisDataStreamDestinations": dests}

    def _enable_destination(self, body: dict[str, Any]) -> dict[str, Any]:
        self.destinations[body["StreamArn"]] = "ENABLING"
        return {"TableName": body["TableName"], "StreamArn": body["StreamArn"]}

    def handle(self, target: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        op = target.rsplit(".", 1)[-1]
        with self._lock:
            self.calls.append((op, body, headers))
            fn = {
                "ListShards": self._list_shards,
                "GetShardIterator": self._get_shard_iterator,
                "GetRecords": self._get_records,
                "DescribeKinesisStreamingDestination": self._describe_destination,
                "EnableKinesisStreamingDestination": self._enable_destination,
            }.get(op)
            if fn is None:
                raise _Fault("UnknownOperationException", op)
            return fn(body)

    def start(self) -> FakeKinesis:
        def answer(headers: dict[str, str], raw: bytes) -> tuple[int, str, bytes]:
            body = orjson.loads(raw) if raw else {}
            try:
                status, out = 200, self.handle(headers.get("x-amz-target", ""), body, headers)
            except _Fault as f:
                status, out = 400, {"__type": f.code, "message": f.message}
            return status, "application/x-amz-json-1.1", orjson.dumps(out)

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


class _Fault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# ---------------------------------------------------------------------- moto bridge


class KinesisBridge:
    """Stands in for DynamoDB's Kinesis streaming destination on moto.

    It answers Describe/EnableKinesisStreamingDestination (through ``FaultProxy.intercept``),
    and once enabled reads the table's own DynamoDB Stream (in order) and forwards each change
    into the Kinesis stream in AWS's record format, with microsecond creation times in that
    order, and, as AWS warns this mode does: some records sent twice, later, and neighbouring
    records swapped (two changes to one item included), on random partition keys so one item's
    changes spread over shards.
    """

    def __init__(self, moto_url: str, table: str, stream_name: str, *, seed: int = 7) -> None:
        from .helpers import boto_client

        self.ddb = boto_client(moto_url)
        self.streams = boto_client(moto_url, "dynamodbstreams")
        self.kinesis = boto_client(moto_url, "kinesis")
        self.table = table
        self.name = stream_name
        self.arn = KINESIS_ARN.format(name=stream_name)
        self.status: str | None = None
        self.rng = random.Random(seed)
        self.read = 0  # changes read from the table's stream
        self.sent = 0  # Kinesis records put (duplicates included)
        self.duplicates = 0
        self.swapped_same_item = 0
        # moto routes a record to the first shard whose hash range holds its key, closed or
        # not, so after a split nothing would reach the children. Set before a split of shard
        # 0: records then go to the other shard's range, and the closed parent stays closed.
        self.avoid_hashes_below: int | None = None
        self._last_us = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    # -- the stand-in's answers
    def intercept(self, op: str, body: bytes) -> dict[str, Any] | None:
        if op == "DescribeKinesisStreamingDestination":
            dests = (
                [{"StreamArn": self.arn, "DestinationStatus": self.status}] if self.status else []
            )
            if self.status == "ENABLING":
                self.status = "ACTIVE"  # ACTIVE from the next look on
            return {"TableName": self.table, "KinesisDataStreamDestinations": dests}
        if op == "EnableKinesisStreamingDestination":
            req = orjson.loads(body)
            assert req["StreamArn"] == self.arn and req["TableName"] == self.table
            if self.status is None:
                self._begin()
            self.status = "ENABLING"
            return {"TableName": self.table, "StreamArn": self.arn, "DestinationStatus": "ENABLING"}
        return None

    def _begin(self) -> None:
        # Capture from this instant: the table's own stream carries every later change.
        self.ddb.update_table(
            TableName=self.table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        arn = self.ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        self._thread = threading.Thread(target=self._run, args=(arn,), daemon=True)
        self._thread.start()

    def _stamp(self) -> int:
        self._last_us = max(int(time.time() * 1e6), self._last_us + 1)
        return self._last_us

    def _run(self, arn: str) -> None:
        try:
            shards: list[dict[str, Any]] = []
            while not shards and not self._stop.is_set():  # moto may list it a moment later
                shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
                self._stop.wait(0.05)
            shard = shards[0]
            it = self.streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            late: list[dict[str, Any]] = []  # duplicates, sent again a page later
            while not self._stop.is_set():
                r = self.streams.get_records(ShardIterator=it, Limit=50)
                it = r["NextShardIterator"]
                changes = [self._convert(rec) for rec in r["Records"]]
                out = self._disorder(changes)
                out, late = late + out, [c for c in changes if self.rng.random() < 0.2]
                self.duplicates += len(late)
                self._put(out)
                self.read += len(changes)  # counted once forwarded: ``idle`` relies on it
                if not r["Records"]:
                    if late:
                        self._put(late)
                        late = []
                    self._stop.wait(0.05)
        except BaseException as e:  # the test asserts there were none
            self.errors.append(e)

    def _convert(self, rec: dict[str, Any]) -> dict[str, Any]:
        d = rec["dynamodb"]
        # boto3 gives binary values as bytes; AWS's record JSON holds them in base64.
        image = d.get("NewImage")
        return kinesis_change(
            self.table,
            to_wire(d["Keys"]),
            None if image is None else to_wire(image),
            self._stamp(),
            rec["eventName"],
        )

    def _disorder(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Swap neighbours: always two changes to one item when the page has such a pair."""
        out = list(changes)
        for i in range(len(out) - 1):
            same = out[i]["dynamodb"]["Keys"] == out[i + 1]["dynamodb"]["Keys"]
            if same or self.rng.random() < 0.3:
                out[i], out[i + 1] = out[i + 1], out[i]
                self.swapped_same_item += same
        return out

    def _put(self, changes: list[dict[str, Any]]) -> None:
        for i in range(0, len(changes), 100):
            batch = changes[i : i + 100]
            self.kinesis.put_records(
                StreamName=self.name,
                Records=[
                    {"Data": orjson.dumps(c), "PartitionKey": str(self.rng.random())} for c in batch
                ],
            )
            self.sent += len(batch)

    def _route(self) -> dict[str, str]:
        route = {"PartitionKey": str(self.rng.random())}
        low = self.avoid_hashes_below
        if low is not None:
            route["ExplicitHashKey"] = str(self.rng.randrange(low, 2**128))
        return route

    def idle(self) -> bool:
        """Every change made so far was read from the table's stream and forwarded."""
        assert not self.errors, f"the bridge stopped: {self.errors!r}"
        if self.status is None:
            return False
        arn = self.ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        it = self.streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        total = 0
        while True:
            r = self.streams.get_records(ShardIterator=it, Limit=1000)
            total += len(r["Records"])
            if not r["Records"]:
                break
            it = r["NextShardIterator"]
        return total == self.read and self.sent >= self.read

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
