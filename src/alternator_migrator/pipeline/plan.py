"""`plan`: what a migration will do, how long its snapshot takes and what it costs, before anything
happens.

Read-only by construction: the only requests are Describe*/List* calls, DescribeStream, and (for a
table that reports no size) one Limit-bounded Scan for a sample plus a bounded Select=COUNT Scan.
No table, stream, export, backup setting, savepoint or lock is created or changed; the savepoint
file is only read. A plan is a list of per-table plans so that a run of many tables reads as one.

The duration model is DynamoDB's documented capacity model, i.e. the budget the copier enforces:
a Scan costs half a read unit per 4 KB read (eventually consistent), a write one unit per 1 KB
started, per item; the snapshot is pipelined, so it takes as long as the slower of the two
budgets (or of this process's own ceiling). bench/plan_accuracy.py compares it with real runs.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

import orjson

from ..aws.client import DynamoClient, DynamoError, kinesis_client, source_client, target_client
from ..aws.nodes import AlternatorNodes
from ..aws.retry import RetryPolicy
from ..aws.transport import HttpPool, proxy_for
from ..changes.enable import NEW_IMAGE_VIEWS
from ..config.model import AlternatorSettings, Config, require_supported
from ..errors import EndpointError, Interrupted, MigratorError, SavepointError, SchemaError
from ..snapshot import export_request
from ..snapshot.copier import plan_scan
from ..snapshot.ledger import skipped_segments
from ..state.savepoint import Savepoint, SavepointStore
from ..target.schema import (
    create_table_request,
    describe_source,
    key_mismatch,
    refuse_same_identity,
    refuse_same_table,
)
from ..target.sink_factory import write_budget
from ..target.ttl import source_ttl_attribute
from . import prices
from .tables import table_configs

log = logging.getLogger(__name__)

# Probing calls give up fast: an operation an endpoint lacks (moto answers 500 to
# DescribeKinesisStreamingDestination) is reported as unknown, not waited out.
PROBE = RetryPolicy(base=0.1, cap=1.0, max_attempts=3, deadline=5.0)
SAMPLE_ITEMS = 100  # one Scan page of at most this many items: the sample a size is estimated from
COUNT_PAGES = 20  # Select=COUNT pages (up to 1 MB read each) to count a table that reports no count
STREAMS_RETENTION_HOURS = 24.0
# The estimate must fit the retention this many times over: it is measured within 2x.
MARGIN = 2.0
# One process's ceiling: ~30 us of client CPU per item (docs/performance.md), on one core.
CLIENT_ITEMS_PER_SECOND = 30_000
DEFAULT_POLL_SECONDS = 0.5  # the replay's idle poll interval (streamingPollIntervalSeconds)
GB = 1e9


# --------------------------------------------------------------------------- sizes and units


def _number_size(text: str) -> int:
    """DynamoDB's size of a number: about one byte per two significant digits, plus one."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return len(text)
    digits = len(d.as_tuple().digits)
    return (digits + 1) // 2 + 1


def value_size(v: Any) -> int:
    """Bytes DynamoDB counts for one attribute value in wire format (its documented sizing)."""
    if not isinstance(v, dict) or len(v) != 1:
        return len(orjson.dumps(v))
    ((t, x),) = v.items()
    if t == "S":
        return len(str(x).encode())
    if t == "N":
        return _number_size(str(x))
    if t == "B":
        return len(str(x)) * 3 // 4  # base64 on the wire
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(str(s).encode()) for s in x)
    if t == "NS":
        return sum(_number_size(str(n)) for n in x)
    if t == "BS":
        return sum(len(str(b)) * 3 // 4 for b in x)
    if t == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if t == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())
    return len(orjson.dumps(x))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


@dataclass
class Shape:
    """How much data the snapshot moves."""

    items: int | None = None
    items_exact: bool = True  # False: a lower bound (the count stopped early)
    size_bytes: float | None = None
    size_from: str = "DescribeTable"
    wire_per_byte: float = 1.0  # wire-format JSON bytes per DynamoDB byte (client-side charges)
    wcu_per_item: float | None = None  # write units per item, from the sample
    sample_items: int = 0


def read_units(shape: Shape, server_charges: bool) -> float:
    """Read units a Scan of the table costs: half a unit per 4 KB read (eventually consistent).
    Where the source reports no consumed capacity the copier charges the wire bytes itself."""
    size = shape.size_bytes or 0.0
    if not server_charges:
        size *= shape.wire_per_byte
    return size / 4096 * 0.5


def write_units(shape: Shape, server_charges: bool = True) -> float:
    """Write units of copying every item: one per 1 KB started, per item. Where the target
    reports no consumed capacity (Alternator) the sink charges the wire bytes per KB itself."""
    if not shape.items:
        return 0.0
    avg = (shape.size_bytes or 0) / shape.items
    if not server_charges:
        return shape.items * max(1.0, avg * shape.wire_per_byte / 1024)
    per_item = shape.wcu_per_item
    if per_item is None:
        per_item = max(1.0, math.ceil(avg / 1024))
    return shape.items * per_item


@dataclass
class Estimate:
    read_units: float
    write_units: float
    read_seconds: float
    write_seconds: float
    client_seconds: float
    seconds: float
    bound: str  # what the duration is bound by


