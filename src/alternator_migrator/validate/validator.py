"""Two-way comparison of source and target, with an opt-in repair.

Both tables are scanned once, at the same time, in segments; each item's JSON (sorted names)
is appended to its side's item log, and its digest and place in the log go into a bucket
chosen by a hash of its key (buckets.py: held in memory while small, spilled to files past a
byte budget, so memory stays flat however large the tables are). Once both scans are done,
each bucket's two sides are matched by key: a source key the target lacks is missing, a
target key the source lacks is extra, a pair whose digests differ is read back from the logs
and compared by value (compare.py). The scans' segments need not line up (DynamoDB and Alternator split a table
differently); the buckets are ours.

A live source may change while it is scanned, so every difference is re-read (consistent
BatchGetItem on both sides, 100 keys a call) before it is reported or repaired.

``--sample FRACTION`` scans only some segments of each side and looks their keys up on the other
side (segments of two tables hold different keys, so a sample cannot be matched by buckets).

Stopped (Ctrl-C, SIGTERM), it reports what it compared so far, marked partial, and keeps its
position next to the savepoint: the next run resumes from it (``--fresh`` starts over).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import queue
import random
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

import orjson

from ..aws.client import DynamoClient, DynamoError, preflight, source_client, target_client
from ..aws.retry import Backoff
from ..aws.throttle import RateLimiter, budget, charge_read, table_capacity
from ..config import Config, require_supported
from ..errors import ConfigError, Interrupted, MigratorError, SchemaError
from ..gcpause import young_collections_rarer
from ..heap import keep_freed_pages
from ..snapshot.copier import plan_scan
from ..state.savepoint import table_identity
from ..target.schema import key_names
from ..target.sink import Request, Sink, item_key, rename_item
from ..target.sink_factory import make_sink
from ..target.ttl import expiry_check, source_ttl_attribute
from .buckets import BucketStore
from .compare import (
    DIFFER,
    EXTRA,
    MISSING,
    Difference,
    Item,
    KeyId,
    compare_items,
    key_identity,
    key_text,
)
from .position import PositionFile
from .report import ValidationReport

log = logging.getLogger(__name__)


BATCH_GET_MAX = 100
SCAN_PAGE_ITEMS = 1000
BUCKETS = 64  # key-hash buckets (a bucket too large for the budget is split again)
MEMORY_BUDGET = 48 << 20  # bytes of scanned items held in memory before spilling to files
RECHECK_WORKERS = 4  # re-check batches in flight while comparing goes on
EXPIRED = ""  # a source item whose TTL has passed (a bucket value is never empty otherwise)
# A bucket value begins with the item JSON's digest: SHA-256's first 16 bytes, in hex.
DIGEST_CHARS = 32


class ValidationError(MigratorError):
    """Validation could not run to the end (exit 2, unlike 'differences found')."""


# --------------------------------------------------------------------------- one side


class _Side:
    """One table: segmented scans and batched point reads, within its read budget."""

    def __init__(
        self,
        label: str,
        client: DynamoClient,
        table: str,
        keys: list[str],
        limiter: RateLimiter,
        consumed_capacity: bool,
    ) -> None:
        self.label = label
        self.client = client
        self.table = table
        self.keys = keys
        self.limiter = limiter
        self.consumed_capacity = consumed_capacity
        # Key names can be reserved words; always go through placeholders.
        self._names = {f"#k{i}": k for i, k in enumerate(keys)}
        self._projection = ", ".join(self._names)

    def _charge(self, resp: dict[str, Any], payload: Any, consistent: bool) -> None:
        charge_read(self.limiter, resp, payload, consistent, self.client.stop)

    def scan(
        self, segment: int, total: int, keys_only: bool, stop: threading.Event | None = None
    ) -> Iterator[list[Item]]:
        start: Any = None
        while stop is None or not stop.is_set():
            req: dict[str, Any] = {"TableName": self.table, "Segment": segment}
            req["TotalSegments"] = total
            # A 1 MB page of small nested items is ~2,500 items and ~25 MB as Python objects;
            # capping the count keeps memory flat and small whatever the item shape.
            req["Limit"] = SCAN_PAGE_ITEMS
            if self.consumed_capacity:
                req["ReturnConsumedCapacity"] = "TOTAL"
            if keys_only:
                req["ProjectionExpression"] = self._projection
                req["ExpressionAttributeNames"] = self._names
            if start is not None:
                req["ExclusiveStartKey"] = start
            resp = self.client.call("Scan", req)
            start = resp.get("LastEvaluatedKey")
            items: list[Item] = resp.pop("Items", [])
            self._charge(resp, items, consistent=False)
            del resp
            yield items
            del items  # not alive while the next page is fetched
            if start is None:
                return

    def batch_get(self, keys: Sequence[Item], *, consistent: bool, keys_only: bool) -> list[Item]:
        """Items present for ``keys`` (side's own names), in no particular order."""
        found: list[Item] = []
        for i in range(0, len(keys), BATCH_GET_MAX):
            found.extend(self._batch_get(keys[i : i + BATCH_GET_MAX], consistent, keys_only))
        return found

    def _batch_get(self, keys: Sequence[Item], consistent: bool, keys_only: bool) -> list[Item]:
        spec: dict[str, Any] = {"Keys": list(keys), "ConsistentRead": consistent}
        if keys_only:
            spec["ProjectionExpression"] = self._projection
            spec["ExpressionAttributeNames"] = self._names
        found: list[Item] = []
        c = self.client
        with Backoff(
            c.retry, stop=c.stop, endpoint=c.label, url=c.url, op="BatchGetItem", unanswered=False
        ) as backoff:
            while True:
                req: dict[str, Any] = {"RequestItems": {self.table: spec}}
                if self.consumed_capacity:
                    req["ReturnConsumedCapacity"] = "TOTAL"
                resp = self.client.call("BatchGetItem", req)
                got: list[Item] = resp.get("Responses", {}).get(self.table, [])
                self._charge(resp, got, consistent)
                found.extend(got)
                left = resp.get("UnprocessedKeys", {}).get(self.table)
                if not left or not left.get("Keys"):
                    return found
                if not backoff.retry("unprocessed_keys", f"{len(left['Keys'])} keys unprocessed"):
                    raise ValidationError(
                        f"{self.label} left {len(left['Keys'])} keys of a BatchGetItem unprocessed "
                        f"after {backoff.attempt} retries; lower the read load or raise the table's "
                        "capacity"
                    )
                spec = {**spec, "Keys": left["Keys"]}


# --------------------------------------------------------------------------- the two passes


class Validator:
    def __init__(
        self,
        cfg: Config,
        *,
        repair: bool = False,
        stop: threading.Event | None = None,
        sample: float | None = None,
        fresh: bool = False,
    ) -> None:
        self.cfg = cfg
        self.repair = repair
        # Set by a signal (or the caller): stop reading, report what was compared, keep the
        # position. Never set by a failure: that is ``_failed``.
        self.stop = stop or threading.Event()
        self.sample = sample
        self.fresh = fresh
        self.scanned = [0, 0]  # items scanned per side, for the progress line
        # The two-scan run's state (see _run_scans)
        self.position = PositionFile(cfg)
        self.store = BucketStore(self.position.buckets, BUCKETS, MEMORY_BUDGET)
        self._done: list[set[int]] = [set(), set()]  # segments scanned per side
        self._compared: set[int] = set()  # buckets compared, their suspects re-checked
        self._pending: list[int] = []  # buckets compared, suspects not yet re-checked
        self._fwd: list[Item] = []  # suspects: missing in target or differing
        self._back: list[Item] = []  # suspects: only in the target
        self._futures: list[Future[None]] = []
        self._pool = ThreadPoolExecutor(RECHECK_WORKERS, thread_name_prefix="validate-recheck")
        self._save_lock = threading.Lock()
        self._phase = "scan"
        self._prior_seconds = 0.0
        self._started = time.monotonic()
        self._saved = time.monotonic()
        self._identity: dict[str, Any] = {}
        # copyMissingRows: put what the target lacks; never overwrite or delete (that is --repair)
        self.copy_missing = repair or cfg.validation.copy_missing_rows
        self.expired: Callable[[Item], bool] | None = None
        self.tol = cfg.validation.floating_point_tolerance
        self.limit = cfg.validation.failures_to_fetch
        self.renames = cfg.rename_map()
        self.unrename = {v: k for k, v in self.renames.items()}
        self.report = ValidationReport(cfg.source.table, cfg.target.table)
        self._lock = threading.Lock()
        self._failed = threading.Event()
        self.sink: Sink | None = None

    # -- setup
    def _describe(self, client: DynamoClient, table: str, setting: str) -> dict[str, Any]:
        try:
            desc: dict[str, Any] = preflight(client, "DescribeTable", {"TableName": table})["Table"]
        except DynamoError as e:
            if e.code == "ResourceNotFoundException":
                raise SchemaError(
                    f"{client.label} table {table!r} does not exist at {client.url}; "
                    f"check `{setting}`"
                ) from None
            raise
        return desc

    def open(self) -> None:
        cfg = self.cfg
        require_supported(cfg, streaming=False)
        if cfg.source.s3_export is not None:
            raise ConfigError(
                f"{cfg.path}: `validate` and `copyMissingRows` compare two live tables, and a "
                "`dynamodb-s3-export` source is none; validate against the table the export "
                "was made from"
            )
        self.source_client = source_client(cfg.source, stop=self.stop)
        self.target_client = target_client(cfg.target, stop=self.stop)
        self.src_desc = self._describe(self.source_client, cfg.source.table, "source.table")
        self.tgt_desc = self._describe(self.target_client, cfg.target.table, "target.table")
        skeys = key_names(self.src_desc)
        tkeys = [self.renames.get(k, k) for k in skeys]
        if sorted(tkeys) != sorted(key_names(self.tgt_desc)):
            raise SchemaError(
                f"target table {cfg.target.table!r} has keys {key_names(self.tgt_desc)} but the "
                f"source's keys (renames applied) are {tkeys}; they cannot be compared"
            )
        self.src_plan = plan_scan(cfg, self.src_desc)
        tgt_plan = plan_scan(cfg, self.tgt_desc)
        # The config has no target read budget: apply the source's percentage to the target's
        # own capacity, as the migrator does for writes.
        rcu = table_capacity(self.tgt_desc, "ReadCapacityUnits", cfg.target.type)
        self.tgt_plan = dataclasses.replace(
            tgt_plan, read_rate=budget(None, cfg.source.throughput_read_percent, rcu)
        )
        self.source = _Side(
            "source",
            self.source_client,
            cfg.source.table,
            skeys,
            RateLimiter(self.src_plan.read_rate),
            True,
        )
        self.target = _Side(
            "target",
            self.target_client,
            cfg.target.table,
            tkeys,
            RateLimiter(self.tgt_plan.read_rate),
            not cfg.target.remove_consumed_capacity,
        )
        if self.copy_missing:
            self.sink = make_sink(cfg, self.target_client, self.src_desc, self.tgt_desc)
        self.expired = expiry_check(
            source_ttl_attribute(self.source_client, cfg.source.table), time.time
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close_logs()  # the files stay (a stopped run resumes from them)
        # Also after a failed ``open`', which may have created only some of the clients.
        for client in (getattr(self, "source_client", None), getattr(self, "target_client", None)):
            if client is not None:
                client.close()

    # -- helpers
    def _tid(self, target_item: Item) -> KeyId:
        return key_identity(target_item, self.target.keys)

    def _to_target(self, source_item: Item) -> Item:
        return rename_item(source_item, self.renames)

    def _to_source(self, target_item: Item) -> Item:
        return rename_item(target_item, self.unrename)

    def _found(
        self, side: _Side, keys: Sequence[Item], consistent: bool, keys_only: bool
    ) -> dict[KeyId, Item]:
        """Look up target-named keys on either side; results keyed and named as the target."""
        if side is self.source:
            items = side.batch_get(
                [self._to_source(k) for k in keys], consistent=consistent, keys_only=keys_only
            )
            items = [self._to_target(i) for i in items]
        else:
            items = side.batch_get(keys, consistent=consistent, keys_only=keys_only)
        return {self._tid(i): i for i in items}

    def _record(self, diffs: list[Difference], repairs: list[Request], cleared: int) -> None:
        if self.sink is not None and repairs:
            self.sink.write(repairs)
        with self._lock:
            r = self.report
            r.cleared_on_recheck += cleared
            for d in diffs:
                r.counts[d.kind] += 1
                if len(r.samples) < self.limit:
                    r.samples.append(d)
            for req in repairs:
                op, key = (
                    ("put", item_key(req["PutRequest"]["Item"], self.target.keys))
                    if "PutRequest" in req
                    else ("delete", req["DeleteRequest"]["Key"])
                )
                r.repaired[op] += 1
                if len(r.repairs) < self.limit:
                    r.repairs.append((op.upper(), key))

    # -- pass 1: every source item has an equal target item
    def check_source_page(self, items: list[Item]) -> None:
        if self.expired is not None:
            live = [it for it in items if not self.expired(it)]
            with self._lock:
                self.report.expired_skipped += len(items) - len(live)
            items = live
        # One BatchGetItem's worth at a time: only a page plus 100 target items are in memory.
        for i in range(0, len(items), BATCH_GET_MAX):
            renamed = [self._to_target(it) for it in items[i : i + BATCH_GET_MAX]]
            keys = [item_key(r, self.target.keys) for r in renamed]
            there = self._found(self.target, keys, consistent=False, keys_only=False)
            suspects = [
                k
                for k, r in zip(keys, renamed, strict=True)
                if (t := there.get(self._tid(k))) is None or compare_items(r, t, self.tol)
            ]
            del there
            with self._lock:
                self.report.source_items += len(renamed)
            if suspects:
                self._recheck_forward(suspects)

    def _recheck_forward(self, keys: list[Item]) -> None:
        src_now = self._found(self.source, keys, consistent=True, keys_only=False)
        tgt_now = self._found(self.target, keys, consistent=True, keys_only=False)
        diffs: list[Difference] = []
        repairs: list[Request] = []
        cleared = 0
        for k in keys:
            kid = self._tid(k)
            s, t = src_now.get(kid), tgt_now.get(kid)
            if s is None:
                cleared += 1  # deleted from the source meanwhile; pass 2 sees a leftover
                continue
            if t is None:
                diffs.append(Difference(MISSING, k))
            elif attrs := compare_items(s, t, self.tol):
                diffs.append(Difference(DIFFER, k, tuple(attrs)))
                if not self.repair:
                    continue  # copyMissingRows never overwrites an item the target has
            else:
                cleared += 1
                continue
            repairs.append({"PutRequest": {"Item": s}})
        self._record(diffs, repairs, cleared)

    # -- pass 2: every target key exists on the source
    def check_target_page(self, keys: list[Item]) -> None:
        there = self._found(self.source, keys, consistent=False, keys_only=True)
        suspects = [k for k in keys if self._tid(k) not in there]
        with self._lock:
            self.report.target_items += len(keys)
        if suspects:
            self._recheck_backward(suspects)

    def _recheck_backward(self, keys: list[Item]) -> None:
        src_now = self._found(self.source, keys, consistent=True, keys_only=True)
        tgt_now = self._found(self.target, keys, consistent=True, keys_only=True)
        diffs: list[Difference] = []
        repairs: list[Request] = []
        cleared = 0
        for k in keys:
            kid = self._tid(k)
            if kid in src_now or kid not in tgt_now:
                cleared += 1
                continue
            diffs.append(Difference(EXTRA, k))
            if self.repair:
                repairs.append({"DeleteRequest": {"Key": tgt_now[kid]}})
        self._record(diffs, repairs, cleared)

    # -- a lookup pass: each scanned page's keys looked up on the other side (--sample,
    # copyMissingRows after a snapshot)
    def run_pass(
        self,
        side: _Side,
        total_segments: int,
        workers: int,
        keys_only: bool,
        handle: Callable[[list[Item]], None],
        segments: Sequence[int] | None = None,
    ) -> list[int]:
        """Scan ``segments`` (default: all) and hand each page to ``handle``. Returns the
        segments read to their end (fewer than asked when stopped)."""
        todo: queue.Queue[int] = queue.Queue()
        chosen = list(range(total_segments) if segments is None else segments)
        for n in chosen:
            todo.put(n)
        errors: list[BaseException] = []
        done: list[int] = []

        def work() -> None:
            try:
                while not self._failed.is_set() and not self.stop.is_set():
                    try:
                        seg = todo.get_nowait()
                    except queue.Empty:
                        return
                    for page in side.scan(seg, total_segments, keys_only, self.stop):
                        if self._failed.is_set() or self.stop.is_set():
                            return
                        if page:
                            handle(page)
                            with self._lock:
                                self.scanned[side is self.target] += len(page)
                        del page
                    if not self.stop.is_set():
                        with self._lock:
                            done.append(seg)
            except Interrupted:
                pass  # stop requested while waiting for a retry or the budget
            except BaseException as e:
                errors.append(e)
                self._failed.set()

        threads = [
            threading.Thread(target=work, name=f"validate-{side.label}-{i}", daemon=True)
            for i in range(max(1, min(workers, len(chosen))))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return done

    def _run_sample(self, fraction: float) -> None:
        rng = random.Random()
        picked = []
        for plan in (self.src_plan, self.tgt_plan):
            total = plan.total_segments
            picked.append(sorted(rng.sample(range(total), max(1, round(fraction * total)))))
        (ps, pt), r = picked, self.report
        r.sample = (
            f"fraction {fraction:g}: source segments {ps} and target segments {pt} "
            f"(of {self.src_plan.total_segments} and {self.tgt_plan.total_segments})"
        )
        plans = (self.src_plan, self.tgt_plan)
        done_s = self.run_pass(
            self.source,
            plans[0].total_segments,
            plans[0].workers,
            False,
            self.check_source_page,
            ps,
        )
        done_t: list[int] = []
        if not self.stop.is_set():
            done_t = self.run_pass(
                self.target,
                plans[1].total_segments,
                plans[1].workers,
                True,
                self.check_target_page,
                pt,
            )
        if self.stop.is_set():
            r.partial = (
                f"stopped after {len(done_s)} of {len(ps)} sampled source segments and "
                f"{len(done_t)} of {len(pt)} sampled target segments"
            )

    # -- two scans merged by key: the whole tables
    def _ingest(self, side: int, items: list[Item]) -> list[tuple[int, str, str]]:
        """(bucket, key, value) per item: the value is the digest of the item's JSON (sorted
        names) and where that JSON is in the side's item log (``_item``); an expired source
        item's value is EXPIRED."""
        names, n = self.target.keys, self.store.buckets
        dumps, opt, crc, digest = orjson.dumps, orjson.OPT_SORT_KEYS, zlib.crc32, hashlib.sha256
        expired = self.expired if side == 0 else None
        renames = self.renames if side == 0 else None
        one = names[0] if len(names) == 1 else None
        # (bucket, key, digest or None when expired, offset from the page's start, length)
        got: list[tuple[int, str, str | None, int, int]] = []
        # Appended to at once: an orjson.dumps result kept alive holds KiBs beyond its size.
        blob = bytearray()
        at = 0
        for it in items:
            if renames:
                it = rename_item(it, renames)
            # A single string key, the common case, without key_text's general path.
            v = it.get(one) if one is not None else None
            s = v.get("S") if type(v) is dict else None
            k = "S" + s if type(s) is str else key_text(it, names)
            if expired is not None and expired(it):
                got.append((crc(k.encode()) % n, k, None, 0, 0))
                continue
            j = dumps(it, option=opt)
            blob += j
            got.append((crc(k.encode()) % n, k, digest(j).hexdigest()[:DIGEST_CHARS], at, len(j)))
            at += len(j)
        base = self.store.log(side, blob) if blob else 0
        return [
            (b, k, EXPIRED if h is None else f"{h}{base + rel}:{size}")
            for b, k, h, rel, size in got
        ]

    def _item(self, side: int, value: str) -> Item:
        """The item a bucket value points at in the side's item log."""
        offset, _, length = value[DIGEST_CHARS:].partition(":")
        item: Item = orjson.loads(self.store.read(side, int(offset), int(length)))
        return item

    def _scan_all(self, done: list[set[int]]) -> None:
        totals = (self.src_plan.total_segments, self.tgt_plan.total_segments)
        sides = (self.source, self.target)
        todo: list[queue.Queue[int]] = [queue.Queue(), queue.Queue()]
        for s in (0, 1):
            for seg in range(totals[s]):
                if seg not in done[s]:
                    todo[s].put(seg)
        errors: list[BaseException] = []

        def work(s: int) -> None:
            try:
                while not self._failed.is_set() and not self.stop.is_set():
                    try:
                        seg = todo[s].get_nowait()
                    except queue.Empty:
                        return
                    for page in sides[s].scan(seg, totals[s], False, self.stop):
                        if self._failed.is_set() or self.stop.is_set():
                            return
                        if page:
                            self.store.add(s, self._ingest(s, page))
                            with self._lock:
                                self.scanned[s] += len(page)
                        del page
                    if self.stop.is_set():
                        return  # maybe not read to its end: scanned again on resume
                    with self._lock:
                        done[s].add(seg)
                    self._maybe_checkpoint()
            except Interrupted:
                pass
            except BaseException as e:
                errors.append(e)
                self._failed.set()

        workers = (self.src_plan.workers, self.tgt_plan.workers)
        threads = [
            threading.Thread(target=work, args=(s,), name=f"validate-scan-{s}-{i}", daemon=True)
            for s in (0, 1)
            for i in range(max(1, min(workers[s], todo[s].qsize())))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _compare_part(self, src: dict[str, str], tgt: dict[str, str]) -> None:
        fwd, back = self._fwd, self._back
        names, tol, item, d = self.target.keys, self.tol, self._item, DIGEST_CHARS
        expired, n_tgt = 0, len(tgt)
        for k, sv in src.items():
            tv = tgt.pop(k, None)
            if not sv:  # EXPIRED
                expired += 1  # not expected on the target; a copy there is not extra either
            elif tv is None:
                fwd.append(item_key(item(0, sv), names))
            elif sv[:d] != tv[:d]:  # JSON that differs may still be equal by value
                s = item(0, sv)
                if compare_items(s, item(1, tv), tol):
                    fwd.append(item_key(s, names))
        for tv in tgt.values():
            back.append(item_key(item(1, tv), names))
        with self._lock:
            r = self.report
            r.source_items += len(src) - expired
            r.target_items += n_tgt
            r.expired_skipped += expired

    def _submit_rechecks(self, final: bool) -> None:
        while len(self._fwd) >= BATCH_GET_MAX or (final and self._fwd):
            keys, self._fwd = self._fwd[:BATCH_GET_MAX], self._fwd[BATCH_GET_MAX:]
            self._futures.append(self._pool.submit(self._recheck_forward, keys))
        while len(self._back) >= BATCH_GET_MAX or (final and self._back):
            keys, self._back = self._back[:BATCH_GET_MAX], self._back[BATCH_GET_MAX:]
            self._futures.append(self._pool.submit(self._recheck_backward, keys))

    def _settle(self) -> None:
        """Every suspect so far re-checked: the buckets they came from count as compared."""
        self._submit_rechecks(final=True)
        futures, self._futures = self._futures, []
        for f in futures:
            f.result()
        self._compared.update(self._pending)
        self._pending = []

    def _compare_all(self) -> None:
        for b in range(self.store.buckets):
            if b in self._compared:
                continue
            if self.stop.is_set() or self._failed.is_set():
                return
            for src, tgt in self.store.parts(b):
                self._compare_part(src, tgt)
                del src, tgt
            self._pending.append(b)
            self._submit_rechecks(final=False)
            self._maybe_checkpoint()
        self._settle()

    def _maybe_checkpoint(self) -> None:
        if time.monotonic() - self._saved >= self.cfg.savepoints.interval_seconds:
            with self._save_lock:
                if time.monotonic() - self._saved >= self.cfg.savepoints.interval_seconds:
                    self._checkpoint()

    def _checkpoint(self) -> None:
        """Save where this run stands (all it scanned is on disk first)."""
        if self._phase == "compare":
            try:
                self._settle()
            except BaseException:
                # Buckets compared whose suspects were not re-checked: their results are lost,
                # and the files they came from were read: start over next time.
                self.position.discard()
                raise
        with self._lock:
            scanned = [sorted(d) for d in self._done]
            compared = sorted(self._compared)
            report = self.report.to_json()
        report["seconds"] = self._prior_seconds + time.monotonic() - self._started
        files = self.store.flush()
        self.position.save(
            {
                **self._identity,
                "scanned": scanned,
                "compared": compared,
                "files": files,
                "report": report,
            }
        )
        self._saved = time.monotonic()

    def _resume(self) -> None:
        """Pick up a stopped run's position when it is this run's (same config, tables and
        segment counts); otherwise start over."""
        self._identity = {
            "fingerprint": self.cfg.fingerprint(),
            "source": table_identity(self.src_desc),
            "target": table_identity(self.tgt_desc),
            "segments": [self.src_plan.total_segments, self.tgt_plan.total_segments],
            "buckets": self.store.buckets,
            "renames": self.renames,
        }
        saved = None if self.fresh else self.position.load()
        if saved is not None and any(saved.get(k) != v for k, v in self._identity.items()):
            log.warning(
                "Validate position %s belongs to another config or table; starting over",
                self.position.file,
            )
            saved = None
        if saved is None:
            self.position.discard()
            return
        try:
            self._done = [set(saved["scanned"][0]), set(saved["scanned"][1])]
            self._compared = set(saved["compared"])
            self.report.load_json(saved["report"])
            self.store.restore(saved["files"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            log.warning(
                "Validate position %s is unusable (%s); starting over", self.position.file, e
            )
            self._done, self._compared = [set(), set()], set()
            self.report.load_json(ValidationReport("", "").to_json())
            self.position.discard()
            return
        self._prior_seconds = self.report.seconds
        self.report.resumed = (
            f"{len(self._done[0])}/{self.src_plan.total_segments} source and "
            f"{len(self._done[1])}/{self.tgt_plan.total_segments} target segments were scanned "
            f"and {len(self._compared)}/{self.store.buckets} buckets compared by an earlier run"
        )
        log.info("Resuming validation from %s: %s", self.position.file, self.report.resumed)

    def _run_scans(self) -> None:
        self.store = BucketStore(self.position.buckets, BUCKETS, MEMORY_BUDGET)
        self._resume()
        self._saved = time.monotonic()
        complete = False
        try:
            self._scan_all(self._done)
            scanned_all = all(
                len(self._done[s]) == t
                for s, t in enumerate((self.src_plan.total_segments, self.tgt_plan.total_segments))
            )
            if scanned_all and not self.stop.is_set():
                log.info(
                    "Scanned both tables (%s source and %s target items read in this run, "
                    "%.1f MiB spilled to %s) in %.1fs; comparing",
                    f"{self.scanned[0]:,}",
                    f"{self.scanned[1]:,}",
                    self.store.spilled / (1 << 20),
                    self.store.dir,
                    time.monotonic() - self._started,
                )
                self._phase = "compare"
                self._compare_all()
            complete = len(self._compared) == self.store.buckets  # a late stop changes nothing
            if not complete:
                self._checkpoint()
                r = self.report
                if self._phase == "scan":
                    r.partial = (
                        f"while scanning: {len(self._done[0])}/{self.src_plan.total_segments} "
                        f"source and {len(self._done[1])}/{self.tgt_plan.total_segments} target "
                        "segments read; items are compared only once both scans have ended"
                    )
                else:
                    r.partial = (
                        f"while comparing: {len(self._compared)}/{self.store.buckets} key-hash "
                        "buckets compared"
                    )
                log.info("Validation stopped; its position is in %s", self.position.file)
        except Interrupted:
            # Stopped while re-reading suspects (a retry pause): the buckets they came from
            # were read but not settled, so no position can say where this run stands.
            self.position.discard()
            self.report.partial = (
                f"while re-checking differences ({len(self._compared)}/{self.store.buckets} "
                "buckets compared); the next run starts over"
            )
        except BaseException:
            if self._phase == "scan":
                with contextlib.suppress(Exception):
                    self._checkpoint()  # what was scanned is kept for the next run
            raise
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            if complete:
                self.position.discard()
                self.store.close()
        self.report.seconds = self._prior_seconds  # the caller adds this run's time

    def run(self) -> ValidationReport:
        started = self._started = time.monotonic()
        self._prior_seconds = 0.0
        ticker = _Ticker(self, started)
        ticker.start()
        try:
            if self.sample is not None:
                self._run_sample(self.sample)
            else:
                with self.position.exclusive(), young_collections_rarer():
                    self._run_scans()
        finally:
            ticker.close()
        self.report.seconds = self._prior_seconds + time.monotonic() - started
        return self.report


class _Ticker:
    """A progress line every few seconds for long validations."""

    def __init__(self, v: Validator, started: float, interval: float = 10.0) -> None:
        self.v = v
        self.started = started
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="validate-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            v, r = self.v, self.v.report
            elapsed = time.monotonic() - self.started
            log.info(
                "Validating: %s source and %s target items read (%s items/s), %s compared, "
                "%s differences so far",
                f"{v.scanned[0]:,}",
                f"{v.scanned[1]:,}",
                f"{sum(v.scanned) / elapsed:,.0f}",
                f"{r.source_items:,}",
                f"{r.differences:,}",
            )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def validate(
    cfg: Config,
    *,
    repair: bool = False,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    sample: float | None = None,
    fresh: bool = False,
) -> ValidationReport:
    """Compare source and target both ways; with ``repair``, make the target match the source.

    ``sample``: compare only that fraction of each side's segments. ``stop`` (set by a signal):
    end early with a partial report and keep the position for the next run (``fresh``: ignore
    it). Prints the report to ``out`` (stdout by default) and returns it.
    """
    out = out or sys.stdout
    if sample is not None and not 0 < sample <= 1:
        raise ConfigError(f"--sample {sample}: give a fraction above 0 and at most 1, e.g. 0.05")
    keep_freed_pages()
    v = Validator(cfg, repair=repair, stop=stop, sample=sample, fresh=fresh)
    try:
        v.open()
        log.info(
            "Validating %r (%s) against %r (%s): %d source segments, %d target segments%s%s",
            cfg.source.table,
            v.source_client.url,
            cfg.target.table,
            v.target_client.url,
            v.src_plan.total_segments,
            v.tgt_plan.total_segments,
            f"; sampling {sample:g} of them" if sample is not None else "",
            "; repairing differences"
            if repair
            else "; copying missing rows (copyMissingRows)"
            if v.copy_missing
            else "",
        )
        report = v.run()
    finally:
        v.close()
    out.write(report.format(v.copy_missing) + "\n")
    out.flush()
    return report


def copy_missing_rows(cfg: Config) -> int:
    """``copyMissingRows`` after a snapshot: one pass over the source that puts every item the
    target lacks (never overwriting one it has). Returns how many were copied."""
    v = Validator(cfg)
    v.copy_missing = True
    v.open()
    try:
        plan = v.src_plan
        v.run_pass(v.source, plan.total_segments, plan.workers, False, v.check_source_page)
    finally:
        v.close()
    copied = v.report.repaired["put"]
    log.info(
        "copyMissingRows: %d items the target lacked were copied (%d source items checked)",
        copied,
        v.report.source_items,
    )
    return copied
