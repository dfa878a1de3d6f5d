"""Change sources: reading a table's changes from DynamoDB Streams, Alternator Streams or Kinesis, shard by shard.

Layer: uses aws, config and the ground."""

from .alternator import AlternatorStreamSource, change_source, settle_seconds
from .enable import ensure_stream
from .kinesis import KinesisSource, ensure_destination
from .streams import DynamoStreamSource, Shard, ShardReader

__all__ = [
    "AlternatorStreamSource",
    "DynamoStreamSource",
    "KinesisSource",
    "Shard",
    "ShardReader",
    "change_source",
    "ensure_destination",
    "ensure_stream",
    "settle_seconds",
]
