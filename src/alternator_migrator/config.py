"""The Scylla Migrator's DynamoDB YAML, read into frozen dataclasses once, at the edge.

Every error names the file, the key path and the fix. Secrets are kept out of ``repr`` so a
config can be logged safely.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# Keys of the Scylla Migrator's config that only mean something for its Cassandra/Parquet
# paths. Operators bring configs that carry them; accept and ignore, rather than reject.
_IGNORED_VALIDATION_KEYS = {
    "compareTimestamps",
    "ttlToleranceMillis",
    "writetimeToleranceMillis",
    "timestampMsTolerance",
}

# Default read/write capacity the EMR DynamoDB connector (and hence the Scylla Migrator) assumes
# for an on-demand table, where DescribeTable reports no provisioned throughput.
ON_DEMAND_DEFAULT_CAPACITY = 40000


def _doc(key: str, text: str, default: Any = None, *, shown: str | None = None, **kw: Any) -> Any:
    """A dataclass field carrying its YAML key and documentation (for docs/config-reference.md)."""
    meta = {"key": key, "doc": text, "default": shown}
    if "default_factory" in kw:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class Endpoint:
    host: str = _doc(
        "host",
        "Host name or URL; may carry the scheme (`http://scylla`). Without one, http is used (https for port 443).",
        "",
    )
    port: int | None = _doc("port", "TCP port, 1-65535.", shown="the scheme's default")

    @property
    def url(self) -> str:
        host = self.host.rstrip("/")
        if "://" not in host:
            scheme = "https" if self.port == 443 else "http"
            host = f"{scheme}://{host}"
        return f"{host}:{self.port}" if self.port is not None else host


@dataclass(frozen=True)
class AssumeRole:
    arn: str = _doc(
        "arn", "ARN of the IAM role to assume (through STS) with the base credentials.", ""
    )
    session_name: str | None = _doc(
        "sessionName", "Role session name.", shown="alternator-migrator"
    )


@dataclass(frozen=True)
class Credentials:
    access_key: str = _doc("accessKey", "Access key id. Never logged or saved.", "", repr=False)
    secret_key: str = _doc("secretKey", "Secret access key. Never logged or saved.", "", repr=False)
    session_token: str | None = _doc(
        "sessionToken", "Session token for temporary keys.", repr=False
    )
    assume_role: AssumeRole | None = _doc(
        "assumeRole",
        "Assume this role: `{arn, sessionName}`. Without static keys, the default chain's credentials assume it.",
    )

    def __repr__(self) -> str:  # never show secrets, whatever dataclass does
        return f"Credentials(access_key='***', secret_key='***', assume_role={self.assume_role!r})"


@dataclass(frozen=True)
class NamedType:
    name: str = _doc("name", "Attribute name.", "")
    type: str = _doc(
        "type", "In `attributeDefinitions`: `S`, `N` or `B`; in `keySchema`: `HASH` or `RANGE`.", ""
    )


@dataclass(frozen=True)
class Throughput:
    read_capacity_units: int = _doc("readCapacityUnits", "Read capacity units.", 5)
    write_capacity_units: int = _doc("writeCapacityUnits", "Write capacity units.", 5)


@dataclass(frozen=True)
class TableDescription:
    attribute_definitions: tuple[NamedType, ...] = _doc(
        "attributeDefinitions", "The key attributes and their types `[{name, type}]`.", ()
    )
    key_schema: tuple[NamedType, ...] = _doc(
        "keySchema", "`[{name, type: HASH}]`, plus `{name, type: RANGE}` for a sort key.", ()
    )
    billing_mode: str | None = _doc(
        "billingMode",
        "`PROVISIONED` or `PAY_PER_REQUEST`, for a target table the migration creates.",
        shown="PROVISIONED",
    )
    provisioned_throughput: Throughput | None = _doc(
        "provisionedThroughput", "`{readCapacityUnits, writeCapacityUnits}` when provisioned."
    )

    def describe(self, table: str) -> dict[str, Any]:
        """The table as DescribeTable would show it (what schema.py creates the target from)."""
        desc: dict[str, Any] = {
            "TableName": table,
            "KeySchema": [{"AttributeName": k.name, "KeyType": k.type} for k in self.key_schema],
            "AttributeDefinitions": [
                {"AttributeName": a.name, "AttributeType": a.type}
                for a in self.attribute_definitions
            ],
            "BillingModeSummary": {"BillingMode": self.billing_mode or "PROVISIONED"},
        }
        if self.provisioned_throughput is not None:
            pt = self.provisioned_throughput
            desc["ProvisionedThroughput"] = {
                "ReadCapacityUnits": pt.read_capacity_units,
                "WriteCapacityUnits": pt.write_capacity_units,
            }
        return desc


@dataclass(frozen=True)
class S3ExportSource:
    """A source of `type: dynamodb-s3-export`: a DynamoDB export to S3, loaded once."""

    bucket: str = _doc("bucket", "S3 bucket of the export. Required.", "")
    manifest_key: str = _doc(
        "manifestKey",
        "Key of the export's `manifest-summary.json` in the bucket (`<prefix>/AWSDynamoDB/<export id>/manifest-summary.json`). Required.",
        "",
    )
    table_description: TableDescription = _doc(
        "tableDescription",
        "The exported table's keys and billing, to create the target table from. Required.",
        default_factory=TableDescription,
    )
    use_path_style_access: bool = _doc(
        "usePathStyleAccess",
        "Address S3 as `endpoint/bucket/key` rather than `bucket.endpoint/key` (for S3-compatible servers).",
        False,
    )


_TYPE_DOC = "`dynamodb` (also `dynamo`) or `alternator`. Required."
_TABLE_DOC = "Table name. Required."
_REGION_DOC = "AWS region. Required unless `endpoint` is set."
_ENDPOINT_DOC = "`{host, port}` of a non-AWS server (Alternator, a DynamoDB-compatible API)."
_CREDS_DOC = "`{accessKey, secretKey, sessionToken, assumeRole}`. Absent: the AWS default chain (environment, profile, instance role)."


@dataclass(frozen=True)
class SourceConfig:
    table: str = _doc("table", _TABLE_DOC, "")
    type: str = _doc("type", _TYPE_DOC, "dynamodb")
    region: str | None = _doc("region", _REGION_DOC, shown="us-east-1 with an endpoint")
    endpoint: Endpoint | None = _doc("endpoint", _ENDPOINT_DOC, shown="AWS")
    credentials: Credentials | None = _doc("credentials", _CREDS_DOC, shown="default chain")
    assume_role: AssumeRole | None = None
    scan_segments: int | None = _doc(
        "scanSegments",
        "Number of parallel Scan segments, >= 1. Fixed for a migration once its snapshot started (a resumed snapshot keeps the saved count).",
        shown="table size / 128 MiB, at least 8",
    )
    read_throughput: int | None = _doc(
        "readThroughput",
        "Read capacity units per second the migration may use on the source (scan and validate).",
        shown="the table's provisioned RCU; 40000 when on-demand or Alternator",
    )
    throughput_read_percent: float | None = _doc(
        "throughputReadPercent", "Share of `readThroughput` to use, 0.1-1.5.", shown="0.5"
    )
    max_map_tasks: int | None = _doc(
        "maxMapTasks",
        "Segments scanned at once (threads locally, concurrent tasks on Spark).",
        shown="min(scanSegments, 8)",
    )
    snapshot_from: str = _doc(
        "snapshotFrom",
        "`scan` (Scan segments) or `export`: take the snapshot from a DynamoDB export to S3 instead, in the same run (the stream is enabled first, then `ExportTableToPointInTime` is requested, loaded and the stream replayed). Spends no read capacity; needs point-in-time recovery, which is enabled if off.",
        "scan",
    )
    export_bucket: str | None = _doc(
        "exportBucket",
        "With `snapshotFrom: export`: the S3 bucket the export is written to (required unless `exportArn` is given). S3 is reached with the source's region, endpoint and credentials.",
    )
    export_prefix: str | None = _doc(
        "exportPrefix",
        "With `snapshotFrom: export`: the S3 key prefix of the export.",
        shown="alternator-migrator",
    )
    export_arn: str | None = _doc(
        "exportArn",
        "With `snapshotFrom: export`: use this existing export instead of requesting one. It must be of this table and its export time must be after the stream was enabled; otherwise the run refuses it.",
    )
    s3_export: S3ExportSource | None = None  # set for `type: dynamodb-s3-export`


@dataclass(frozen=True)
class TargetConfig:
    table: str = _doc("table", _TABLE_DOC, "")
    type: str = _doc("type", _TYPE_DOC, "dynamodb")
    region: str | None = _doc("region", _REGION_DOC, shown="us-east-1 with an endpoint")
    endpoint: Endpoint | None = _doc("endpoint", _ENDPOINT_DOC, shown="AWS")
    credentials: Credentials | None = _doc("credentials", _CREDS_DOC, shown="default chain")
    assume_role: AssumeRole | None = None
    stream_changes: bool = _doc(
        "streamChanges",
        "Enable a NEW_IMAGE stream on the source before the snapshot and replay it afterwards, until stopped.",
        False,
    )
    skip_initial_snapshot_transfer: bool = _doc(
        "skipInitialSnapshotTransfer", "Do not copy the snapshot; only replay the stream.", False
    )
    write_throughput: int | None = _doc(
        "writeThroughput",
        "Write capacity units per second the migration may use on the target. Enforced on the client, so it also holds for Alternator, which reports no consumed capacity.",
        shown="the table's provisioned WCU; 40000 when on-demand or Alternator",
    )
    throughput_write_percent: float | None = _doc(
        "throughputWritePercent", "Share of `writeThroughput` to use, 0.1-1.5.", shown="0.5"
    )
    billing_mode: str | None = _doc(
        "billingMode",
        "`PROVISIONED` or `PAY_PER_REQUEST` for a target table the migration creates.",
        shown="the source's",
    )
    remove_consumed_capacity: bool = _doc(
        "removeConsumedCapacity",
        "Do not ask for ConsumedCapacity (older Alternator versions reject it).",
        False,
    )
    max_items_per_batch: int = _doc(
        "maxItemsPerBatch",
        "Items per BatchWriteItem, 1-100 (DynamoDB allows 25, Alternator 100).",
        25,
    )


@dataclass(frozen=True)
class Savepoints:
    path: str = _doc(
        "path",
        "Directory of the savepoint file (one file per migration, mode 0600).",
        "./savepoints",
    )
    interval_seconds: float = _doc(
        "intervalSeconds", "Seconds between savepoint writes (also written on stop).", 300.0
    )


@dataclass(frozen=True)
class Rename:
    from_: str = _doc("from", "Attribute name on the source.", "")
    to: str = _doc("to", "Attribute name on the target.", "")


@dataclass(frozen=True)
class Validation:
    failures_to_fetch: int = _doc(
        "failuresToFetch", "How many differences `validate` prints in detail.", 100
    )
    floating_point_tolerance: float = _doc(
        "floatingPointTolerance", "Numbers closer than this compare equal in `validate`.", 0.0
    )


@dataclass(frozen=True)
class Config:
    source: SourceConfig = _doc("source", "The table to migrate from.", shown="required")
    target: TargetConfig = _doc("target", "The table to migrate to.", shown="required")
    savepoints: Savepoints = _doc(
        "savepoints", "Where and how often progress is saved.", default_factory=Savepoints
    )
    renames: tuple[Rename, ...] = _doc(
        "renames", "Attribute renames `[{from, to}]`, applied in snapshot, replay and validate.", ()
    )
    validation: Validation = _doc(
        "validation",
        "Settings of `validate`. The Scylla Migrator's `compareTimestamps`, `ttlToleranceMillis`, `writetimeToleranceMillis` and `timestampMsTolerance` are accepted and ignored (they concern Cassandra).",
        default_factory=Validation,
    )
    path: str = "<memory>"

    def fingerprint(self) -> str:
        """Identifies this migration (source, target, tables) without any secret."""

        def where(side: SourceConfig | TargetConfig) -> str:
            ep = side.endpoint.url if side.endpoint else f"aws:{side.region}"
            return f"{ep}/{side.table}"

        raw = f"{where(self.source)} -> {where(self.target)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def rename_map(self) -> dict[str, str]:
        return {r.from_: r.to for r in self.renames}


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Walks one mapping of the YAML, recording which keys were consumed."""

    def __init__(self, path: str, where: str, data: Any) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            self.fail(where, f"must be a mapping, got {_kind(data)}", "indent its keys under it")
        self.data: dict[str, Any] = data
        self.known: list[str] = []

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, key: str, problem: str, fix: str) -> None:
        raise ConfigError(f"{self.path}: `{key}` {problem}; {fix}")

    def get(self, name: str) -> Any:
        self.known.append(name)
        return self.data.get(name)

    def str_(self, name: str, *, required: bool = False) -> str | None:
        v = self.get(name)
        if v is None:
            if required:
                self.fail(self.key(name), "is missing", "add it (a non-empty string)")
            return None
        if isinstance(v, bool) or not isinstance(v, str | int) or str(v) == "":
            self.fail(self.key(name), f"must be a non-empty string, got {_kind(v)}", "quote it")
        return str(v)

    def int_(self, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(
                self.key(name), f"must be a whole number, got {_kind(v)}", _range(minimum, maximum)
            )
        if v < minimum or (maximum is not None and v > maximum):
            self.fail(self.key(name), f"is {v}, out of range", _range(minimum, maximum))
        return int(v)

    def float_(self, name: str, *, minimum: float, maximum: float) -> float | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self.fail(self.key(name), f"must be a number, got {_kind(v)}", _range(minimum, maximum))
        if v < minimum or v > maximum:
            self.fail(self.key(name), f"is {v}, out of range", _range(minimum, maximum))
        return float(v)

    def bool_(self, name: str, default: bool) -> bool:
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.fail(
                self.key(name), f"must be true or false, got {_kind(v)}", "write true or false"
            )
        return bool(v)

    def child(self, name: str) -> _Reader | None:
        v = self.get(name)
        if v is None:
            return None
        return _Reader(self.path, self.key(name), v)

    def done(self, ignored: set[str] | None = None) -> None:
        for k in self.data:
            if k in self.known or (ignored and k in ignored):
                continue
            near = difflib.get_close_matches(str(k), self.known, n=1, cutoff=0.5)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(self.known)}"
            self.fail(self.key(str(k)), "is not a known key", hint)


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"