def estimate(
    shape: Shape,
    read_rate: float | None,
    write_rate: float | None,
    *,
    server_read_charges: bool = True,
    server_write_charges: bool = True,
    remaining: float = 1.0,
    scan: bool = True,
) -> Estimate:
    """The snapshot's duration: reads and writes are pipelined, so the slower budget sets it."""
    ru = read_units(shape, server_read_charges) * remaining if scan else 0.0
    wu = write_units(shape, server_write_charges) * remaining
    rs = ru / read_rate if read_rate else 0.0
    ws = wu / write_rate if write_rate else 0.0
    cs = (shape.items or 0) * remaining / CLIENT_ITEMS_PER_SECOND
    parts = {
        "the read budget": rs,
        "the write budget": ws,
        "this process's CPU (~30 us/item)": cs,
    }
    bound = max(parts, key=lambda k: parts[k])
    return Estimate(ru, wu, rs, ws, cs, parts[bound], bound)


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else "<$0.01"


# --------------------------------------------------------------------------- the plan


@dataclass
class TablePlan:
    source_table: str
    target_table: str
    blockers: list[str] = field(default_factory=list)  # why it cannot run as configured
    warnings: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return not self.blockers

    def to_dict(self) -> dict[str, Any]:
        d = {_camel(k): v for k, v in asdict(self).items()}
        d["estimate"] = {_camel(k): v for k, v in d["estimate"].items()}
        d["feasible"] = self.feasible
        return d


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


@dataclass
class Plan:
    config: str
    tables: list[TablePlan]

    @property
    def feasible(self) -> bool:
        return all(t.feasible for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "feasible": self.feasible,
            "estimate": "estimates, not promises: see docs/runbook.md, Reading a plan",
            "prices": {"region": prices.REGION, "asOf": prices.AS_OF, "currency": prices.CURRENCY},
            "tables": [t.to_dict() for t in self.tables],
        }


