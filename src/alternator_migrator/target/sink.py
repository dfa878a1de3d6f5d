"""Batched puts and deletes against the target, in wire format.

A request here is BatchWriteItem's own element: ``{"PutRequest": {"Item": ...}}`` or
``{"DeleteRequest": {"Key": ...}}``. Nothing is ever dropped: ``UnprocessedItems`` and
transient errors are retried with jittered backoff, and a request that fails for good stops the
run with its key named.

On a discovered Alternator cluster every write of one item goes to one node (key affinity, see
``aws.nodes``): requests are split per node, and routed again at every attempt, so a node that
leaves sends its keys to their new owners (after the clock-skew guard), never round-robin.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import orjson

from ..aws.api import retry_cause
from ..aws.client import DynamoClient, DynamoError, NodeGone
from ..aws.nodes import Epoch, Route
from ..aws.retry import Backoff, RetryPolicy, wait
from ..aws.throttle import RateLimiter
from ..aws.transport import HttpPool
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


_PUT_HEAD = b'{"PutRequest":{"Item":'
_PUT_TAIL = b"}}"

try:  # optional: without it a key is read from an item kept as bytes by parsing it whole
    import msgspec  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    msgspec = None  # type: ignore[assignment, unused-ignore]


def _as_request(req: Element) -> Request:
    return orjson.loads(req) if isinstance(req, bytes) else req


# DynamoDB refuses items over 400 KB ("Item size has exceeded the maximum allowed size");
# Alternator does not, so a reverse replay from Alternator can meet one.
TOO_LARGE_HINT = (
    "; DynamoDB takes items up to 400 KB (Alternator has no such limit): shrink or remove "
    "the item on the source, then run again (the savepoint stays before this change)"
)


def _short_key(key: Item) -> str:
    text = orjson.dumps(key).decode()
    return text if len(text) <= 300 else text[:300] + "..."


def _interleave(per_node: list[list[Routed]]) -> list[list[Any]]:
    """One node's batch after another's (A, B, C, A, B, ...): concurrent writers taking them in
    order load every node at once, not one node after the other."""
    out: list[list[Any]] = []
    for row in itertools.zip_longest(*per_node):
        out.extend(c for c in row if c is not None)
    return out


class Redo(NamedTuple):
    """What a first attempt (``Sink.write_first``) left of a batch: the requests still to
    write, and the error that refused them (None: the target left them unprocessed)."""

    pending: Sequence[Any]
    error: DynamoError | None


class Routed(list[Any]):
    """Requests (or items) split for one node under one node set: writing them needs no second
    hash while that node set is current and settled."""

    def __init__(self, seq: Iterable[Any], epoch: Epoch[HttpPool], node: HttpPool) -> None:
        super().__init__(seq)
        self.epoch = epoch
        self.node = node


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
        self.affinity = client.affinity
        self.held_seconds = 0.0  # time writes of moved keys waited for the clock-skew guard
        self._labels = METRICS.scope()  # a table of a multi-table run: its `table` label
        self._key_decoder: Any = None

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

    def put_raw(self, item: Any) -> bytes:
        """The PutRequest of an item given as its wire JSON (bytes-like, e.g. a Scan page's
        span): framed as it is, parsed only to rename attributes."""
        if self.renames:
            return put_element(orjson.loads(memoryview(item)), self.renames)
        return b"".join((_PUT_HEAD, item, _PUT_TAIL))

    def put_items(self, items: Iterable[Item | Any]) -> int:
        """Put source items: dicts in wire format, or their JSON as bytes-like objects."""
        if not self.renames:  # items kept as bytes are framed inline (no call per item)
            head, tail, join = _PUT_HEAD, _PUT_TAIL, b"".join
            reqs: list[Element] = [
                self.put(i) if isinstance(i, dict) else join((head, i, tail)) for i in items
            ]
        else:
            reqs = [self.put(i) if isinstance(i, dict) else self.put_raw(i) for i in items]
        if isinstance(items, Routed):
            return self.write(Routed(reqs, items.epoch, items.node))
        return self.write(reqs)

    # -- splitting per node (key affinity)
    def _request_key(self, element: Element) -> bytes:
        """The wire bytes of a request's partition key (what picks its node). An encoded
        element is decoded for it: only under key affinity, and the replay passes its keys."""
        req = _as_request(element)
        put = req.get("PutRequest")
        attrs = put["Item"] if put is not None else req["DeleteRequest"]["Key"]
        return orjson.dumps(attrs[self.target_key_names[0]])

    def _chunks(self, seq: Sequence[Any]) -> list[list[Any]]:
        return [list(seq[i : i + self.max_batch]) for i in range(0, len(seq), self.max_batch)]

    def split(
        self, requests: Sequence[Element], key_json: Sequence[bytes] | None = None
    ) -> list[list[Element]]:
        """Batches of at most ``max_batch``, each for one node under key affinity (to be
        written concurrently: a key is in one batch only). ``key_json``: each request's key as
        JSON with source names (``Change.key``), cheaper to route by than a whole image."""
        if self.affinity is None:
            return self._chunks(requests)
        if key_json is not None:
            name = self.key_names[0]  # a rename changes the name, not the value that routes
            keys = [orjson.dumps(orjson.loads(k)[name]) for k in key_json]
        else:
            keys = [self._request_key(r) for r in requests]
        routes = self.affinity.route(keys)
        return _interleave(
            [
                [Routed(c, r.epoch, r.node) for c in self._chunks([requests[i] for i in r.indices])]
                for r in routes
            ]
        )

    def _item_key(self, item: Any) -> bytes:
        """The wire bytes of an item's partition key value, the item a dict or its JSON."""
        name = self.key_names[0]
        if isinstance(item, dict):
            return orjson.dumps(item[name])
        if self._key_decoder is None:  # only that attribute of the item is parsed
            if msgspec is None:
                return orjson.dumps(orjson.loads(memoryview(item))[name])
            one = msgspec.defstruct("Key", [("value", Any)], rename={"value": name})
            self._key_decoder = msgspec.json.Decoder(one)
        return orjson.dumps(self._key_decoder.decode(item).value)

    def split_items(self, items: Sequence[Item | Any]) -> list[list[Any]]:
        """``split`` for source items about to be put (renames keep the key's value); an item
        is a dict in wire format or its JSON (bytes-like)."""
        if self.affinity is None:
            return self._chunks(items)
        routes = self.affinity.route([self._item_key(it) for it in items])
        return _interleave(
            [
                [Routed(c, r.epoch, r.node) for c in self._chunks([items[i] for i in r.indices])]
                for r in routes
            ]
        )

    # -- writing
    def write(self, requests: Sequence[Element]) -> int:
        """Write all requests (at most one per key), chunked (per node under key affinity);
        returns how many were written."""
        if isinstance(requests, Routed) and len(requests) <= self.max_batch:
            self._write_chunk(requests)  # split already
            return len(requests)
        n = 0
        for chunk in self.split(requests):
            self._write_chunk(chunk)
            n += len(chunk)
        return n

    def _claim(self, pending: Sequence[Element]) -> Route[HttpPool] | list[list[Element]]:
        """The node all of ``pending`` go to, counted as in flight there; or, when the node set
        changed since they were split, ``pending`` split again. Waits out the guard first."""
        aff = self.affinity
        assert aff is not None
        if isinstance(pending, Routed) and aff.settled(pending.epoch):
            # Split under the current node set and no key is moving: no need to hash again.
            route = Route(pending.epoch, pending.node, [], 0.0)
            if aff.begin(route):
                return route
        keys = [self._request_key(r) for r in pending]
        while True:
            routes = aff.route(keys)
            if len(routes) > 1:
                return [[pending[i] for i in r.indices] for r in routes]
            route = routes[0]
            now = time.monotonic()
            if route.hold_until > now:
                # A key moved: its old node may have stamped a write until recently, with a
                # clock up to the guard ahead of the new node's.
                pause = min(route.hold_until - now, 0.05 if route.hold_until == float("inf") else 5)
                if aff.first_hold(route):
                    log.info(
                        "Target node set changed: holding writes of keys that moved to %s until "
                        "%.0f ms after their old node's last write (clock-skew guard)",
                        getattr(route.node, "netloc", route.node),
                        aff.guard * 1000,
                    )
                METRICS.inc("writes_held_for_clock_skew_total", **self._labels)
                self.held_seconds += pause
                wait(self.client.stop, pause, "holding writes of keys that moved node")
                continue
            if aff.begin(route):
                return route

    def _body(self, chunk: Sequence[Element]) -> bytes:
        # Joined from bytes: encoded elements are not decoded and encoded again.
        try:  # all encoded (the replay's, a Scan page's): no call per element
            joined = b",".join(cast(Sequence[bytes], chunk))
        except TypeError:  # some are dicts
            joined = b",".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in chunk)
        trailer = b']},"ReturnConsumedCapacity":"TOTAL"}' if self.consumed_capacity else b"]}}"
        return self._header + joined + trailer

    # -- many batches from one thread
    @property
    def multiplexed(self) -> bool:
        """Whether ``write_first`` may send this sink's batches (not under key affinity, whose
        batches are each pinned to a node and counted in flight there)."""
        return self.affinity is None

    def write_first(self, chunks: Sequence[Sequence[Element]], in_flight: int) -> list[Redo]:
        """The first attempt of each batch (at most one request per key in all ``chunks``), up
        to ``in_flight`` on the wire at once from the calling thread, each within the write
        budget. Returns what is left: each batch's failure or unprocessed items, for ``redo``
        (which may run on other threads: the keys are distinct)."""
        estimates: list[float] = []

        def payload(i: int) -> bytes:  # made and paid for when it is its turn to be sent
            body = self._body(chunks[i])
            estimates.append(max(len(chunks[i]), len(body) / 1024))
            self.limiter.acquire(estimates[i], self.client.stop)
            return body

        answers = self.client.call_many("BatchWriteItem", len(chunks), payload, in_flight)
        left: list[Redo] = []
        for chunk, estimate, answer in zip(chunks, estimates, answers, strict=True):
            if isinstance(answer, DynamoError):
                self.limiter.settle(-estimate)  # charged again when sent again
                left.append(Redo(chunk, answer))
                continue
            unprocessed = self._settle(answer, chunk, estimate)
            if unprocessed:
                left.append(Redo(unprocessed, None))
        return left

    def write_distinct(
        self,
        requests: Sequence[Element],
        in_flight: int,
        run: Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]] = map,
        key_json: Sequence[bytes] | None = None,
    ) -> int:
        """``write`` for requests with distinct keys, so that batches may go at once: up to
        ``in_flight`` on the wire from the calling thread (``write_first``). What they leave, or
        (under key affinity) each batch, goes through ``run`` (``map``: here, one after the
        other; a pool's ``map``: on its threads). ``key_json``: as for ``split``."""
        chunks = self.split(requests, key_json)
        if self.multiplexed:
            for _ in run(self.redo, self.write_first(chunks, in_flight)):
                pass
        else:
            for _ in run(self.write, chunks):
                pass
        return len(requests)

    def redo(self, left: Redo) -> None:
        """What ``write_first`` left of a batch, written as ``write`` would have gone on: a
        refused batch item by item, anything else after the retry pause its failure is due."""
        e = left.error
        if e is not None and not e.retryable:
            self._write_singly(left.pending, e)
        elif e is not None:
            self._write_chunk(left.pending, (retry_cause(e), f"{e.code}: {e.message}"))
        else:
            n = len(left.pending)
            self._write_chunk(left.pending, ("unprocessed_items", f"{n} items unprocessed"))

    def _settle(self, resp: dict[str, Any], pending: Sequence[Element], estimate: float) -> Any:
        """A BatchWriteItem answer accounted (budget, metrics); returns its unprocessed items."""
        consumed = resp.get("ConsumedCapacity")
        if consumed:
            used = sum(float(x.get("CapacityUnits", 0)) for x in consumed)
            self.limiter.settle(used - estimate)
        unprocessed = resp.get("UnprocessedItems", {}).get(self.table, [])
        done = len(pending) - len(unprocessed)
        if done:
            METRICS.inc("items_written_total", done, **self._labels)
        return unprocessed

    def _write_chunk(self, chunk: Sequence[Element], failed: tuple[str, str] | None = None) -> None:
        """``failed``: the cause and detail of a first attempt made elsewhere (``write_first``),
        retried as this loop retries its own."""
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
            if failed is not None and not backoff.retry(*failed):
                raise WriteError(
                    f"target unavailable: BatchWriteItem failed ({failed[1]}); "
                    f"first unwritten: {self.describe(pending[0])}"
                )
            while pending:
                payload = self._body(pending)
                # ~1 WCU per started KB per item; body size is a close, cheap upper estimate.
                estimate = max(len(pending), len(payload) / 1024)
                self.limiter.acquire(estimate, c.stop)
                route: Route[HttpPool] | None = None
                if self.affinity is not None:
                    claim = self._claim(pending)
                    if isinstance(claim, list):  # the node set changed: per node again
                        self.limiter.settle(-estimate)
                        for part in claim:
                            self._write_chunk(part)
                        return
                    route = claim
                try:
                    if route is None:
                        resp = c.call_raw("BatchWriteItem", payload, retry=self.retry)
                    else:
                        try:
                            resp = c.call_raw(
                                "BatchWriteItem", payload, retry=self.retry, node=route.node
                            )
                        finally:
                            self.affinity.end(route)  # type: ignore[union-attr]
                except NodeGone as e:
                    # Its node left the live set: route again (to the keys' new owners).
                    if not backoff.retry("connection", f"{e.code}: {e.message}"):
                        raise WriteError(
                            f"target unavailable: BatchWriteItem kept failing ({e.code}: "
                            f"{e.message}); first unwritten: {self.describe(pending[0])}"
                        ) from None
                    continue
                except DynamoError as e:
                    if e.retryable:  # the client's own retry budget ran out
                        raise WriteError(
                            f"target unavailable: BatchWriteItem kept failing ({e.code}: {e.message}) "
                            f"for {backoff.elapsed:.0f}s; first unwritten: {self.describe(pending[0])}"
                        ) from None
                    self._write_singly(pending, e)
                    return
                unprocessed = self._settle(resp, pending, estimate)
                if not unprocessed:
                    return
                if not backoff.retry("unprocessed_items", f"{len(unprocessed)} items unprocessed"):
                    raise WriteError(
                        f"target left {len(unprocessed)} items unprocessed after {backoff.attempt} "
                        f"retries over {backoff.elapsed:.0f}s; first unwritten: "
                        f"{self.describe(unprocessed[0])}"
                    )
                pending = (
                    unprocessed if route is None else Routed(unprocessed, route.epoch, route.node)
                )

    def _call_pinned(self, op: str, body: dict[str, Any], req: Element) -> None:
        """One PutItem / DeleteItem, to the request's node under key affinity."""
        if self.affinity is None:
            self.client.call(op, body, retry=self.retry)
            return
        while True:
            claim = self._claim([req])
            assert not isinstance(claim, list)  # one key: one node
            try:
                self.client.call(op, body, retry=self.retry, node=claim.node)
                return
            except NodeGone:
                continue  # its node left: the key has a new owner now
            finally:
                self.affinity.end(claim)

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
                self._call_pinned(op, body, req)
            except DynamoError as e:
                raise WriteError(
                    f"target refused the {self.describe(req)}: {e.code}: {e.message}"
                    + (TOO_LARGE_HINT if "item size" in e.message.lower() else "")
                ) from None
            METRICS.inc("items_written_total", **self._labels)