def _range(lo: float, hi: float | None) -> str:
    return f"use a value >= {lo}" if hi is None else f"use a value from {lo} to {hi}"


def _endpoint(r: _Reader) -> Endpoint | None:
    e = r.child("endpoint")
    if e is None:
        return None
    host = e.str_("host", required=True)
    port = e.int_("port", minimum=1, maximum=65535)
    e.done()
    assert host is not None
    return Endpoint(host=host, port=port)


def _credentials(r: _Reader) -> tuple[Credentials | None, AssumeRole | None]:
    c = r.child("credentials")
    if c is None:
        return None, None
    access = c.str_("accessKey")
    secret = c.str_("secretKey")
    token = c.str_("sessionToken")
    role: AssumeRole | None = None
    a = c.child("assumeRole")
    if a is not None:
        arn = a.str_("arn", required=True)
        assert arn is not None
        role = AssumeRole(arn=arn, session_name=a.str_("sessionName"))
        a.done()
    c.done()
    if (access is None) != (secret is None):
        missing = "secretKey" if secret is None else "accessKey"
        c.fail(c.key(missing), "is missing", "give both accessKey and secretKey, or neither")
    if access is None or secret is None:
        return None, role
    return Credentials(
        access_key=access, secret_key=secret, session_token=token, assume_role=role
    ), role


