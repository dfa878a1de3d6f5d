"""Change sources: reading a table's changes from DynamoDB Streams or Kinesis, shard by shard.

Layer: uses aws, config and the ground."""

from .enable import ensure_stream
from .kinesis import KinesisSource, ensure_destination
from .streams import DynamoStreamSource, Shard, ShardReader

__all__ = [
    "DynamoStreamSource",
    "KinesisSource",
    "Shard",
    "ShardReader",
    "ensure_destination",
    "ensure_stream",
]
