"""The source's DynamoDB Stream: its shard tree and ordered reads of one shard (enabling it:
``enable``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..aws.client import DynamoClient, DynamoError
from ..errors import StreamError, StreamTrimmedError
from .records import Change, PageDecoder

log = logging.getLogger(__name__)

GET_RECORDS_LIMIT = 1000
# DynamoDB Streams allows about 5 GetRecords calls per second per shard; polling a busy shard
# faster only gets throttled (and costs the source). A fuller page per call loses nothing.
MIN_GET_RECORDS_INTERVAL = 0.2


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parent: str | None
    starting_sequence: str | None
    ending_sequence: str | None  # set once the shard is closed
    # A Kinesis shard made by MergeShards has two parents; both are read before it.
    adjacent_parent: str | None = None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent, self.adjacent_parent) if p is not None)

    @classmethod
    def from_wire(cls, s: dict[str, Any]) -> Shard:
        """A shard as DescribeStream (DynamoDB Streams) or ListShards (Kinesis) describes it."""
        rng = s.get("SequenceNumberRange", {})
        return cls(
            s["ShardId"],
            s.get("ParentShardId"),
            rng.get("StartingSequenceNumber"),
            rng.get("EndingSequenceNumber"),
            s.get("AdjacentParentShardId"),
        )


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a change source and where its reading stands: small and picklable, so
    that an executor (or the local engine) can open a reader of it (``shards.open_reader``)."""

    kind: str  # the change source's kind: "dynamodb-streams", "alternator-streams", "kinesis"
    arn: str  # the stream (DynamoDB or Alternator Streams) or the Kinesis data stream
    shard: Shard
    position: str | None  # last applied sequence number; None: from the oldest record
    iterator: str | None = None  # the previous batch's NextShardIterator: saves a call
    table: str = ""  # Kinesis: the table whose changes are kept (one stream may carry several)


def list_shards(client: DynamoClient, arn: str) -> list[Shard]:
    """Every shard of the stream, following DescribeStream's pagination."""
    shards: list[Shard] = []
    start: str | None = None
    while True:
        body: dict[str, Any] = {"StreamArn": arn}
        if start:
            body["ExclusiveStartShardId"] = start
        d = client.call("DescribeStream", body, streams=True)["StreamDescription"]
        if d.get("StreamStatus") in ("DISABLED", "DISABLING"):
            raise StreamError(
                f"the source stream {arn} was disabled; changes are no longer captured"
            )
        shards.extend(Shard.from_wire(s) for s in d.get("Shards", []))
        start = d.get("LastEvaluatedShardId")
        if not start:
            return shards


STREAMS_RETENTION = "the stream keeps records only 24 hours"


def _trimmed(shard_id: str, detail: str, retention: str = STREAMS_RETENTION) -> StreamTrimmedError:
    return StreamTrimmedError(
        f"stream records of shard {shard_id} that were never applied to the target are gone "
        f"({detail}); {retention}. The target is missing changes: "
        "start a new migration with a new snapshot (--fresh)"
    )


# One GetRecords answer: the records (wire dicts, or ``Change``s when the reader has a
# ``PageDecoder``) and the next iterator (None: the shard is closed).
Page = tuple[list[Any], str | None]


