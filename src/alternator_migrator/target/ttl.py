"""Expired items: what DynamoDB's TTL has already condemned is not migrated.

DynamoDB deletes an expired item some time after its TTL passes (up to days later), so a scan
or a stream can still hand it to us. Copying it would resurrect, on a target whose clock has
already passed it, an item the source is about to delete. The Scylla Migrator skips such items;
so do we.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from ..aws.client import DynamoClient, DynamoError

log = logging.getLogger(__name__)

Item = dict[str, Any]


def source_ttl_attribute(client: DynamoClient, table: str) -> str | None:
    """The TTL attribute of the source table when TTL is enabled; None otherwise."""
    try:
        d = client.call("DescribeTimeToLive", {"TableName": table})["TimeToLiveDescription"]
    except DynamoError as e:
        log.warning(
            "Could not read the source's TTL setting (%s); expired items are copied", e.code
        )
        return None
    if d.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        return None
    name = d.get("AttributeName")
    return str(name) if name else None


def is_expired(item: Item, attribute: str, now: float) -> bool:
    """True when ``item``'s TTL attribute is a number of epoch seconds already in the past.

    Anything else (absent, not a number) never expires, as in DynamoDB.
    """
    value = item.get(attribute)
    if not isinstance(value, dict) or "N" not in value:
        return False
    try:
        return Decimal(value["N"]) < Decimal(now)
    except (InvalidOperation, TypeError):
        return False


class Expiry:
    """Is an item expired? Names its ``attribute``, so the replay can keep just that value of
    each image until the write (see ``changes.records.Decoder``)."""

    def __init__(self, attribute: str, clock: Callable[[], float]) -> None:
        self.attribute = attribute
        self.clock = clock

    def __call__(self, item: Item) -> bool:
        return is_expired(item, self.attribute, self.clock())


def expiry_check(
    attribute: str | None, clock: Callable[[], float]
) -> Callable[[Item], bool] | None:
    """A predicate for items of a table whose TTL attribute is ``attribute`` (None: no TTL)."""
    if attribute is None:
        return None
    return Expiry(attribute, clock)