_TYPES = ("dynamodb", "dynamo", "alternator")


def _side_type(r: _Reader) -> str:
    t = r.str_("type", required=True)
    assert t is not None
    if t.lower() not in _TYPES:
        r.fail(r.key("type"), f"is {t!r}, not supported", "use `dynamodb` or `alternator`")
    return "alternator" if t.lower() == "alternator" else "dynamodb"


def _region(r: _Reader, endpoint: Endpoint | None) -> str | None:
    region = r.str_("region")
    if region is None and endpoint is None:
        r.fail(r.key("region"), "is missing", "set `region` (or `endpoint` for a non-AWS server)")
    return region


def _side(r: _Reader) -> dict[str, Any]:
    """The keys a source and a target share."""
    kind = _side_type(r)
    table = r.str_("table", required=True)
    endpoint = _endpoint(r)
    region = _region(r, endpoint)
    creds, role = _credentials(r)
    return {
        "table": table or "",
        "type": kind,
        "region": region,
        "endpoint": endpoint,
        "credentials": creds,
        "assume_role": role,
    }


def _source(r: _Reader) -> SourceConfig:
    if str(r.data.get("type", "")).lower() == S3_EXPORT_TYPE:
        return _s3_export_source(r)
    cfg = SourceConfig(
        **_side(r),
        scan_segments=r.int_("scanSegments", minimum=1, maximum=1_000_000),
        read_throughput=r.int_("readThroughput", minimum=1),
        throughput_read_percent=r.float_("throughputReadPercent", minimum=0.1, maximum=1.5),
        max_map_tasks=r.int_("maxMapTasks", minimum=1, maximum=10_000),
        **_export_snapshot_keys(r),
    )
    r.done()
    return cfg