class ShardReader:
    """Reads one shard in order, from TRIM_HORIZON or after the last applied record."""

    retention = STREAMS_RETENTION
    kind = "dynamodb-streams"  # a ChangeSource's kind (Alternator's sets its own)
    table = ""

    def __init__(self, client: DynamoClient, arn: str, shard: Shard, position: str | None) -> None:
        self.client = client
        self.arn = arn
        self.shard = shard
        self.position = position  # last applied sequence number
        # Last record handed out. Read-ahead pages are applied in order or not at all (the run
        # stops), so an expired iterator resumes after this one: nothing skipped, nothing twice.
        self.read_to = position
        self.iterator: str | None = None
        self.closed = False  # read to its end (no NextShardIterator)
        self.drained = False  # last read returned nothing
        self.newest: float | None = None  # creation time of the newest applied record
        self.min_interval = MIN_GET_RECORDS_INTERVAL
        self.limit = GET_RECORDS_LIMIT  # GetRecords Limit (streamingMaxRecordsPerPoll)
        # Set: GetRecords answers are decoded from their bytes into ``Change``s.
        self.pages: PageDecoder | None = None
        self._next_call = 0.0

    def spec(self) -> ShardSpec:
        """Where this reader stands, for a reader elsewhere to go on from."""
        return ShardSpec(self.kind, self.arn, self.shard, self.position, self.iterator, self.table)

    def _acquire(self) -> str | None:
        after = self.read_to
        if after is not None:
            start = self.shard.starting_sequence
            if start is not None and int(start) > int(after) + 1:
                raise _trimmed(
                    self.shard.shard_id,
                    f"the oldest record is {start}, the savepoint is at {after}",
                    self.retention,
                )
        try:
            return self._get_iterator(after)
        except DynamoError as e:
            if e.code == "TrimmedDataAccessException":
                raise _trimmed(self.shard.shard_id, e.message, self.retention) from None
            if e.code == "ResourceNotFoundException":
                raise _trimmed(
                    self.shard.shard_id, "the shard no longer exists", self.retention
                ) from None
            raise

    # -- the two calls a change source's API spells its own way
    def _get_iterator(self, after: str | None) -> str | None:
        """An iterator at TRIM_HORIZON, or right after sequence number ``after``."""
        body: dict[str, Any] = {"StreamArn": self.arn, "ShardId": self.shard.shard_id}
        if after is None:
            body["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            body["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            body["SequenceNumber"] = after
        it = self.client.call("GetShardIterator", body, streams=True).get("ShardIterator")
        return str(it) if it else None

    def _get_records(self, iterator: str) -> Any:
        """One GetRecords call's answer, for ``decode``: its bytes (with a page decoder) or
        its JSON."""
        body = {"ShardIterator": iterator, "Limit": self.limit}
        if self.pages is not None:
            return self.client.call_bytes("GetRecords", body, streams=True)
        return self.client.call("GetRecords", body, streams=True)

    def _decode(self, answer: Any) -> Page:
        """A GetRecords answer as change records (each with dynamodb.SequenceNumber) and the
        next iterator."""
        if not isinstance(answer, dict):
            assert self.pages is not None  # bytes come only with a page decoder
            return self.pages(answer, self.shard.shard_id)
        return answer.get("Records", []), answer.get("NextShardIterator")

    def decode(self, answer: Any) -> Page:
        """``fetch_answer``'s answer as the records and the next iterator (its None: no
        records and no iterator)."""
        if answer is None:
            return [], None
        records, nxt = self._decode(answer)
        if len(records) >= self.limit:
            self._next_call = 0.0  # a full page: more is waiting, read on at once
        return records, nxt

    def fetch(self, iterator: str | None) -> Page:
        """One GetRecords call from ``iterator``: the records and the next iterator (None once
        the shard is closed). Changes no state, so it may run ahead of the records being
        applied; ``commit`` then moves the reader on."""
        return self.decode(self.fetch_answer(iterator))

    def fetch_answer(self, iterator: str | None) -> Any:
        """``fetch`` without the decoding (``decode``), which may then run in another thread;
        None when the shard is closed or has no iterator."""
        if self.closed:
            return None
        for _ in range(3):
            if iterator is None:
                iterator = self._acquire()
                if iterator is None:
                    return None
            wait = self._next_call - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._next_call = time.monotonic() + self.min_interval
            try:
                return self._get_records(iterator)
            except DynamoError as e:
                if e.code == "ExpiredIteratorException":
                    # Iterators last 15 minutes; re-acquire after the last record read.
                    log.info("Shard %s: iterator expired; re-acquiring", self.shard.shard_id)
                    iterator = None
                    continue
                if e.code == "TrimmedDataAccessException":
                    raise _trimmed(self.shard.shard_id, e.message, self.retention) from None
                raise
        raise StreamError(f"shard {self.shard.shard_id}: iterator kept expiring")

    def commit(self, records: Sequence[Any], next_iterator: str | None) -> None:
        """After a page was handed out: ``records`` are wire dicts or ``records.Change``s."""
        if records:
            last = records[-1]
            self.read_to = (
                last.seq if isinstance(last, Change) else last["dynamodb"]["SequenceNumber"]
            )
        self.iterator = next_iterator
        self.drained = not records
        self.closed = next_iterator is None or (self.drained and self._past_end())

    def _past_end(self) -> bool:
        """Read up to the end the listing gives a closed shard. AWS ends such a shard's reads
        with no next iterator; some emulators (moto's Kinesis) never do."""
        end, at = self.shard.ending_sequence, self.read_to
        # Nothing read yet proves nothing: an empty page may come before the first record.
        return end is not None and at is not None and int(at) >= int(end)

    def read(self) -> list[dict[str, Any]]:
        """One GetRecords call. The caller applies the records, then records the position."""
        records, nxt = self.fetch(self.iterator)
        self.commit(records, nxt)
        return records


class DynamoStreamSource:
    """DynamoDB Streams as a ``ChangeSource``: records come once each, in order per item."""

    kind = "dynamodb-streams"
    ordered = True
    retention = STREAMS_RETENTION

    def __init__(self, client: DynamoClient, arn: str) -> None:
        self.client = client
        self.arn = arn

    def list_shards(self) -> list[Shard]:
        return list_shards(self.client, self.arn)

    def reader(self, shard: Shard, position: str | None) -> ShardReader:
        r = ShardReader(self.client, self.arn, shard, position)
        r.kind = self.kind
        return r
