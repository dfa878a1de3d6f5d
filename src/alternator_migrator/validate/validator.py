"""Two-way comparison of source and target, with an opt-in repair.

Neither table is ever held whole: pass one scans the source and looks each page's keys up on
the target with BatchGetItem; pass two scans the target's keys and looks them up on the source.
Memory is bounded by the pages in flight (one of at most 1,000 items per scanner), however
large the tables are.

A live source may change while it is scanned, so every difference is re-read once, with
consistent reads on both sides, before it is reported (or repaired).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..aws.client import DynamoClient, DynamoError, preflight, source_client, target_client
from ..aws.retry import Backoff
from ..aws.throttle import RateLimiter, budget, charge_read, table_capacity
from ..config.model import Config, require_supported
from ..errors import ConfigError, MigratorError, SchemaError
from ..snapshot.copier import plan_scan
from ..target.schema import key_names
from ..target.sink import Request, Sink, item_key, rename_item
from ..target.sink_factory import make_sink
from ..target.ttl import expiry_check, source_ttl_attribute
from .compare import (
    DIFFER,
    EXTRA,
    KIND_LABELS,
    MISSING,
    Difference,
    Item,
    KeyId,
    compare_items,
    key_identity,
    shorten,
)

log = logging.getLogger(__name__)


BATCH_GET_MAX = 100
SCAN_PAGE_ITEMS = 1000


class ValidationError(MigratorError):
    """Validation could not run to the end (exit 2, unlike 'differences found')."""


# --------------------------------------------------------------------------- results


@dataclass
class ValidationReport:
    source_table: str
    target_table: str
    source_items: int = 0
    target_items: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {MISSING: 0, EXTRA: 0, DIFFER: 0})
    cleared_on_recheck: int = 0
    samples: list[Difference] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=lambda: {"put": 0, "delete": 0})
    repairs: list[tuple[str, Item]] = field(default_factory=list)  # the first few, for the log
    seconds: float = 0.0
    expired_skipped: int = 0  # source items whose TTL has passed: not expected on the target

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    @property
    def identical(self) -> bool:
        return self.differences == 0

    def format(self, repair: bool = False) -> str:
        lines = [
            f"Validation of source {self.source_table!r} against target {self.target_table!r} "
            f"in {self.seconds:.1f}s",
            f"  source items scanned : {self.source_items:>10,}",
            f"  target items scanned : {self.target_items:>10,}",
        ]
        for kind in (MISSING, EXTRA, DIFFER):
            lines.append(f"  {KIND_LABELS[kind]:<21}: {self.counts[kind]:>10,}")
        if self.expired_skipped:
            lines.append(
                f"  ({self.expired_skipped:,} expired source items skipped: their TTL has passed)"
            )
        if self.cleared_on_recheck:
            lines.append(
                f"  ({self.cleared_on_recheck:,} differences cleared when re-read: changed mid-scan)"
            )
        if self.samples:
            shown = len(self.samples)
            lines.append(f"First {shown} of {self.differences:,} differences:")
            for d in self.samples:
                lines.append(f"  {KIND_LABELS[d.kind]:<18} key {shorten(d.key)}")
                for a in d.attrs:
                    lines.append(
                        f"      {a.path}: source={shorten(a.source, 80)} "
                        f"target={shorten(a.target, 80)}"
                    )
        if repair:
            lines.append(
                f"Repaired: {self.repaired['put']:,} items put, "
                f"{self.repaired['delete']:,} target-only items deleted"
            )
            for op, key in self.repairs:
                lines.append(f"  {op:<6} {shorten(key)}")
            more = self.repaired["put"] + self.repaired["delete"] - len(self.repairs)
            if more > 0:
                lines.append(f"  ... and {more:,} more")
        if self.identical:
            lines.append("Result: source and target are identical")
        else:
            lines.append(f"Result: {self.differences:,} differences")
        return "\n".join(lines)


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
        charge_read(self.limiter, resp, payload, consistent)

    def scan(self, segment: int, total: int, keys_only: bool) -> Iterator[list[Item]]:
        start: Any = None
        while True:
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
    def __init__(self, cfg: Config, *, repair: bool = False) -> None:
        self.cfg = cfg
        self.repair = repair
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
        self.source_client = source_client(cfg.source)
        self.target_client = target_client(cfg.target)
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
        # Also after a failed ``open``, which may have created only some of the clients.
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

    # -- running a pass
    def run_pass(
        self,
        side: _Side,
        total_segments: int,
        workers: int,
        keys_only: bool,
        handle: Callable[[list[Item]], None],
    ) -> None:
        segments: queue.Queue[int] = queue.Queue()
        for n in range(total_segments):
            segments.put(n)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                while not self._failed.is_set():
                    try:
                        seg = segments.get_nowait()
                    except queue.Empty:
                        return
                    for page in side.scan(seg, total_segments, keys_only):
                        if self._failed.is_set():
                            return
                        if page:
                            handle(page)
                        del page
            except BaseException as e:
                errors.append(e)
                self._failed.set()

        threads = [
            threading.Thread(target=work, name=f"validate-{side.label}-{i}", daemon=True)
            for i in range(max(1, min(workers, total_segments)))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def run(self) -> ValidationReport:
        started = time.monotonic()
        ticker = _Ticker(self.report, started)
        ticker.start()
        try:
            self.run_pass(
                self.source,
                self.src_plan.total_segments,
                self.src_plan.workers,
                False,
                self.check_source_page,
            )
            self.run_pass(
                self.target,
                self.tgt_plan.total_segments,
                self.tgt_plan.workers,
                True,
                self.check_target_page,
            )
        finally:
            ticker.close()
        self.report.seconds = time.monotonic() - started
        return self.report


class _Ticker:
    """A progress line every few seconds for long validations."""

    def __init__(self, report: ValidationReport, started: float, interval: float = 10.0) -> None:
        self.report = report
        self.started = started
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="validate-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            r = self.report
            elapsed = time.monotonic() - self.started
            done = r.source_items + r.target_items
            log.info(
                "Validating: %s source and %s target items checked (%s items/s), "
                "%s differences so far",
                f"{r.source_items:,}",
                f"{r.target_items:,}",
                f"{done / elapsed:,.0f}",
                f"{r.differences:,}",
            )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def validate(cfg: Config, *, repair: bool = False, out: TextIO | None = None) -> ValidationReport:
    """Compare source and target both ways; with ``repair``, make the target match the source.

    Prints the report to ``out`` (stdout by default) and returns it.
    """
    out = out or sys.stdout
    v = Validator(cfg, repair=repair)
    try:
        v.open()
        log.info(
            "Validating %r (%s) against %r (%s): %d source segments, %d target segments%s",
            cfg.source.table,
            v.source_client.url,
            cfg.target.table,
            v.target_client.url,
            v.src_plan.total_segments,
            v.tgt_plan.total_segments,
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
