"""Expired items: what DynamoDB's TTL will delete is not migrated; everything else is.

DynamoDB deletes an expired item some time after its TTL passes (up to days later), so a scan
or a stream can still hand it to us. Copying it would resurrect, on a target whose clock has
already passed it, an item the source is about to delete. The Scylla Migrator skips such items;
so do we - but only those DynamoDB itself will delete. Its TTL considers a value only when it
is a Number of epoch *seconds* that is in the past by no more than five years (AWS's TTL docs);
anything else is kept forever: `0` (a common "never expires"), a date more than five years
ago, a string, a value in milliseconds (tens of thousands of years ahead as seconds). Skipping
those would be silent loss, and in the replay it would turn a write into a delete.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from ..aws.client import DynamoClient, DynamoError

log = logging.getLogger(__name__)

Item = dict[str, Any]

# AWS says "no more than five years in the past" without saying how long a year is. The
# shorter reading (no leap days) skips less: an item in the day or so between the two readings
# is copied, and if DynamoDB does delete it, that delete reaches the target through the stream.
# Skipping an item DynamoDB keeps could never be undone.
FIVE_YEARS = 5 * 365 * 86400
# A TTL this far ahead will not expire in practice: almost surely milliseconds or microseconds
# (now in milliseconds is ~1000x now in seconds). Only counted in the log, copied either way.
FAR_FUTURE = 1000 * 365 * 86400


class Ttl(enum.Enum):
    ABSENT = "absent"  # no TTL attribute: never expires (nothing to say)
    EXPIRED = "expired"  # DynamoDB will delete it: not copied
    PENDING = "pending"  # expires later, as DynamoDB counts it
    NEVER = "never"  # has the attribute, but DynamoDB will never delete it for it


def ttl_state(item: Item, attribute: str, now: float) -> Ttl:
    """What DynamoDB's TTL makes of ``item`` at ``now`` (epoch seconds)."""
    value = item.get(attribute)
    if value is None:
        return Ttl.ABSENT
    if not isinstance(value, dict) or "N" not in value:
        return Ttl.NEVER  # a string, a set, a map...: DynamoDB's TTL ignores the item
    try:
        seconds, at = Decimal(value["N"]), Decimal(now)
        if seconds >= at:
            return Ttl.NEVER if seconds - at > FAR_FUTURE else Ttl.PENDING
        if seconds < at - FIVE_YEARS:
            return Ttl.NEVER  # 0, and anything more than five years past
        return Ttl.EXPIRED
    except (InvalidOperation, TypeError, ValueError):
        return Ttl.NEVER  # not a number DynamoDB would have stored; never expires


def is_expired(item: Item, attribute: str, now: float) -> bool:
    """True only when DynamoDB's TTL will delete ``item``: its TTL attribute is a Number of
    epoch seconds in the past, by no more than five years."""
    return ttl_state(item, attribute, now) is Ttl.EXPIRED


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


class ExpiryCheck:
    """The rule for one table: ``check(item)`` is True when DynamoDB will delete the item
    (``is_expired``); ``check.state(item)`` says more, for the counts in the log."""

    def __init__(self, attribute: str, clock: Callable[[], float]) -> None:
        self.attribute = attribute
        self.clock = clock

    def __call__(self, item: Item) -> bool:
        return is_expired(item, self.attribute, self.clock())

    def state(self, item: Item) -> Ttl:
        return ttl_state(item, self.attribute, self.clock())


def expiry_check(attribute: str | None, clock: Callable[[], float]) -> ExpiryCheck | None:
    """The rule for items of a table whose TTL attribute is ``attribute`` (None: no TTL)."""
    if attribute is None:
        return None
    return ExpiryCheck(attribute, clock)
