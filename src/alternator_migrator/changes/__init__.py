"""Change sources: reading a table's changes from DynamoDB Streams or Kinesis, shard by shard.

Layer: uses aws, config and the ground."""

from .kinesis import KinesisSource, ensure_destination
from .streams import DynamoStreamSource, Shard, ShardReader, ensure_stream

__all__ = [
    "DynamoStreamSource",
    "KinesisSource",
    "Shard",
    "ShardReader",
    "ensure_destination",
    "ensure_stream",
]
