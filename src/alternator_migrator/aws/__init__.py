"""AWS wire: HTTP transport, SigV4 client, endpoints, Alternator node discovery, retry, budgets.

Layer: uses config and the ground only."""

from .client import (
    DynamoClient,
    DynamoError,
    kinesis_client,
    preflight,
    source_client,
    target_client,
)
from .retry import Backoff, RetryPolicy
from .throttle import RateLimiter

__all__ = [
    "Backoff",
    "DynamoClient",
    "DynamoError",
    "RateLimiter",
    "RetryPolicy",
    "kinesis_client",
    "preflight",
    "source_client",
    "target_client",
]
