"""Alternator Streams as a change source: the DynamoDB Streams API on the Alternator port.

ScyllaDB builds it on CDC; what differs from DynamoDB Streams (ScyllaDB's
docs/alternator/compatibility.md and its streams implementation) and how it is handled:

- Many more shards (one per CDC stream). ``list_shards`` already pages through them.
- Shards are replaced on a topology change: a new CDC *generation* starts, every shard of the
  old one closes (EndingSequenceNumber; reads past it end with no next iterator) and a whole
  new set opens, all with the generation's time as StartingSequenceNumber. A new shard names
  ONE old shard as its parent (one whose token range overlaps its own), but the two
  generations' token ranges do not nest, so an item's earlier changes may be in an old shard
  that is not the named parent. Every shard of a generation therefore waits until every
  shard of the generation before it is fully applied (``GenerationShard``): per-item order
  holds across the change, whatever the ranges.
- GetRecords shows a record only once it is older than `alternator_streams_time_window_s`
  (10 s by default): an empty read says nothing about the last window. The source carries the
  settle time (`source.streamsSettleSeconds`) so that "caught up" waits it out.
- Records older than 24 hours are dropped (the CDC log's TTL) without the
  TrimmedDataAccessException DynamoDB answers, so a savepoint last written more than that ago
  may sit before a silent gap: ``check_retention`` refuses it (a new snapshot is needed).
- `eventSource` is `scylladb:alternator`; every write is reported as MODIFY (INSERT is not told
  apart), a PutItem may come as REMOVE then MODIFY, and a TTL expiration is a REMOVE (with a
  `Service` userIdentity). The replay needs nothing special: INSERT and MODIFY are both a put of
  the new image, REMOVE a delete by key, applied in shard order.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..aws.client import DynamoClient
from ..config import ALTERNATOR_STREAMS_WINDOW, Config
from ..errors import StreamTrimmedError
from .streams import DynamoStreamSource, Shard, list_shards

ALTERNATOR_EVENT_SOURCE = "scylladb:alternator"
# Alternator Streams keep a record 24 hours (the CDC log's TTL); a savepoint is trusted only if
# it was written a little less long ago than that.
RETENTION_SECONDS = 24 * 3600.0
RETENTION_MARGIN_SECONDS = 600.0


def check_retention(saved_at: float, now: float, savepoint: str) -> None:
    """Refuse stream positions saved so long ago that Alternator may have dropped records
    after them: it drops them silently, where DynamoDB answers TrimmedDataAccessException."""
    age = now - saved_at
    if saved_at > 0 and age > RETENTION_SECONDS - RETENTION_MARGIN_SECONDS:
        raise StreamTrimmedError(
            f"savepoint {savepoint} was last written {age / 3600:.1f} hours ago; Alternator "
            "Streams keep records 24 hours and drop older ones without an error, so changes "
            "after the saved positions may be gone. Start a new migration with a new snapshot "
            "(--fresh)"
        )


@dataclass(frozen=True)
class GenerationShard(Shard):
    """A shard that also waits for every shard of the previous generation (``older``)."""

    older: tuple[str, ...] = ()

    @property
    def parents(self) -> tuple[str, ...]:
        named = super().parents
        return named + tuple(s for s in self.older if s not in named)


def _start(s: Shard) -> int | None:
    try:
        return int(s.starting_sequence) if s.starting_sequence is not None else None
    except ValueError:
        return None


def with_generation_barrier(shards: list[Shard]) -> list[Shard]:
    """Each shard with, as extra parents, every listed shard of the generation just before
    its own (shards sharing a StartingSequenceNumber form one generation). The barrier is
    transitive: that generation waits for the one before it in turn."""
    starts = sorted({n for n in map(_start, shards) if n is not None})
    by_start: dict[int, tuple[str, ...]] = {}
    for s in shards:
        n = _start(s)
        if n is not None:
            by_start[n] = (*by_start.get(n, ()), s.shard_id)
    previous = {b: by_start[a] for a, b in pairwise(starts)}
    out: list[Shard] = []
    for s in shards:
        n = _start(s)
        older = previous.get(n, ()) if n is not None else ()
        out.append(
            GenerationShard(
                s.shard_id,
                s.parent,
                s.starting_sequence,
                s.ending_sequence,
                s.adjacent_parent,
                older=older,
            )
        )
    return out


class AlternatorStreamSource(DynamoStreamSource):
    """Alternator Streams as a ``ChangeSource`` (records in order per item, once each)."""

    kind = "alternator-streams"

    def __init__(
        self, client: DynamoClient, arn: str, settle_seconds: float = ALTERNATOR_STREAMS_WINDOW
    ) -> None:
        super().__init__(client, arn)
        self.settle_seconds = settle_seconds

    def list_shards(self) -> list[Shard]:
        return with_generation_barrier(list_shards(self.client, self.arn))


def change_source(cfg: Config, client: DynamoClient, arn: str) -> DynamoStreamSource:
    """The source's stream as a change source: Alternator Streams for `type: alternator`."""
    if cfg.source.type == "alternator":
        return AlternatorStreamSource(client, arn, cfg.source.settle_seconds)
    return DynamoStreamSource(client, arn)


def settle_seconds(changes: Any) -> float:
    """How long a change source may hold a record back (0 for DynamoDB Streams, Kinesis)."""
    return float(getattr(changes, "settle_seconds", 0.0))
