"""The savepoint: snapshot progress, stream positions, table identities and the run lock.

Layer: uses config and the ground."""

from .savepoint import Savepoint, SavepointStore, ShardPosition

__all__ = [
    "Savepoint",
    "SavepointStore",
    "ShardPosition",
]
