"""Change sources: reading a table's changes from DynamoDB Streams, Alternator Streams or Kinesis, shard by shard.

Layer: uses target, aws, config and the ground."""

from .alternator import AlternatorStreamSource, change_source, settle_seconds
from .enable import ensure_stream
from .kinesis import KinesisSource, ensure_destination
from .shards import ChangeSource, ShardAdvance, advance_shard, open_reader
from .streams import DynamoStreamSource, Shard, ShardReader, ShardSpec

__all__ = [
    "AlternatorStreamSource",
    "ChangeSource",
    "DynamoStreamSource",
    "KinesisSource",
    "Shard",
    "ShardAdvance",
    "ShardReader",
    "ShardSpec",
    "advance_shard",
    "change_source",
    "ensure_destination",
    "ensure_stream",
    "open_reader",
    "settle_seconds",
]
