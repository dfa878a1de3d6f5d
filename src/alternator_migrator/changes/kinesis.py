"""Kinesis Data Streams for DynamoDB as a change source (`streamChanges: {type: kinesis}`).

DynamoDB writes each change of the table into a Kinesis data stream the user owns; the stream
keeps records for its retention period (24 hours to 365 days), so a snapshot of any length
loses nothing. Unlike DynamoDB Streams, AWS documents that these records may be duplicated and
out of order: their order per item is given by ``dynamodb.ApproximateCreationDateTime`` alone.
The replay therefore applies, per key, only a change at least as new as the newest it already
applied (``replay.KeyClock``); this module reads the shards and turns Kinesis records into the
change records the replay knows.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ..aws.client import DynamoClient, DynamoError
from ..aws.retry import wait
from ..errors import StreamError, StreamRecordError, StreamTrimmedError
from ..metrics import METRICS
from .records import Change, PageDecoder, to_seconds
from .streams import Page, Shard, ShardReader

log = logging.getLogger(__name__)

RETENTION = (
    "the Kinesis stream keeps records only for its retention period (24 hours unless raised, "
    "up to 365 days: `aws kinesis increase-stream-retention-period`)"
)
# Asked for when we enable the destination: the finer the timestamps, the fewer changes to one
# item share one, and the fewer ties newest-wins must break by read order.
PRECISION = "MICROSECOND"


def decode(raw: dict[str, Any], table: str, shard: str) -> dict[str, Any] | None:
    """A Kinesis record as the change record the replay applies, or None when it belongs to
    another table (one stream may carry several tables' changes).

    The Kinesis sequence number becomes ``dynamodb.SequenceNumber`` (positions are Kinesis
    positions) and the creation time is turned into seconds."""
    seq = raw.get("SequenceNumber")
    try:
        rec = orjson.loads(base64.b64decode(raw.get("Data") or "", validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        rec = None
    if not isinstance(rec, dict) or not isinstance(rec.get("dynamodb"), dict):
        raise StreamRecordError(
            f"Kinesis record {seq} of shard {shard} is not a DynamoDB change record (its Data "
            "is not base64 JSON with a `dynamodb` object); is `streamChanges.streamArn` the "
            "table's Kinesis streaming destination? stopped before applying it, and the "
            "savepoint stays before it"
        )
    if rec.get("tableName") not in (None, table):
        METRICS.inc("stream_records_other_table_total")
        return None
    d = rec["dynamodb"]
    d["SequenceNumber"] = seq
    t = to_seconds(d.get("ApproximateCreationDateTime"))
    if t is not None:
        d["ApproximateCreationDateTime"] = t
    return rec


def _fast_decode(fast: PageDecoder, raw: dict[str, Any]) -> tuple[str | None, Change] | None:
    seq, data = raw.get("SequenceNumber"), raw.get("Data")
    if not isinstance(seq, str) or not isinstance(data, str):
        return None
    try:
        got = fast.record(base64.b64decode(data, validate=True), seq)
    except (binascii.Error, ValueError):
        return None
    if got is None:
        return None
    table, change = got
    return table, change._replace(time=to_seconds(change.time))


class KinesisShardReader(ShardReader):
    """One Kinesis shard, read in order; the records are decoded change records."""

    retention = RETENTION
    kind = "kinesis"

    def __init__(
        self, client: DynamoClient, arn: str, shard: Shard, position: str | None, table: str
    ) -> None:
        super().__init__(client, arn, shard, position)
        self.table = table
        self._behind = 0  # MillisBehindLatest of the last page

    def _get_iterator(self, after: str | None) -> str | None:
        body: dict[str, Any] = {"StreamARN": self.arn, "ShardId": self.shard.shard_id}
        if after is None:
            body["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            body["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            body["StartingSequenceNumber"] = after
        it = self.client.call("GetShardIterator", body).get("ShardIterator")
        return str(it) if it else None

    def _get_records(self, iterator: str) -> Any:
        body = {"ShardIterator": iterator, "Limit": self.limit, "StreamARN": self.arn}
        if self.pages is not None:
            return self.client.call_bytes("GetRecords", body)
        return self.client.call("GetRecords", body)

    def _decode(self, answer: Any) -> Page:
        fast = self.pages
        if isinstance(answer, dict):
            r = answer
        else:
            assert fast is not None  # bytes come only with a page decoder
            page = fast.kinesis(answer, self.table)
            if page is not None:
                if page.other_tables:
                    METRICS.inc("stream_records_other_table_total", page.other_tables)
                self._behind = page.behind
                return page.changes, page.next_iterator
            r = orjson.loads(answer)  # something the structs do not describe: record by record
        records: list[Any] = []
        for raw in r.get("Records", []):
            if fast is not None:
                # The Data decoded from its bytes: the image is not parsed (``PageDecoder``).
                got = _fast_decode(fast, raw)
                if got is not None:
                    table, change = got
                    if table in (None, self.table):
                        records.append(change)
                    else:
                        METRICS.inc("stream_records_other_table_total")
                    continue
            rec = decode(raw, self.table, self.shard.shard_id)
            if rec is not None:
                records.append(rec if fast is None else fast.slow([rec], self.shard.shard_id)[0])
        # Kinesis may answer an empty page with records further on: not at the end yet.
        self._behind = int(r.get("MillisBehindLatest") or 0)
        # A closed shard read to its end answers no NextShardIterator (AWS's documented end).
        return records, r.get("NextShardIterator")

    def commit(self, records: Sequence[Any], next_iterator: str | None) -> None:
        super().commit(records, next_iterator)
        if self._behind > 0 and not self.closed:
            self.drained = False


class KinesisSource:
    """A Kinesis data stream as a ``ChangeSource``: records may come twice and out of order."""

    kind = "kinesis"
    ordered = False
    retention = RETENTION

    def __init__(self, client: DynamoClient, arn: str, table: str) -> None:
        self.client = client
        self.arn = arn
        self.table = table

    def list_shards(self) -> list[Shard]:
        """Every shard (open and closed, within retention), following ListShards' pages."""
        shards: list[Shard] = []
        body: dict[str, Any] = {"StreamARN": self.arn}
        while True:
            try:
                d = self.client.call("ListShards", body)
            except DynamoError as e:
                if e.code == "ResourceNotFoundException":
                    raise StreamError(
                        f"the Kinesis stream {self.arn} does not exist ({self.client.where}); "
                        "changes are no longer captured"
                    ) from None
                raise
            shards.extend(Shard.from_wire(s) for s in d.get("Shards", []))
            token = d.get("NextToken")
            if not token:
                return shards
            body = {"NextToken": token}  # ListShards refuses the stream name next to a token

    def reader(self, shard: Shard, position: str | None) -> ShardReader:
        return KinesisShardReader(self.client, self.arn, shard, position, self.table)


def _destination(source: DynamoClient, table: str, arn: str) -> dict[str, Any] | None:
    d = source.call("DescribeKinesisStreamingDestination", {"TableName": table})
    for dest in d.get("KinesisDataStreamDestinations", []):
        if dest.get("StreamArn") == arn:
            return dict(dest)
    return None


def ensure_destination(
    source: DynamoClient,
    table: str,
    arn: str,
    *,
    resuming: bool,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Have the table stream its changes into ``arn``: enable the destination if needed and
    wait until it is ACTIVE.

    ``resuming``: positions were already saved for this stream; a destination that is no
    longer active there means changes made meanwhile never reached the stream."""
    if sleep is None:

        def sleep(seconds: float) -> None:
            wait(source.stop, seconds, "waiting for the Kinesis streaming destination")

    dest = _destination(source, table, arn)
    status = (dest or {}).get("DestinationStatus")
    if status not in ("ACTIVE", "ENABLING", "UPDATING"):
        if resuming:
            raise StreamTrimmedError(
                f"the Kinesis streaming destination {arn} of table {table!r} is "
                f"{status or 'gone'}, so changes made while it was off never reached the "
                "stream; start a new migration with a new snapshot (--fresh)"
            )
        log.info("Enabling the Kinesis streaming destination %s on table %s", arn, table)
        try:
            source.call(
                "EnableKinesisStreamingDestination",
                {
                    "TableName": table,
                    "StreamArn": arn,
                    "EnableKinesisStreamingConfiguration": {
                        "ApproximateCreationDateTimePrecision": PRECISION
                    },
                },
            )
        except DynamoError as e:
            raise StreamError(
                f"enabling the Kinesis streaming destination {arn} on {table!r} failed "
                f"({e.code}: {e.message}); check that the stream exists in the table's region "
                "and that the credentials may call dynamodb:EnableKinesisStreamingDestination"
            ) from None
    while True:
        dest = _destination(source, table, arn)
        status = (dest or {}).get("DestinationStatus")
        if status in ("ACTIVE", "UPDATING"):
            break
        if status != "ENABLING":
            why = (dest or {}).get("DestinationStatusDescription") or "no reason given"
            raise StreamError(
                f"the Kinesis streaming destination {arn} of table {table!r} is "
                f"{status or 'missing'} ({why}); it cannot carry the table's changes"
            )
        log.info("Kinesis streaming destination is %s; waiting %.0fs", status, poll_seconds)
        sleep(poll_seconds)
    log.info("Kinesis streaming destination %s is ACTIVE", arn)
