"""Batched puts and deletes against the target, in wire format.

A request here is BatchWriteItem's own element: ``{"PutRequest": {"Item": ...}}`` or
``{"DeleteRequest": {"Key": ...}}``. Nothing is ever dropped: ``UnprocessedItems`` and
transient errors are retried with jittered backoff, and a request that fails for good stops the
run with its key named.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..aws.client import DynamoClient, DynamoError
from ..aws.retry import Backoff, RetryPolicy
from ..aws.throttle import RateLimiter
from ..errors import WriteError
from ..metrics import METRICS

log = logging.getLogger(__name__)

Request = dict[str, Any]
Item = dict[str, Any]
# A request already encoded (``put_element``, ``Sink.delete_element``): written as it is.
Element = Request | bytes


def item_key(item: Item, key_names: Sequence[str]) -> Item:
    return {k: item[k] for k in key_names if k in item}


def key_id(key: Item) -> bytes:
    """A hashable identity of a key in wire format."""
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS)


def rename_item(item: Item, renames: dict[str, str]) -> Item:
    if not renames:
        return item
    return {renames.get(k, k): v for k, v in item.items()}


def put_element(item: Item, renames: dict[str, str] | None = None) -> bytes:
    """The PutRequest of ``item`` as BatchWriteItem bytes; joining makes an exact-size copy
    (orjson keeps spare capacity behind each result it returns)."""
    return b'{"PutRequest":{"Item":' + orjson.dumps(rename_item(item, renames or {})) + b"}}"


def _as_request(req: Element) -> Request:
    return orjson.loads(req) if isinstance(req, bytes) else req


def _short_key(key: Item) -> str:
    text = orjson.dumps(key).decode()
    return text if len(text) <= 300 else text[:300] + "..."


class Sink:
    """Writes batches of requests to one target table within a write budget."""

    def __init__(
        self,
        client: DynamoClient,
        table: str,
        key_names: Sequence[str],
        *,
        max_batch: int = 25,
        limiter: RateLimiter | None = None,
        consumed_capacity: bool = True,
        renames: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self.key_names = list(key_names)
        self.max_batch = max_batch
        self.limiter = limiter or RateLimiter(None)
        self.consumed_capacity = consumed_capacity
        self.renames = renames or {}
        self.retry = retry or client.retry
        # Keys as the target sees them: renames applied.
        self.target_key_names = [self.renames.get(k, k) for k in self.key_names]
        self._header = b'{"RequestItems":{' + orjson.dumps(table) + b":["
        self._key_renamed = any(k in self.renames for k in self.key_names)

    # -- building requests from source-side items
    def put(self, item: Item) -> Request:
        return {"PutRequest": {"Item": rename_item(item, self.renames)}}

    def delete(self, key: Item) -> Request:
        return {"DeleteRequest": {"Key": rename_item(key, self.renames)}}

    def delete_element(self, key_json: bytes) -> bytes:
        """The DeleteRequest of a key given as JSON (a ``Change.key``), as bytes."""
        if self._key_renamed:
            key_json = orjson.dumps(rename_item(orjson.loads(key_json), self.renames))
        return b'{"DeleteRequest":{"Key":' + key_json + b"}}"

    def describe(self, req: Element) -> str:
        """A request for an error message: its key only, never the item's other attributes
        (they may hold personal data, and a 400 KB item is not a line)."""
        req = _as_request(req)
        if "PutRequest" in req:
            key = item_key(req["PutRequest"]["Item"], self.target_key_names)
            return "put of the item with key " + _short_key(key)
        return "delete of key " + _short_key(req["DeleteRequest"]["Key"])

    def put_items(self, items: Iterable[Item]) -> int:
        return self.write([self.put(i) for i in items])

    # -- writing
    def write(self, requests: Sequence[Element]) -> int:
        """Write all requests (at most one per key), chunked; returns how many were written."""
        n = 0
        for i in range(0, len(requests), self.max_batch):
            chunk = requests[i : i + self.max_batch]
            self._write_chunk(chunk)
            n += len(chunk)
        return n

    def _body(self, chunk: Sequence[Element]) -> bytes:
        # Joined from bytes: encoded elements are not decoded and encoded again.
        parts = [r if isinstance(r, bytes) else orjson.dumps(r) for r in chunk]
        trailer = b']},"ReturnConsumedCapacity":"TOTAL"}' if self.consumed_capacity else b"]}}"
        return self._header + b",".join(parts) + trailer

    def _write_chunk(self, chunk: Sequence[Element]) -> None:
        pending: Sequence[Element] = chunk
        c = self.client
        with Backoff(
            self.retry,
            stop=c.stop,
            endpoint=c.label,
            url=c.url,
            op="BatchWriteItem",
            unanswered=False,
        ) as backoff:
            while pending:
                payload = self._body(pending)
                # ~1 WCU per started KB per item; body size is a close, cheap upper estimate.
                estimate = max(len(pending), len(payload) / 1024)
                self.limiter.acquire(estimate, c.stop)
                try:
                    resp = c.call_raw("BatchWriteItem", payload, retry=self.retry)
                except DynamoError as e:
                    if e.retryable:  # the client's own retry budget ran out
                        raise WriteError(
                            f"target unavailable: BatchWriteItem kept failing ({e.code}: {e.message}) "
                            f"for {backoff.elapsed:.0f}s; first unwritten: {self.describe(pending[0])}"
                        ) from None
                    self._write_singly(pending, e)
                    return
                consumed = resp.get("ConsumedCapacity")
                if consumed:
                    used = sum(float(x.get("CapacityUnits", 0)) for x in consumed)
                    self.limiter.settle(used - estimate)
                unprocessed = resp.get("UnprocessedItems", {}).get(self.table, [])
                done = len(pending) - len(unprocessed)
                if done:
                    METRICS.inc("items_written_total", done)
                if not unprocessed:
                    return
                if not backoff.retry("unprocessed_items", f"{len(unprocessed)} items unprocessed"):
                    raise WriteError(
                        f"target left {len(unprocessed)} items unprocessed after {backoff.attempt} "
                        f"retries over {backoff.elapsed:.0f}s; first unwritten: "
                        f"{self.describe(unprocessed[0])}"
                    )
                pending = unprocessed

    def _write_singly(self, pending: Sequence[Element], batch_error: DynamoError) -> None:
        """A batch was refused as a whole: find and name the request that is at fault."""
        log.warning(
            "BatchWriteItem refused (%s); writing %d items one by one",
            batch_error.code,
            len(pending),
        )
        for element in pending:
            req = _as_request(element)
            if "PutRequest" in req:
                op, body = "PutItem", {"TableName": self.table, "Item": req["PutRequest"]["Item"]}
            else:
                op, body = (
                    "DeleteItem",
                    {"TableName": self.table, "Key": req["DeleteRequest"]["Key"]},
                )
            try:
                self.client.call(op, body, retry=self.retry)
            except DynamoError as e:
                raise WriteError(
                    f"target refused the {self.describe(req)}: {e.code}: {e.message}"
                ) from None
            METRICS.inc("items_written_total")