def _probe(client: DynamoClient, op: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return client.call(op, body, retry=PROBE, **kw)


def _unknown(e: DynamoError) -> str:
    return f"unknown ({e.code}: the endpoint does not answer it)"


def _keys(desc: dict[str, Any]) -> str:
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions", [])}
    return ", ".join(
        f"{k['AttributeName']} ({types.get(k['AttributeName'], '?')}, {k['KeyType']})"
        for k in sorted(desc.get("KeySchema", []), key=lambda k: k["KeyType"] != "HASH")
    )


def _indexes(desc: dict[str, Any]) -> list[str]:
    out = []
    for kind, name in (("GSI", "GlobalSecondaryIndexes"), ("LSI", "LocalSecondaryIndexes")):
        for ix in desc.get(name) or []:
            keys = ", ".join(k["AttributeName"] for k in ix.get("KeySchema", []))
            proj = (ix.get("Projection") or {}).get("ProjectionType", "ALL")
            out.append(f"{kind} {ix['IndexName']} ({keys}; {proj})")
    return out


def _billing(desc: dict[str, Any]) -> tuple[str, str]:
    mode = str((desc.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED")
    pt = desc.get("ProvisionedThroughput") or {}
    if mode == "PAY_PER_REQUEST":
        return mode, "on-demand"
    return mode, f"{pt.get('ReadCapacityUnits', 0)} RCU, {pt.get('WriteCapacityUnits', 0)} WCU"


def stream_state(
    src: dict[str, Any], sp: Savepoint | None, created: float | None
) -> tuple[str, str]:
    """(none | ours | foreign | gone, a sentence) about the source's DynamoDB Stream, judged as
    ``ensure_stream`` will: ours when the savepoint names it (or an earlier run's 'enabling'
    marker predates it), gone when the savepoint names a stream that is no longer enabled."""
    spec = src.get("StreamSpecification") or {}
    arn = src.get("LatestStreamArn")
    saved = sp.stream_arn if sp is not None and ":kinesis:" not in (sp.stream_arn or "") else None
    if not spec.get("StreamEnabled"):
        if saved:
            return "gone", f"the stream this migration enabled ({saved}) is no longer enabled"
        return "none", "no stream; migrate enables a NEW_IMAGE stream before the snapshot"
    view = spec.get("StreamViewType")
    if saved and saved == arn:
        return "ours", f"{arn} ({view}), enabled by this migration (per its savepoint)"
    marker = sp.stream_enabling if sp is not None else None
    if (
        not saved
        and marker is not None
        and created is not None
        and created >= marker - 5.0
        and view in NEW_IMAGE_VIEWS
    ):
        return "ours", f"{arn} ({view}), enabled by an earlier run that stopped before saving it"
    return "foreign", f"{arn} ({view}), not enabled by this migration"


def _unused_keys(cfg: Config, target_exists: bool | None) -> list[str]:
    """Keys that are valid but change nothing in this configuration, and why."""
    s, t = cfg.source, cfg.target
    out: list[str] = []
    streaming = [
        ("streamingPollIntervalSeconds", s.streaming_poll_interval_seconds),
        ("streamingMaxConsecutiveErrors", s.streaming_max_consecutive_errors),
        ("streamingPollingPoolSize", s.streaming_polling_pool_size),
        ("streamingMaxRecordsPerPoll", s.streaming_max_records_per_poll),
        ("streamingMaxRecordsPerSecond", s.streaming_max_records_per_second),
    ]
    if not t.stream_changes:
        out += [
            f"`source.{k}`: no stream is replayed (`target.streamChanges` is false)"
            for k, v in streaming
            if v is not None
        ]
    scan_keys = [
        ("source.scanSegments", s.scan_segments),
        ("source.readThroughput", s.read_throughput),
        ("source.throughputReadPercent", s.throughput_read_percent),
        ("skipSegments", cfg.skip_segments or None),
    ]
    if t.skip_initial_snapshot_transfer:
        why = "no snapshot is copied (`target.skipInitialSnapshotTransfer`)"
        out += [f"`{k}`: {why}" for k, v in scan_keys if v is not None]
    elif export_request.wanted(cfg):
        why = "the snapshot is loaded from an export, not scanned"
        out += [f"`{k}`: {why}" for k, v in scan_keys if v is not None]
    if t.billing_mode is not None and target_exists:
        out.append(
            "`target.billingMode`: applies only to a target table the migration creates; "
            f"{t.table!r} exists"
        )
    return out


def _sample(client: DynamoClient, table: str) -> tuple[Shape, bool]:
    """A Shape from one Limit-bounded Scan page (and, for a table that reports no item count,
    a bounded count). Returns it and whether the sample was the whole table."""
    r = _probe(client, "Scan", {"TableName": table, "Limit": SAMPLE_ITEMS})
    items: list[dict[str, Any]] = r.get("Items", [])
    whole = not r.get("LastEvaluatedKey")
    shape = Shape(sample_items=len(items))
    if items:
        sizes = [item_size(i) for i in items]
        wire = sum(len(orjson.dumps(i)) for i in items)
        shape.size_bytes = sum(sizes) / len(items)  # the average, scaled by the caller
        shape.wire_per_byte = wire / max(1, sum(sizes))
        shape.wcu_per_item = sum(max(1, math.ceil(s / 1024)) for s in sizes) / len(items)
    if whole:
        shape.items = len(items)
    return shape, whole


def _count(client: DynamoClient, table: str) -> tuple[int, bool]:
    """Items counted by Select=COUNT pages, at most COUNT_PAGES of them: (count, exact)."""
    body: dict[str, Any] = {"TableName": table, "Select": "COUNT"}
    n = 0
    for _ in range(COUNT_PAGES):
        r = _probe(client, "Scan", body)
        n += int(r.get("Count") or 0)
        if not r.get("LastEvaluatedKey"):
            return n, True
        body["ExclusiveStartKey"] = r["LastEvaluatedKey"]
    return n, False


def _shape(
    client: DynamoClient, src: dict[str, Any], table: str, sample: bool, quick: bool
) -> Shape:
    items = int(src.get("ItemCount") or 0)
    size = int(src.get("TableSizeBytes") or 0)
    if not sample:
        if size and items:
            return Shape(items=items, size_bytes=size)
        return Shape(items=items or None, size_bytes=None, size_from="unknown")
    s, whole = _sample(client, table)
    avg = s.size_bytes
    if whole:
        s.size_bytes = (avg or 0) * (s.items or 0)
        s.size_from = f"the whole table read as a sample ({s.items} items)"
        return s
    if size and items:
        s.items, s.size_bytes = items, size
        s.size_from = f"DescribeTable (write units per item from a sample of {s.sample_items})"
        return s
    if not items and not quick:
        items, exact = _count(client, table)
        s.items_exact = exact
        counted = "counted" if exact else f"at least (count stopped after {COUNT_PAGES} pages)"
    else:
        counted = "from DescribeTable"
    s.items = items or None
    s.size_bytes = (avg or 0) * items if items else None
    s.size_from = (
        f"ESTIMATED from a sample of {s.sample_items} items (the source reports no size); "
        f"item count {counted}"
    )
    return s


def _discover(cfg: Config) -> str:
    """Alternator node discovery as migrate's client will do it (GET /localnodes, read-only)."""
    t = cfg.target
    alt = t.alternator
    if alt is None and t.type == "alternator" and t.endpoint is not None:
        alt = AlternatorSettings()
    if t.endpoint is None:
        return "AWS endpoint (no node discovery)"
    if alt is None:
        return "one endpoint (node discovery is for `type: alternator`)"
    ca = t.endpoint.ca_bundle

    def make_pool(url: str) -> HttpPool:
        return HttpPool(
            url, connect_timeout=3.0, read_timeout=5.0, ca_bundle=ca, proxy=proxy_for(url)
        )

    nodes = AlternatorNodes(t.endpoint.url, alt, make_pool, "target")
    try:
        # Asked once more to learn how it went: False, the endpoint serves no /localnodes.
        if nodes.refresh() is False:
            return f"one node ({t.endpoint.url} does not serve /localnodes)"
        live = nodes.live_nodes()
        return f"{len(live)} node(s): {', '.join(live)}"
    finally:
        nodes.close()


def _write_isolation(target: DynamoClient, existing: dict[str, Any]) -> str:
    arn = existing.get("TableArn")
    if not arn:
        return "unknown (no table ARN)"
    try:
        r = _probe(target, "ListTagsOfResource", {"ResourceArn": arn})
    except DynamoError as e:
        return _unknown(e)
    tags = {t.get("Key"): t.get("Value") for t in r.get("Tags", [])}
    v = tags.get("system:write_isolation")
    if v is None:
        return "not set (an Alternator target uses its `alternator_write_isolation`)"
    slow = " (every write is an LWT: the slowest)" if v == "always_use_lwt" else ""
    return f"{v}{slow}"


def plan_table(
    cfg: Config,
    source: DynamoClient,
    target: DynamoClient,
    kinesis: DynamoClient | None,
    *,
    quick: bool = False,
    src: dict[str, Any] | None = None,
) -> TablePlan:
    """The plan of one table; ``quick`` (migrate's opening line) skips the data sample, the
    count, node discovery and the optional Describe calls."""
    s, t = cfg.source, cfg.target
    tp = TablePlan(s.table, t.table)
    tp.ignored = [w.split(": ", 1)[-1] for w in cfg.warnings]
    try:
        refuse_same_table(cfg)
    except SchemaError as e:
        tp.blockers.append(str(e))
    if src is None:
        try:
            src = export_request.describe(cfg) or describe_source(source, s.table)
        except (SchemaError, EndpointError) as e:
            tp.blockers.append(str(e))
            return tp
    live = s.s3_export is None
    store = SavepointStore(cfg)
    sp: Savepoint | None = None
    try:
        sp = store.load()
    except SavepointError as e:
        tp.blockers.append(str(e))
    _plan_source(tp, cfg, source, src, sp, quick, live)
    existing = _plan_target(tp, cfg, source, target, src, quick)
    tp.ignored += _unused_keys(cfg, existing is not None)
    retention_h = _plan_changes(tp, cfg, source, kinesis, src, sp, live)
    _plan_settings_and_estimate(tp, cfg, source, src, existing, sp, quick, live, retention_h)
    tp.settings["savepoint"] = str(store.file) if sp is not None else "none yet (a fresh start)"
    return tp


def _plan_source(
    tp: TablePlan,
    cfg: Config,
    source: DynamoClient,
    src: dict[str, Any],
    sp: Savepoint | None,
    quick: bool,
    live: bool,
) -> None:
    s = cfg.source
    mode, capacity = _billing(src)
    info: dict[str, Any] = {
        "endpoint": source.url if live else f"s3://{s.s3_export.bucket}" if s.s3_export else "",
        "status": src.get("TableStatus", "ACTIVE" if live else "S3 export"),
        "keys": _keys(src),
        "indexes": _indexes(src),
        "billing": mode,
        "capacity": capacity,
    }
    tp.source = info
    if not live:
        info["ttl"] = "n/a (an S3 export)"
        return
    info["ttl"] = source_ttl_attribute(source, s.table) or "disabled"
    if quick:
        return
    try:
        cb = _probe(source, "DescribeContinuousBackups", {"TableName": s.table})
        pitr = cb.get("ContinuousBackupsDescription", {}).get("PointInTimeRecoveryDescription", {})
        info["pitr"] = str(pitr.get("PointInTimeRecoveryStatus") or "unknown")
    except DynamoError as e:
        info["pitr"] = _unknown(e)
    try:
        d = _probe(source, "DescribeKinesisStreamingDestination", {"TableName": s.table})
        dests = [
            f"{x.get('StreamArn')} ({x.get('DestinationStatus')})"
            for x in d.get("KinesisDataStreamDestinations", [])
        ]
        info["kinesisDestination"] = ", ".join(dests) or "none"
    except DynamoError as e:
        info["kinesisDestination"] = _unknown(e)


def _plan_target(
    tp: TablePlan,
    cfg: Config,
    source: DynamoClient,
    target: DynamoClient,
    src: dict[str, Any],
    quick: bool,
) -> dict[str, Any] | None:
    t = cfg.target
    info: dict[str, Any] = {"endpoint": target.url}
    tp.target = info
    existing: dict[str, Any] | None = None
    try:
        existing = _probe(target, "DescribeTable", {"TableName": t.table})["Table"]
        info["reachable"] = True
    except DynamoError as e:
        if e.code == "ResourceNotFoundException":
            info["reachable"] = True
        else:
            info["reachable"] = False
            reason = "unreachable" if e.code == "ConnectionError" else f"{e.code}: {e.message}"
            tp.blockers.append(f"target endpoint {target.url} answers DescribeTable with {reason}")
            return None
    if existing is not None:
        mismatch = key_mismatch(src, existing, cfg)
        if mismatch:
            tp.blockers.append(mismatch)
            info["table"] = "exists, keys DIFFER"
        else:
            info["table"] = f"exists, keys match ({_keys(existing)})"
        try:
            refuse_same_identity(src, existing, cfg)
        except SchemaError as e:
            tp.blockers.append(str(e))
        have = {ix.split(" (")[0] for ix in _indexes(existing)}
        want = {ix.split(" (")[0] for ix in _indexes(src)}
        if want - have:
            tp.warnings.append(
                f"target {t.table!r} lacks the source's {', '.join(sorted(want - have))} "
                "(an existing target is used as it is)"
            )
    else:
        req = create_table_request(src, cfg)
        info["table"] = (
            f"will be created ({req['BillingMode']}, "
            f"{len(req.get('GlobalSecondaryIndexes', []))} GSI, "
            f"{len(req.get('LocalSecondaryIndexes', []))} LSI)"
        )
    if quick:
        return existing
    try:
        info["nodes"] = _discover(cfg)
    except (OSError, ValueError, MigratorError) as e:
        info["nodes"] = f"unknown ({e})"
    if existing is not None:
        info["writeIsolation"] = _write_isolation(target, existing)
    else:
        info["writeIsolation"] = "n/a until created (an Alternator cluster's default applies)"
    return existing


def _plan_changes(
    tp: TablePlan,
    cfg: Config,
    source: DynamoClient,
    kinesis: DynamoClient | None,
    src: dict[str, Any],
    sp: Savepoint | None,
    live: bool,
) -> float | None:
    """The change source and its retention in hours (None: no changes are replayed)."""
    t = cfg.target
    if not live:
        tp.source["stream"] = "n/a (an S3 export has no stream)"
        return None
    created = None
    arn = src.get("LatestStreamArn")
    if arn and (src.get("StreamSpecification") or {}).get("StreamEnabled"):
        try:
            d = _probe(source, "DescribeStream", {"StreamArn": arn, "Limit": 1}, streams=True)
            c = d.get("StreamDescription", {}).get("CreationRequestDateTime")
            created = float(c) if isinstance(c, int | float) else None
        except DynamoError:
            created = None
    state, text = stream_state(src, sp, created)
    tp.source["stream"] = f"{state}: {text}"
    tp.source["streamState"] = state
    if not t.stream_changes:
        tp.settings["changes"] = "none (`target.streamChanges` is false: a snapshot-only copy)"
        return None
    if t.kinesis is not None:
        return _plan_kinesis(tp, cfg, kinesis, sp)
    tp.settings["changes"] = f"DynamoDB Streams (records kept {STREAMS_RETENTION_HOURS:.0f} h)"
    if state == "foreign":
        tp.blockers.append(
            f"source table {cfg.source.table!r} already has a stream this migration did not "
            "enable (a foreign stream): disable it first, or use `streamChanges: {type: "
            "kinesis, streamArn: ...}`"
        )
    elif state == "gone":
        tp.blockers.append(
            f"{text}, so changes made since are lost: start over with `migrate --fresh`"
        )
    hours = STREAMS_RETENTION_HOURS
    if state == "ours" and created is not None and not (sp and sp.snapshot_done):
        age = (time.time() - created) / 3600
        tp.settings["streamAgeHours"] = round(age, 2)
        hours = max(0.0, hours - age)
    return hours


def _plan_kinesis(
    tp: TablePlan, cfg: Config, kinesis: DynamoClient | None, sp: Savepoint | None
) -> float | None:
    k = cfg.target.kinesis
    assert k is not None
    hours = STREAMS_RETENTION_HOURS
    detail = "retention unknown, 24 h assumed"
    if kinesis is not None:
        try:
            d = _probe(kinesis, "DescribeStreamSummary", {"StreamARN": k.stream_arn})
            summ = d.get("StreamDescriptionSummary", {})
            hours = float(summ.get("RetentionPeriodHours") or hours)
            shards = int(summ.get("OpenShardCount") or 0)
            tp.settings["kinesisShards"] = shards
            detail = f"records kept {hours:.0f} h, {shards} open shards"
        except DynamoError as e:
            if e.code == "ResourceNotFoundException":
                tp.blockers.append(
                    f"the Kinesis stream {k.stream_arn} does not exist; create it (or fix "
                    "`target.streamChanges.streamArn`)"
                )
            detail = f"retention {_unknown(e)}; 24 h assumed"
    tp.settings["changes"] = f"Kinesis {k.stream_arn} ({detail})"
    tp.settings["kinesisRetentionHours"] = hours
    return hours


def _plan_settings_and_estimate(
    tp: TablePlan,
    cfg: Config,
    source: DynamoClient,
    src: dict[str, Any],
    existing: dict[str, Any] | None,
    sp: Savepoint | None,
    quick: bool,
    live: bool,
    retention_h: float | None,
) -> None:
    s, t = cfg.source, cfg.target
    from_export = export_request.wanted(cfg)
    skip = t.skip_initial_snapshot_transfer
    scan = plan_scan(cfg, src, sp.total_segments if sp else None)
    tgt_like = existing or {
        "ProvisionedThroughput": create_table_request(src, cfg).get("ProvisionedThroughput", {})
    }
    wrate = write_budget(cfg, tgt_like)
    st = tp.settings
    if skip:
        st["snapshot"] = "skipped (`skipInitialSnapshotTransfer`): only changes are replayed"
    elif from_export:
        st["snapshot"] = "from an export to S3 (no Scan, no read capacity)"
    else:
        why = (
            "from the savepoint"
            if sp and sp.total_segments
            else "`scanSegments`"
            if s.scan_segments
            else "default: size / 128 MiB, at least 8"
        )
        st["snapshot"] = f"Scan, {scan.total_segments} segments ({why})"
    st["readers"] = scan.workers
    st["writers"] = scan.writers
    st["batchItems"] = t.max_items_per_batch
    st["readBudget"] = (
        "none (no Scan)"
        if skip or from_export
        else f"{scan.read_rate:.0f} RCU/s"
        if scan.read_rate
        else "unlimited"
    )
    st["writeBudget"] = f"{wrate:.0f} WCU/s" if wrate else "unlimited"
    skipped = skipped_segments(cfg, scan.total_segments) if not from_export else set()
    done = set(sp.segments_done) if sp else set()
    remaining = 0.0 if skip or (sp and sp.snapshot_done) else 1.0
    if remaining and scan.total_segments and not from_export:
        remaining = 1 - len(done | skipped) / scan.total_segments
    if done or skipped:
        st["segmentsLeft"] = f"{round(remaining * scan.total_segments)} of {scan.total_segments}"
    sample = live and not quick and not skip and not from_export and remaining > 0
    shape = _shape(source, src, s.table, sample, quick) if live else Shape(size_from="unknown")
    tp.source["items"] = shape.items
    tp.source["itemsExact"] = shape.items_exact
    tp.source["sizeBytes"] = shape.size_bytes
    tp.source["sizeFrom"] = shape.size_from
    e = estimate(
        shape,
        None if from_export else scan.read_rate,
        wrate,
        server_read_charges=not s.remove_consumed_capacity,
        server_write_charges=not t.remove_consumed_capacity,
        remaining=remaining,
        scan=not from_export,
    )
    est: dict[str, Any] = tp.estimate
    known = shape.items is not None and shape.size_bytes is not None
    est["known"] = known or remaining == 0
    if remaining == 0:
        est["snapshotSeconds"] = 0.0
        est["text"] = "no snapshot to copy"
    elif not known:
        est["snapshotSeconds"] = None
        est["text"] = "unknown (the table's size is unknown; `plan` estimates it from a sample)"
    else:
        est.update(asdict(e))
        est["snapshotSeconds"] = e.seconds
        lower = "" if shape.items_exact else "at least "
        parts = []
        if not from_export:
            parts.append(
                f"read {e.read_units:,.0f} RCU at {st['readBudget']}: {human_seconds(e.read_seconds)}"
            )
        else:
            parts.append("plus the export's own time (AWS side, not estimated)")
        parts.append(
            f"write {e.write_units:,.0f} WCU at {st['writeBudget']}: {human_seconds(e.write_seconds)}"
        )
        est["text"] = f"{lower}{human_seconds(e.seconds)}, bound by {e.bound} ({'; '.join(parts)})"
        if not shape.items_exact:
            tp.warnings.append("the item count is a lower bound: the snapshot may take longer")
    _fit(tp, cfg, e, retention_h, known, remaining, from_export)
    _cost(tp, cfg, e, shape, scan.read_rate, src, existing, retention_h)


def _fit(
    tp: TablePlan,
    cfg: Config,
    e: Estimate,
    retention_h: float | None,
    known: bool,
    remaining: float,
    from_export: bool,
) -> None:
    """Whether the snapshot finishes while the change source still holds its first records."""
    est = tp.estimate
    if retention_h is None:
        est["fit"] = "no change source: nothing expires while the snapshot runs"
        return
    if remaining == 0:
        est["fit"] = "nothing to copy: the replay starts at once"
        return
    if not known:
        est["fit"] = "unknown"
        return
    window = retention_h * 3600
    need = e.seconds * MARGIN
    est["windowSeconds"] = window
    if need <= window:
        est["fit"] = (
            f"fits: {human_seconds(e.seconds)} (x{MARGIN:.0f} margin: {human_seconds(need)}) "
            f"within the {retention_h:.0f} h retention"
        )
        return
    fits_at_all = e.seconds <= window
    verdict = "tight" if fits_at_all else "does NOT fit"
    est["fit"] = (
        f"{verdict}: {human_seconds(e.seconds)} (x{MARGIN:.0f} margin: {human_seconds(need)}) "
        f"against the {retention_h:.0f} h retention"
    )
    est["instead"] = _alternatives(cfg, tp, e, window / MARGIN, from_export)
    msg = (
        f"the snapshot ({human_seconds(e.seconds)}) cannot finish inside the change source's "
        f"{retention_h:.0f} h retention; instead: " + "; ".join(est["instead"])
    )
    if fits_at_all:
        tp.warnings.append(msg.replace("cannot finish inside", "leaves little margin in"))
    else:
        tp.blockers.append(msg)


def _alternatives(
    cfg: Config, tp: TablePlan, e: Estimate, target_s: float, from_export: bool
) -> list[str]:
    s, t = cfg.source, cfg.target
    out = []
    rp = s.throughput_read_percent or 0.5
    wp = t.throughput_write_percent or 0.5
    if e.read_seconds > target_s and e.read_units:
        need = e.read_units / target_s
        out.append(
            f"a read budget of {need:,.0f} RCU/s (`source.readThroughput: {math.ceil(need / rp)}` "
            f"at throughputReadPercent {rp})"
        )
    if e.write_seconds > target_s and e.write_units:
        need = e.write_units / target_s
        out.append(
            f"a write budget of {need:,.0f} WCU/s (`target.writeThroughput: "
            f"{math.ceil(need / wp)}` at throughputWritePercent {wp})"
        )
    if not from_export and e.read_seconds > target_s and s.type != "alternator":
        out.append(
            "`source.snapshotFrom: export` (no read capacity; loading takes "
            f"{human_seconds(e.write_seconds)} at the write budget, plus the export)"
        )
    hours = math.ceil(e.seconds * MARGIN / 3600)
    if t.kinesis is None and hours <= 8760:
        out.append(
            "`target.streamChanges: {type: kinesis, streamArn: ...}` with a retention of at "
            f"least {hours} h (Kinesis keeps up to 8760 h)"
        )
    elif hours <= 8760:
        out.append(
            f"a Kinesis retention of at least {hours} h (`aws kinesis "
            f"increase-stream-retention-period --retention-period-hours {hours}`)"
        )
    if e.client_seconds > target_s:
        out.append(
            f"the Spark engine (`--engine spark`) with at least {math.ceil(e.client_seconds / target_s)} "
            f"executor cores: one process copies at most ~{CLIENT_ITEMS_PER_SECOND:,} items/s"
        )
    return out


def _cost(
    tp: TablePlan,
    cfg: Config,
    e: Estimate,
    shape: Shape,
    read_rate: float | None,
    src: dict[str, Any],
    existing: dict[str, Any] | None,
    retention_h: float | None,
) -> None:
    """The AWS side of the migration, at the repository's price table."""
    s, t = cfg.source, cfg.target
    p = prices.PRICES
    gb = (shape.size_bytes or 0) / GB
    hours = e.seconds / 3600
    once: dict[str, float] = {}
    daily: dict[str, float] = {}
    notes: list[str] = []
    on_aws = s.endpoint is None and s.s3_export is None
    mode, _ = _billing(src)
    if on_aws and e.read_units:
        if mode == "PAY_PER_REQUEST":
            once["scan reads (on-demand)"] = e.read_units * p["dynamodb_read_request_unit"]
        else:
            rate = read_rate or 0.0
            once["scan reads (provisioned RCU-hours at the budget)"] = (
                rate * hours * p["dynamodb_rcu_hour"]
            )
            notes.append("provisioned reads cost nothing extra if the table already has the RCU")
    if on_aws and export_request.wanted(cfg) and s.s3_export is None:
        once["export to S3"] = gb * p["dynamodb_export_gb"]
        if "ENABLED" not in str(tp.source.get("pitr", "")):
            daily["point-in-time recovery (migrate enables it)"] = (
                gb * p["dynamodb_pitr_gb_month"] / 30
            )
    if t.endpoint is None and t.type == "dynamodb" and e.write_units:
        tmode = (existing or {}).get("BillingModeSummary", {}).get("BillingMode") or (
            t.billing_mode or mode
        )
        if tmode == "PAY_PER_REQUEST":
            once["target writes (on-demand)"] = e.write_units * p["dynamodb_write_request_unit"]
    if on_aws and t.endpoint is not None and gb:
        once["data transfer out of AWS (if the target runs outside AWS)"] = (
            gb * p["transfer_out_gb"]
        )
    if on_aws and retention_h is not None:
        if t.kinesis is not None:
            shards = int(tp.settings.get("kinesisShards") or 1)
            daily["Kinesis shard-hours"] = shards * 24 * p["kinesis_shard_hour"]
            if retention_h > 24:
                daily["Kinesis extended retention"] = (
                    shards * 24 * p["kinesis_extended_retention_shard_hour"]
                )
            notes.append(
                "plus $0.10 per million source writes (change data capture units) and Kinesis "
                "PUT payload units"
            )
        else:
            poll = s.streaming_poll_interval_seconds or DEFAULT_POLL_SECONDS
            daily["DynamoDB Streams reads (per shard)"] = (
                86400 / poll * p["dynamodb_streams_read_request"]
            )
            notes.append("the first 2.5M Streams read requests a month are free")
    if not on_aws:
        notes.append("the source is not on AWS (an endpoint is set): no AWS charges estimated")
    tp.cost = {
        "label": f"ESTIMATE at {prices.REGION} list prices of {prices.AS_OF} ({prices.CURRENCY})",
        "oneTime": {k: round(v, 4) for k, v in once.items()},
        "oneTimeTotal": round(sum(once.values()), 4),
        "perDay": {k: round(v, 4) for k, v in daily.items()},
        "perDayTotal": round(sum(daily.values()), 4),
        "notes": notes,
    }
    region = s.region or "us-east-1"
    if on_aws and region != prices.REGION:
        notes.append(f"prices are {prices.REGION}'s; {region} may differ")


# --------------------------------------------------------------------------- entry points


def make_plan(cfg: Config) -> Plan:
    """The plan of the configured migration: one per table of the run."""
    require_supported(cfg)
    with ExitStack() as stack:
        source = stack.enter_context(source_client(cfg.source, pool_size=2))
        target = stack.enter_context(target_client(cfg.target, pool_size=2))
        kinesis = (
            stack.enter_context(kinesis_client(cfg.source, pool_size=2))
            if cfg.target.kinesis is not None
            else None
        )
        tables = table_configs(cfg, source)
        return Plan(cfg.path, [plan_table(c, source, target, kinesis) for c in tables])


def summary(tp: TablePlan) -> str:
    """One line: what, how long, whether it fits, what it costs, and any blocker."""
    items = tp.source.get("items")
    size = tp.source.get("sizeBytes")
    what = f"{items:,} items" if isinstance(items, int) else "items unknown"
    what += f", {human_bytes(size)}" if isinstance(size, int | float) and size else ""
    e = tp.estimate
    secs = e.get("snapshotSeconds")
    dur = (
        "no snapshot"
        if secs == 0
        else f"snapshot ~{human_seconds(secs)} (bound by {e.get('bound')})"
        if isinstance(secs, int | float)
        else "snapshot duration unknown (`alternator-migrator plan` estimates it)"
    )
    fit = str(e.get("fit", "")).split(":")[0]
    cost = tp.cost.get("oneTimeTotal")
    line = f"Plan: {tp.source_table} -> {tp.target_table}: {what}; {dur}"
    if fit:
        line += f"; retention: {fit}"
    if isinstance(cost, int | float) and cost:
        line += f"; est. AWS cost {money(cost)} once"
    if tp.blockers:
        line += f"; CANNOT RUN: {tp.blockers[0].split('; instead: ')[0]}"
    return line


def plan_summary(
    cfg: Config,
    source: DynamoClient,
    target: DynamoClient,
    kinesis: DynamoClient | None,
    src: dict[str, Any],
) -> str:
    """migrate's opening line. Never stops the run: migrate makes its own checks."""
    try:
        return summary(plan_table(cfg, source, target, kinesis, quick=True, src=src))
    except Interrupted:
        raise
    except Exception as e:  # a plan is advice; the run goes on without it
        return f"Plan: unavailable ({type(e).__name__}: {e})"


def print_plan(plan: Plan, out: TextIO | None = None) -> None:
    w = (out or sys.stdout).write
    w(f"Plan for {plan.config} (read-only: nothing was changed)\n")
    for i, tp in enumerate(plan.tables, 1):
        w(f"\nTable {i}/{len(plan.tables)}: {tp.source_table} -> {tp.target_table}\n")
        src = tp.source
        if src:
            w(f"  Source   {src.get('endpoint')}\n")
            items = src.get("items")
            count = f"{items:,}" if isinstance(items, int) else "unknown"
            if isinstance(items, int) and not src.get("itemsExact", True):
                count = "at least " + count
            size = src.get("sizeBytes")
            w(f"    items       {count}\n")
            w(
                f"    size        {human_bytes(size) if size is not None else 'unknown'}"
                f" ({src.get('sizeFrom')})\n"
            )
            w(f"    keys        {src.get('keys')}\n")
            w(f"    indexes     {', '.join(src.get('indexes') or []) or 'none'}\n")
            w(f"    billing     {src.get('billing')} ({src.get('capacity')})\n")
            for k, label in (
                ("stream", "stream"),
                ("ttl", "TTL"),
                ("pitr", "PITR"),
                ("kinesisDestination", "Kinesis"),
            ):
                if k in src:
                    w(f"    {label:<12}{src[k]}\n")
        if tp.target:
            tg = tp.target
            w(f"  Target   {tg.get('endpoint')}\n")
            reach = tg.get("reachable")
            w(f"    reachable   {'yes' if reach else 'NO'}\n")
            for k, label in (
                ("table", "table"),
                ("nodes", "nodes"),
                ("writeIsolation", "isolation"),
            ):
                if k in tg:
                    w(f"    {label:<12}{tg[k]}\n")
        if tp.settings:
            w("  Settings\n")
            for k, v in tp.settings.items():
                w(f"    {k:<12}{v}\n")
        if tp.ignored:
            w("  Ignored keys\n")
            for line in tp.ignored:
                w(f"    {line}\n")
        if tp.estimate:
            w("  Estimate (not a promise)\n")
            w(f"    snapshot    {tp.estimate.get('text')}\n")
            w(f"    retention   {tp.estimate.get('fit')}\n")
            for alt in tp.estimate.get("instead", []):
                w(f"    instead     {alt}\n")
        if tp.cost:
            c = tp.cost
            w(f"  Cost {c['label']}\n")
            for k, v in c["oneTime"].items():
                w(f"    {money(v):>10}  {k}\n")
            w(f"    {money(c['oneTimeTotal']):>10}  one-time total\n")
            for k, v in c["perDay"].items():
                w(f"    {money(v):>10}  per day: {k}\n")
            for n in c["notes"]:
                w(f"    note: {n}\n")
        for warn in tp.warnings:
            w(f"  WARNING: {warn}\n")
        for b in tp.blockers:
            w(f"  CANNOT RUN: {b}\n")
        w(f"  {summary(tp)}\n")
    bad = [t.source_table for t in plan.tables if not t.feasible]
    w(
        "\nVerdict: feasible\n"
        if not bad
        else f"\nVerdict: NOT feasible as configured: {', '.join(bad)}\n"
    )


def run_plan(cfg: Config, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """`alternator-migrator plan`: print the plan; 0 feasible, 1 a table cannot run as configured."""
    plan = make_plan(cfg)
    if as_json:
        (out or sys.stdout).write(
            orjson.dumps(plan.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        print_plan(plan, out)
    return 0 if plan.feasible else 1