S3_EXPORT_TYPE = "dynamodb-s3-export"


def _export_snapshot_keys(r: _Reader) -> dict[str, Any]:
    """The keys of a DynamoDB source that take its snapshot from an export (one-step mode)."""
    snap = (r.str_("snapshotFrom") or "scan").lower()
    bucket, prefix, arn = r.str_("exportBucket"), r.str_("exportPrefix"), r.str_("exportArn")
    if snap not in ("scan", "export"):
        r.fail(r.key("snapshotFrom"), f"is {snap!r}", "use `scan` or `export`")
    if snap == "scan":
        for name, v in (("exportBucket", bucket), ("exportPrefix", prefix), ("exportArn", arn)):
            if v is not None:
                r.fail(r.key(name), "only applies to an export", "add `snapshotFrom: export`")
    elif str(r.data.get("type", "")).lower() == "alternator":
        r.fail(r.key("snapshotFrom"), "is `export`, but Alternator has no export", "use `scan`")
    elif bucket is None and arn is None:
        r.fail(
            r.key("exportBucket"), "is missing", "set the S3 bucket to export to (or `exportArn`)"
        )
    return {
        "snapshot_from": snap,
        "export_bucket": bucket,
        "export_prefix": prefix,
        "export_arn": arn,
    }


def _s3_export_source(r: _Reader) -> SourceConfig:
    """`type: dynamodb-s3-export`, with the Scylla Migrator's keys."""
    r.get("type")
    bucket = r.str_("bucket", required=True)
    manifest = r.str_("manifestKey", required=True)
    assert bucket is not None and manifest is not None
    endpoint = _endpoint(r)
    region = r.str_("region")
    creds, role = _credentials(r)
    path_style = r.bool_("usePathStyleAccess", False)
    workers = r.int_("maxMapTasks", minimum=1, maximum=10_000)  # data files loaded at once
    td = r.child("tableDescription")
    if td is None:
        r.fail(
            r.key("tableDescription"),
            "is missing",
            "give the table's attributeDefinitions and keySchema",
        )
    assert td is not None

    def named(name: str, allowed: tuple[str, ...]) -> tuple[NamedType, ...]:
        raw = td.get(name)
        if not isinstance(raw, list) or not raw:
            td.fail(
                td.key(name),
                f"must be a non-empty list, got {_kind(raw)}",
                "write `- {name: id, type: ...}` items",
            )
        out = []
        for i, item in enumerate(raw):
            e = _Reader(r.path, f"{td.key(name)}[{i}]", item)
            n, t = e.str_("name", required=True), e.str_("type", required=True)
            e.done()
            assert n is not None and t is not None
            if t.upper() not in allowed:
                e.fail(e.key("type"), f"is {t!r}", f"use one of {', '.join(allowed)}")
            out.append(NamedType(n, t.upper()))
        return tuple(out)

    attrs = named("attributeDefinitions", ("S", "N", "B"))
    keys = named("keySchema", ("HASH", "RANGE"))
    billing = td.str_("billingMode")
    if billing is not None and billing.upper() not in ("PROVISIONED", "PAY_PER_REQUEST"):
        td.fail(td.key("billingMode"), f"is {billing!r}", "use PROVISIONED or PAY_PER_REQUEST")
    throughput = None
    pt = td.child("provisionedThroughput")
    if pt is not None:
        rcu = pt.int_("readCapacityUnits", minimum=1)
        wcu = pt.int_("writeCapacityUnits", minimum=1)
        pt.done()
        throughput = Throughput(rcu or 5, wcu or 5)
    td.done()
    defined = {a.name for a in attrs}
    for k in keys:
        if k.name not in defined:
            td.fail(
                td.key("keySchema"),
                f"names {k.name!r}, which is not in attributeDefinitions",
                "define its type there",
            )
    if [k.type for k in keys] not in (["HASH"], ["HASH", "RANGE"]):
        td.fail(
            td.key("keySchema"),
            "must be one HASH key, optionally followed by one RANGE key",
            "fix the key types",
        )
    r.done()
    export = S3ExportSource(
        bucket=bucket,
        manifest_key=manifest,
        table_description=TableDescription(
            attrs, keys, billing.upper() if billing else None, throughput
        ),
        use_path_style_access=path_style,
    )
    # No table to name: the export's id (unique per export) names its savepoint instead.
    parts = manifest.split("/")
    ident = parts[-2] if len(parts) >= 2 else hashlib.sha256(manifest.encode()).hexdigest()[:16]
    return SourceConfig(
        table=f"s3-export-{''.join(c if c.isalnum() or c in '-_.' else '_' for c in ident)}",
        type=S3_EXPORT_TYPE,
        region=region,
        endpoint=endpoint,
        credentials=creds,
        assume_role=role,
        max_map_tasks=workers,
        s3_export=export,
    )


