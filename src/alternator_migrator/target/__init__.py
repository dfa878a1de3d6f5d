"""The target side: schema (describe, create, check), the batched sink and the TTL rule.

Layer: uses aws, config and the ground."""

from .schema import describe_source, ensure_target, key_names
from .sink import Sink
from .sink_factory import build_sink, make_sink
from .ttl import expiry_check, source_ttl_attribute

__all__ = [
    "Sink",
    "build_sink",
    "describe_source",
    "ensure_target",
    "expiry_check",
    "key_names",
    "make_sink",
    "source_ttl_attribute",
]
