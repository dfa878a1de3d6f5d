"""The change-source interface, and the seam between a source and the engine replaying it.

A ``ChangeSource`` lists its shards and opens readers of them. A ``ShardSpec`` (``streams``)
says which shard of which source and where its reading stands; ``open_reader`` turns it into
a reader wherever it runs (a Spark executor, or this process).
What a batch of one shard did comes back as a ``ShardAdvance``, which the replay's shard tree
applies in one place (``replay.Replayer.settle``), whichever engine produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..aws.client import DynamoClient
from ..target.sink import Sink
from .kinesis import KinesisShardReader
from .records import (
    Change,
    Decoder,
    KeyClock,
    batch_summary,
    collapse,
    newest_per_key,
    times_applied,
)
from .streams import Shard, ShardReader, ShardSpec


class ChangeSource(Protocol):
    """Where the changes come from: DynamoDB Streams (``streams.DynamoStreamSource``),
    Alternator Streams (``alternator.AlternatorStreamSource``) or a Kinesis data stream
    (``kinesis.KinesisSource``)."""

    kind: str  # "dynamodb-streams", "alternator-streams" or "kinesis"
    arn: str
    # False: records may be duplicated and out of order, and only ApproximateCreationDateTime
    # orders the changes of one item (the replay then applies newest-wins per key).
    ordered: bool
    retention: str  # how long records are kept, for the "records are gone" error

    def list_shards(self) -> list[Shard]:
        """The shard tree: every shard with its parents."""
        ...

    def reader(self, shard: Shard, position: str | None) -> ShardReader:
        """A reader of one shard, after ``position`` (None: from the oldest record)."""
        ...


@dataclass(frozen=True)
class ShardAdvance:
    """What one batch of one shard applied, and where the shard now stands."""

    shard_id: str
    position: str | None  # last applied sequence number
    iterator: str | None  # the next batch goes on from here (None: acquire one)
    closed: bool
    drained: bool
    records: int = 0
    # Writes of this shard's batch; the local engine collapses across shards and counts its
    # writes per round instead.
    writes: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # records per event name
    newest: float | None = None  # creation time of the newest change applied
    # Kinesis: per key, the creation time of the newest change applied (the driver's clock
    # learns them); empty for an ordered source.
    key_times: dict[bytes, float] = field(default_factory=dict)

    @classmethod
    def after(
        cls,
        reader: ShardReader,
        changes: Sequence[Change],
        writes: int = 0,
        times: dict[bytes, float] | None = None,
    ) -> ShardAdvance:
        """``changes`` (read by ``reader``, in order) were written: the reader's new state."""
        counts, newest = batch_summary(changes)
        return cls(
            reader.shard.shard_id,
            changes[-1].seq if changes else reader.position,
            reader.iterator,
            reader.closed,
            reader.drained,
            len(changes),
            writes,
            counts,
            newest,
            times_applied(changes, times or {}),
        )


def open_reader(
    spec: ShardSpec, source: DynamoClient, kinesis: DynamoClient | None = None
) -> ShardReader:
    """A reader of ``spec``'s shard, from its position: ``source`` answers the Streams API
    (DynamoDB's or Alternator's), ``kinesis`` the Kinesis one."""
    reader: ShardReader
    if spec.kind == "kinesis":
        if kinesis is None:
            raise ValueError("a Kinesis shard needs a Kinesis client")
        reader = KinesisShardReader(kinesis, spec.arn, spec.shard, spec.position, spec.table)
    else:
        reader = ShardReader(source, spec.arn, spec.shard, spec.position)
        reader.kind = spec.kind
    reader.iterator = spec.iterator
    return reader


def advance_shard(
    reader: ShardReader,
    sink: Sink,
    decode: Decoder,
    max_records: int,
    expired: Callable[[dict[str, Any]], bool] | None = None,
    clock: KeyClock | None = None,
    in_flight: int = 8,
) -> ShardAdvance:
    """Read ``reader``'s shard from its position (up to ``max_records``, or to its current
    end), apply the changes to ``sink`` and say where it stands.

    Several pages per call (a Spark job costs far more than one GetRecords call). Each page is
    written while the next one is read; a page's writes start only after the previous page's
    are acknowledged, so the changes to one key are applied in shard order. ``clock``: the
    source may duplicate and reorder (Kinesis): only a change at least as new as the newest
    one applied to its key is written (``newest_per_key``). A page's batches go ``in_flight``
    at a time (its keys are distinct once collapsed): 8 by default, the local engine's
    default, as a Spark task does not read the local-only ``streamingPollingPoolSize``.
    """
    records: list[Change] = []
    writes = 0
    times: dict[bytes, float] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="replay-write") as writer:
        pending: Future[int] | None = None
        while len(records) < max_records:
            page = decode.changes(reader.read(), reader.shard.shard_id)
            records.extend(page)
            if page:
                kept = page
                if clock is not None:
                    kept, noted = newest_per_key(page, clock)
                    # Noted at once: the next page is judged against this one, whose writes
                    # land first. Nothing reaches the driver's clock unless all succeed.
                    clock.note_all(noted)
                    for k, t in noted.items():
                        times[k] = max(t, times.get(k, t))
                if pending is not None:
                    writes += pending.result()
                pending = writer.submit(
                    sink.write_distinct, collapse(kept, sink, expired), in_flight
                )
            # A page short of the limit reached the shard's current end: apply what we have
            # rather than wait (at most 5 calls/s per shard) for a trickle.
            if len(page) < reader.limit or reader.closed:
                break
        if pending is not None:
            writes += pending.result()
    return ShardAdvance.after(reader, records, writes, times)