def _target(r: _Reader) -> TargetConfig:
    common = _side(r)
    billing = r.str_("billingMode")
    if billing is not None and billing.upper() not in ("PROVISIONED", "PAY_PER_REQUEST"):
        r.fail(r.key("billingMode"), f"is {billing!r}", "use PROVISIONED or PAY_PER_REQUEST")
    batch = r.int_("maxItemsPerBatch", minimum=1, maximum=100)
    cfg = TargetConfig(
        **common,
        stream_changes=r.bool_("streamChanges", False),
        skip_initial_snapshot_transfer=r.bool_("skipInitialSnapshotTransfer", False),
        write_throughput=r.int_("writeThroughput", minimum=1),
        throughput_write_percent=r.float_("throughputWritePercent", minimum=0.1, maximum=1.5),
        billing_mode=billing.upper() if billing else None,
        remove_consumed_capacity=r.bool_("removeConsumedCapacity", False),
        max_items_per_batch=batch if batch is not None else 25,
    )
    r.done()
    return cfg


def parse(data: Any, path: str = "<memory>") -> Config:
    """Build a Config from already-loaded YAML data."""
    top = _Reader(path, "", data if data is not None else {})
    s = top.child("source")
    t = top.child("target")
    if s is None:
        top.fail("source", "is missing", "add a `source:` section with `type: dynamodb`")
    if t is None:
        top.fail("target", "is missing", "add a `target:` section with `type: dynamodb`")
    assert s is not None and t is not None
    source = _source(s)
    target = _target(t)

    savepoints = Savepoints()
    sp = top.child("savepoints")
    if sp is not None:
        sp_path = sp.str_("path")
        interval = sp.float_("intervalSeconds", minimum=0.1, maximum=86400)
        sp.done()
        savepoints = Savepoints(
            path=sp_path or savepoints.path,
            interval_seconds=interval if interval is not None else savepoints.interval_seconds,
        )

    renames: list[Rename] = []
    raw_renames = top.get("renames")
    if raw_renames is not None:
        if not isinstance(raw_renames, list):
            top.fail(
                "renames",
                f"must be a list, got {_kind(raw_renames)}",
                "write `- {from: a, to: b}` items",
            )
        for i, item in enumerate(raw_renames):
            rr = _Reader(path, f"renames[{i}]", item)
            frm, to = rr.str_("from", required=True), rr.str_("to", required=True)
            rr.done()
            assert frm is not None and to is not None
            renames.append(Rename(from_=frm, to=to))
        targets = [r.to for r in renames]
        if len(set(targets)) != len(targets):
            top.fail("renames", "maps two attributes to one name", "give each `to` a distinct name")

    validation = Validation()
    v = top.child("validation")
    if v is not None:
        ftf = v.int_("failuresToFetch", minimum=0)
        fpt = v.float_("floatingPointTolerance", minimum=0.0, maximum=1e300)
        for k in _IGNORED_VALIDATION_KEYS:
            v.get(k)
        v.known = [k for k in v.known if k not in _IGNORED_VALIDATION_KEYS]
        v.done(ignored=_IGNORED_VALIDATION_KEYS)
        validation = Validation(
            failures_to_fetch=ftf if ftf is not None else validation.failures_to_fetch,
            floating_point_tolerance=fpt if fpt is not None else 0.0,
        )
    top.done()
    return Config(
        source=source,
        target=target,
        savepoints=savepoints,
        renames=tuple(renames),
        validation=validation,
        path=path,
    )


def load(path: str | Path) -> Config:
    """Read and check a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file; pass the path of your config with --config"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{p}: cannot read it ({e.strerror}); check the path and permissions"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"{p}: malformed YAML{where}: {problem}; fix the indentation or quoting there"
        ) from None
    return parse(data, str(p))


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
