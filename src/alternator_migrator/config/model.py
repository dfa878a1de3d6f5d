"""The Scylla Migrator's DynamoDB YAML, read into frozen dataclasses once, at the edge.

Every error names the file, the key path and the fix. Secrets are kept out of ``repr`` so a
config can be logged safely.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ..errors import ConfigError
from .compat import IGNORED_REASONS

log = logging.getLogger(__name__)

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
    ca_bundle: str | None = _doc(
        "caBundle",
        "PEM file of the CA(s) that sign this endpoint's TLS certificate (a private CA). Applies to https endpoints only.",
        shown="AWS_CA_BUNDLE, else the system's CAs",
    )

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


_TYPE_DOC = "`dynamodb` (also `dynamo`) or `alternator`. Required."
_ALT = "Alternator client setting; see docs/scylla-migrator-users.md."


@dataclass(frozen=True)
class AlternatorSettings:
    """The Scylla Migrator's `alternator` settings (YAML keys in camelCase, as that tool has them).

    None means not given: the consumer picks its default.
    """

    datacenter: str | None = _doc("datacenter", "Use the Alternator nodes of this datacenter only.")
    rack: str | None = _doc("rack", "Use the nodes of this rack only (needs `datacenter`).")
    active_refresh_interval_ms: int | None = _doc(
        "activeRefreshIntervalMs", "Node-list refresh interval while requests flow, ms."
    )
    idle_refresh_interval_ms: int | None = _doc(
        "idleRefreshIntervalMs", "Node-list refresh interval while idle, ms."
    )
    compression: bool | None = _doc("compression", "Compress request bodies.")
    optimize_headers: bool | None = _doc(
        "optimizeHeaders", "Send only the HTTP headers Alternator reads."
    )
    max_connections: int | None = _doc("maxConnections", "Connection pool size.")
    connection_max_idle_time_ms: int | None = _doc(
        "connectionMaxIdleTimeMs", "Close connections idle this long, ms."
    )
    connection_time_to_live_ms: int | None = _doc(
        "connectionTimeToLiveMs", "Recycle connections after this long, ms."
    )
    connection_acquisition_timeout_ms: int | None = _doc(
        "connectionAcquisitionTimeoutMs", "Longest wait for a pooled connection, ms."
    )
    connection_timeout_ms: int | None = _doc("connectionTimeoutMs", "TCP connect timeout, ms.")
    max_items_per_batch: int | None = _doc(
        "maxItemsPerBatch",
        "Items per BatchWriteItem on the target (wins over `target.maxItemsPerBatch`).",
    )
    clock_skew_guard_ms: int | None = _doc(
        "clockSkewGuardMs",
        "Our own key (target only). Every write of one item goes to one node (key affinity); when the node set changes, a key that moves to another node waits this long after the last write its old node took, so that clocks this far apart cannot reorder them. At least the nodes' worst clock disagreement (docs/runbook.md).",
        shown="1000",
    )


@dataclass(frozen=True)
class _Side:
    """The keys a source and a target share, written once for both."""

    table: str = _doc("table", "Table name. Required.", "")
    type: str = _doc("type", _TYPE_DOC, "dynamodb")
    region: str | None = _doc(
        "region",
        "AWS region. Required unless `endpoint` is set.",
        shown="us-east-1 with an endpoint",
    )
    endpoint: Endpoint | None = _doc(
        "endpoint",
        "`{host, port}` of a non-AWS server (Alternator, a DynamoDB-compatible API).",
        shown="AWS",
    )
    credentials: Credentials | None = _doc(
        "credentials",
        "`{accessKey, secretKey, sessionToken, assumeRole}`. Absent: the AWS default chain (environment, profile, instance role).",
        shown="default chain",
    )
    assume_role: AssumeRole | None = None
    remove_consumed_capacity: bool = _doc(
        "removeConsumedCapacity",
        "Do not ask for ConsumedCapacity (older Alternator versions reject it).",
        False,
        shown="true for type alternator, else false",
    )
    alternator: AlternatorSettings | None = _doc(
        "alternator",
        "Alternator client settings (node discovery, compression, connections). With `type: alternator` the same keys may also sit directly in this section.",
        shown="none",
    )


@dataclass(frozen=True)
class TableDescription:
    """The S3-export source's table shape (their `tableDescription`)."""

    attribute_definitions: tuple[tuple[str, str], ...] = ()
    key_schema: tuple[tuple[str, str], ...] = ()
    billing_mode: str | None = None
    read_capacity_units: int | None = None
    write_capacity_units: int | None = None

    def describe(self, table: str) -> dict[str, Any]:
        """The table as DescribeTable would show it (what schema.py creates the target from)."""
        desc: dict[str, Any] = {
            "TableName": table,
            "KeySchema": [{"AttributeName": n, "KeyType": t.upper()} for n, t in self.key_schema],
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": t.upper()}
                for n, t in self.attribute_definitions
            ],
            "BillingModeSummary": {"BillingMode": (self.billing_mode or "PROVISIONED").upper()},
        }
        if self.read_capacity_units or self.write_capacity_units:
            desc["ProvisionedThroughput"] = {
                "ReadCapacityUnits": self.read_capacity_units or 5,
                "WriteCapacityUnits": self.write_capacity_units or 5,
            }
        return desc


@dataclass(frozen=True)
class S3Export:
    """A `type: dynamodb-s3-export` source: a DynamoDB export to S3, loaded once."""

    bucket: str
    manifest_key: str
    table_description: TableDescription
    use_path_style_access: bool | None = None


@dataclass(frozen=True)
class KinesisStream:
    """`streamChanges: {type: kinesis, ...}`: the table's Kinesis streaming destination."""

    stream_arn: str
    app_name: str | None = None
    initial_timestamp: str | None = None


@dataclass(frozen=True)
class SourceConfig(_Side):
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
    streaming_poll_interval_seconds: float | None = _doc(
        "streamingPollIntervalSeconds",
        "Longest wait between two polls of a stream that has nothing new, seconds.",
        shown="0.5",
    )
    streaming_max_consecutive_errors: int | None = _doc(
        "streamingMaxConsecutiveErrors",
        "Stream reads that may fail in a row (each after its own retries) before the replay stops; a trimmed stream always stops it.",
        shown="1",
    )
    streaming_polling_pool_size: int | None = _doc(
        "streamingPollingPoolSize", "Threads that read shards in parallel.", shown="8"
    )
    streaming_max_records_per_poll: int | None = _doc(
        "streamingMaxRecordsPerPoll", "GetRecords `Limit`, 1-1000.", shown="1000"
    )
    streaming_max_records_per_second: int | None = _doc(
        "streamingMaxRecordsPerSecond",
        "Cap on stream records applied per second, over all shards.",
        shown="unlimited",
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
    s3_export: S3Export | None = None  # `type: dynamodb-s3-export`


@dataclass(frozen=True)
class TargetConfig(_Side):
    stream_changes: bool = _doc(
        "streamChanges",
        "Enable a NEW_IMAGE stream on the source before the snapshot and replay it afterwards, until stopped. Also a mapping: `{type: dynamodb-streams}` is true, `{type: disabled}` false, `{type: kinesis, streamArn: ARN}` reads the changes from the table's Kinesis streaming destination (enabled if needed; see docs/runbook.md).",
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
    max_items_per_batch: int = _doc(
        "maxItemsPerBatch",
        "Items per BatchWriteItem, 1-100 (DynamoDB allows 25, Alternator 100).",
        25,
    )
    max_map_tasks: int | None = _doc(
        "maxMapTasks",
        "Writer threads of the snapshot (the Scylla Migrator 1.x key).",
        shown="2 per scanner, 2-16",
    )
    kinesis: KinesisStream | None = None  # `streamChanges: {type: kinesis}`: changes from Kinesis


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
    copy_missing_rows: bool = _doc(
        "copyMissingRows",
        "`validate` writes the source items the target lacks (differing items are only reported); `migrate` runs that pass right after its snapshot.",
        False,
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
        "Settings of `validate`. Keys of the Scylla Migrator that concern other databases are accepted and ignored with a warning (docs/scylla-migrator-users.md).",
        default_factory=Validation,
    )
    skip_segments: tuple[int, ...] = _doc(
        "skipSegments",
        "Scan segments not to copy (they count as done), numbered from 0 below the segment count.",
        (),
    )
    path: str = "<memory>"
    warnings: tuple[str, ...] = ()  # one line per accepted-and-ignored key

    def fingerprint(self) -> str:
        """Identifies this migration (source, target, tables) without any secret."""

        def where(side: _Side) -> str:
            ep = side.endpoint.url if side.endpoint else f"aws:{side.region}"
            return f"{ep}/{side.table}"

        raw = f"{where(self.source)} -> {where(self.target)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def rename_map(self) -> dict[str, str]:
        return {r.from_: r.to for r in self.renames}


def require_supported(cfg: Config, *, streaming: bool = True) -> None:
    """Refuse what is parsed but not built yet (exit 2), before anything is touched."""
    kinesis = cfg.target.kinesis
    if streaming and kinesis is not None and kinesis.initial_timestamp is not None:
        # Starting later than the stream's oldest record could skip changes the snapshot
        # missed; reading from the oldest record is always exact.
        raise ConfigError(
            f"{cfg.path}: `target.streamChanges.initialTimestamp` is not supported yet; "
            "remove it: the replay reads the Kinesis stream from its oldest record, and changes "
            "older than the snapshot are superseded by newer ones"
        )


# --------------------------------------------------------------------------- parsing

# A config over this size is not a config (a log, a dump, /dev/zero): refuse it before parsing.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# An unknown key is echoed in an error only when it looks like a key name; anything else (a
# typo such as `secretKey SECRET` or `secretKey=SECRET`) may hold a secret.
_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers where each of its keys was written."""

    marks: dict[Any, tuple[int, int]]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = _Map()
    data.marks = {}
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        try:
            key = loader.construct_object(key_node)
            data.marks[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        except TypeError:  # unhashable key: construct_mapping has already said so
            continue


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


class _Reader:
    """Walks one mapping of the YAML, recording which keys were consumed.

    A ``secret`` reader (credentials and below) never puts a value or an unknown key's text in
    an error; it says where instead.
    """

    def __init__(
        self, path: str, where: str, data: Any, warnings: list[str], secret: bool = False
    ) -> None:
        self.path = path
        self.where = where
        self.secret = secret
        self.warnings = warnings
        if not isinstance(data, dict):
            self.fail(
                where, f"must be a mapping, got {self.kind(data)}", "indent its keys under it"
            )
        self.data: dict[str, Any] = data
        self.known: list[str] = []
        self.accepted: set[str] = set()  # ignored or handled elsewhere: neither known nor unknown
        self.ignorable: list[str] = []  # their keys that mean nothing here (for typo hints)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def kind(self, v: Any) -> str:
        if self.secret and not isinstance(v, dict | list | type(None) | bool):
            return f"a {type(v).__name__} (value not shown)"
        return _kind(v)

    def fail(self, key: str, problem: str, fix: str) -> NoReturn:
        raise ConfigError(f"{self.path}: `{key}` {problem}; {fix}")

    def has(self, name: str) -> bool:
        return name in self.data

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
            self.fail(self.key(name), f"must be a non-empty string, got {self.kind(v)}", "quote it")
        return str(v)

    def int_(self, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(
                self.key(name),
                f"must be a whole number, got {self.kind(v)}",
                _range(minimum, maximum),
            )
        if v < minimum or (maximum is not None and v > maximum):
            self.fail(self.key(name), f"is {v}, out of range", _range(minimum, maximum))
        return int(v)

    def float_(self, name: str, *, minimum: float, maximum: float) -> float | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self.fail(
                self.key(name), f"must be a number, got {self.kind(v)}", _range(minimum, maximum)
            )
        if v < minimum or v > maximum:
            self.fail(self.key(name), f"is {v}, out of range", _range(minimum, maximum))
        return float(v)

    def opt_bool(self, name: str) -> bool | None:
        v = self.get(name)
        if v is not None and not isinstance(v, bool):
            self.fail(
                self.key(name), f"must be true or false, got {self.kind(v)}", "write true or false"
            )
        return v

    def bool_(self, name: str, default: bool) -> bool:
        v = self.opt_bool(name)
        return default if v is None else v

    def child(self, name: str) -> _Reader | None:
        v = self.get(name)
        if v is None:
            return None
        secret = self.secret or name == "credentials"
        return _Reader(self.path, self.key(name), v, self.warnings, secret)

    def ignore(self, name: str) -> None:
        """Accept a key of the Scylla Migrator that means nothing here, with one warning line."""
        self.ignorable.append(name)
        if name not in self.data:
            return
        self.accepted.add(name)
        dotted = re.sub(r"\[\d+\]", "", self.key(name))
        self.warnings.append(
            f"{self.path}: `{self.key(name)}` is accepted and ignored: {IGNORED_REASONS[dotted]}"
        )

    def done(self) -> None:
        for k in self.data:
            if k in self.known or k in self.accepted:
                continue
            # A glued `key=value` / `key value` is matched on its first word only.
            stem = re.split(r"[\s=:]", str(k), maxsplit=1)[0]
            near = difflib.get_close_matches(stem, self.known + self.ignorable, n=1, cutoff=0.5)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(self.known)}"
            if self.secret or not isinstance(k, str) or not _PLAIN_KEY.fullmatch(k):
                line, col = getattr(self.data, "marks", {}).get(k, (0, 0))
                at = f" at line {line}, column {col}" if line else ""
                self.fail(
                    self.where or "top level",
                    f"has an unknown key{at} (not shown: it may hold a secret)",
                    f"a key and its value need `: ` between them; {hint}",
                )
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
    ca_bundle = e.str_("caBundle")
    e.done()
    assert host is not None
    return Endpoint(host=host, port=port, ca_bundle=ca_bundle)


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


S3_EXPORT = "dynamodb-s3-export"
_TYPES = ("dynamodb", "dynamo", "alternator")


def _side_type(r: _Reader, *, source: bool) -> str:
    t = r.str_("type", required=True)
    assert t is not None
    if source and t.lower() == S3_EXPORT:
        return S3_EXPORT
    if t.lower() not in _TYPES:
        r.fail(r.key("type"), f"is {t!r}, not supported", "use `dynamodb` or `alternator`")
    return "alternator" if t.lower() == "alternator" else "dynamodb"


def _region(r: _Reader, endpoint: Endpoint | None) -> str | None:
    region = r.str_("region")
    if region is None and endpoint is None:
        r.fail(r.key("region"), "is missing", "set `region` (or `endpoint` for a non-AWS server)")
    return region


_ALT_KEYS = [f.metadata["key"] for f in fields(AlternatorSettings)]
# `maxItemsPerBatch` directly in a section is this tool's own target key (same meaning), so it
# is not taken for a flattened Alternator setting.
_FLAT_ALT_KEYS = [k for k in _ALT_KEYS if k != "maxItemsPerBatch"]


def _alternator(r: _Reader, kind: str) -> AlternatorSettings | None:
    """The `alternator` block (their 2.0 nesting) or, for `type: alternator`, the same keys at
    the section's top level (their later flattening)."""
    flat = [k for k in _FLAT_ALT_KEYS if r.has(k)]
    block = r.child("alternator")
    if flat and kind != "alternator":
        r.fail(
            r.key(flat[0]),
            "is an Alternator setting",
            "use `type: alternator` or put it under `alternator:`",
        )
    if block is not None and flat:
        r.fail(
            r.key(flat[0]),
            "is given both here and under `alternator:`",
            "keep one of the two places",
        )
    if block is None and not flat:
        return None
    a = block or r
    rack, dc = a.str_("rack"), a.str_("datacenter")
    if rack is not None and dc is None:
        a.fail(a.key("rack"), "is set without `datacenter`", "add `datacenter` too")

    def ms(name: str, minimum: int = 0) -> int | None:
        return a.int_(name, minimum=minimum)

    settings = AlternatorSettings(
        datacenter=dc,
        rack=rack,
        active_refresh_interval_ms=ms("activeRefreshIntervalMs", 1),
        idle_refresh_interval_ms=ms("idleRefreshIntervalMs", 1),
        compression=a.opt_bool("compression"),
        optimize_headers=a.opt_bool("optimizeHeaders"),
        max_connections=a.int_("maxConnections", minimum=1, maximum=10_000),
        connection_max_idle_time_ms=ms("connectionMaxIdleTimeMs"),
        connection_time_to_live_ms=ms("connectionTimeToLiveMs"),
        connection_acquisition_timeout_ms=ms("connectionAcquisitionTimeoutMs"),
        connection_timeout_ms=ms("connectionTimeoutMs"),
        max_items_per_batch=a.int_("maxItemsPerBatch", minimum=1, maximum=100)
        if block is not None
        else None,
        clock_skew_guard_ms=a.int_("clockSkewGuardMs", minimum=0, maximum=600_000),
    )
    if block is not None:
        block.done()
    else:
        # Flat keys are accepted, not "known": the hint list stays the section's own keys.
        r.known = [k for k in r.known if k not in _FLAT_ALT_KEYS]
        r.accepted.update(flat)
    return settings


def _side(r: _Reader, *, source: bool) -> dict[str, Any]:
    """The keys a source and a target share."""
    kind = _side_type(r, source=source)
    table = r.str_("table", required=kind != S3_EXPORT)
    endpoint = _endpoint(r)
    region = _region(r, endpoint)
    creds, role = _credentials(r)
    alternator = _alternator(r, kind) if kind != S3_EXPORT else None
    return {
        "table": table or "",
        "type": kind,
        "region": region,
        "endpoint": endpoint,
        "credentials": creds,
        "assume_role": role,
        "remove_consumed_capacity": r.bool_("removeConsumedCapacity", kind == "alternator"),
        "alternator": alternator,
    }


def _pairs(r: _Reader, name: str, first: str, second: str) -> tuple[tuple[str, str], ...]:
    raw = r.get(name)
    if not isinstance(raw, list) or not raw:
        r.fail(
            r.key(name),
            f"must be a non-empty list, got {_kind(raw)}",
            f"list `{{{first}, {second}}}` items",
        )
    out = []
    for i, item in enumerate(raw):
        ir = _Reader(r.path, f"{r.key(name)}[{i}]", item, r.warnings)
        a, b = ir.str_(first, required=True), ir.str_(second, required=True)
        ir.done()
        assert a is not None and b is not None
        out.append((a, b))
    return tuple(out)


def _s3_export(r: _Reader) -> S3Export:
    bucket, manifest = r.str_("bucket", required=True), r.str_("manifestKey", required=True)
    path_style = r.opt_bool("usePathStyleAccess")
    td = r.child("tableDescription")
    if td is None:
        r.fail(r.key("tableDescription"), "is missing", "describe the exported table's keys")
    desc = TableDescription(
        attribute_definitions=_pairs(td, "attributeDefinitions", "name", "type"),
        key_schema=_pairs(td, "keySchema", "name", "type"),
        billing_mode=td.str_("billingMode"),
    )
    pt = td.child("provisionedThroughput")
    if pt is not None:
        desc = dataclasses.replace(
            desc,
            read_capacity_units=pt.int_("readCapacityUnits", minimum=1),
            write_capacity_units=pt.int_("writeCapacityUnits", minimum=1),
        )
        pt.done()
    td.done()
    _check_keys(td, desc)
    r.done()
    assert bucket is not None and manifest is not None
    return S3Export(bucket, manifest, desc, path_style)


def _check_keys(td: _Reader, desc: TableDescription) -> None:
    """The checks CreateTable would make, said in the config's terms."""
    types = dict(desc.attribute_definitions)
    for i, (_, t) in enumerate(desc.attribute_definitions):
        if t.upper() not in ("S", "N", "B"):
            td.fail(f"{td.key('attributeDefinitions')}[{i}].type", f"is {t!r}", "use S, N or B")
    for name, _ in desc.key_schema:
        if name not in types:
            td.fail(
                td.key("keySchema"),
                f"names {name!r}, which is not in attributeDefinitions",
                "define its type there",
            )
    if [t.upper() for _, t in desc.key_schema] not in (["HASH"], ["HASH", "RANGE"]):
        td.fail(
            td.key("keySchema"),
            "must be one HASH key, optionally followed by one RANGE key",
            "fix the key types",
        )


def _export_table_name(manifest_key: str) -> str:
    """A name for an export's savepoint: its id (`.../AWSDynamoDB/<id>/manifest-summary.json`),
    unique per export (an export has no table to name it by)."""
    parts = manifest_key.split("/")
    ident = parts[-2] if len(parts) >= 2 else hashlib.sha256(manifest_key.encode()).hexdigest()[:16]
    return "s3-export-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in ident)


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


# Their source keys that mean nothing here (`maxItemsPerBatch` only for `type: alternator`).
_SOURCE_IGNORED = [
    k.split(".", 1)[1]
    for k in IGNORED_REASONS
    if k.count(".") == 1 and k.startswith("source.") and k != "source.maxItemsPerBatch"
]


def _source(r: _Reader) -> SourceConfig:
    common = _side(r, source=True)
    if common["type"] == S3_EXPORT:
        workers = r.int_("maxMapTasks", minimum=1, maximum=10_000)  # data files loaded at once
        export = _s3_export(r)
        common["table"] = _export_table_name(export.manifest_key)
        return SourceConfig(**common, max_map_tasks=workers, s3_export=export)
    if common["alternator"] is not None and common["alternator"].max_items_per_batch is not None:
        r.warnings.append(
            f"{r.path}: `source.alternator.maxItemsPerBatch` is accepted and ignored: "
            f"{IGNORED_REASONS['source.alternator.maxItemsPerBatch']}"
        )
    cfg = SourceConfig(
        **common,
        scan_segments=r.int_("scanSegments", minimum=1, maximum=1_000_000),
        read_throughput=r.int_("readThroughput", minimum=1),
        throughput_read_percent=r.float_("throughputReadPercent", minimum=0.1, maximum=1.5),
        max_map_tasks=r.int_("maxMapTasks", minimum=1, maximum=10_000),
        streaming_poll_interval_seconds=r.float_(
            "streamingPollIntervalSeconds", minimum=0.01, maximum=3600
        ),
        streaming_max_consecutive_errors=r.int_(
            "streamingMaxConsecutiveErrors", minimum=1, maximum=1_000_000
        ),
        streaming_polling_pool_size=r.int_("streamingPollingPoolSize", minimum=1, maximum=256),
        streaming_max_records_per_poll=r.int_(
            "streamingMaxRecordsPerPoll", minimum=1, maximum=1000
        ),
        streaming_max_records_per_second=r.int_("streamingMaxRecordsPerSecond", minimum=1),
        **_export_snapshot_keys(r),
    )
    for k in _SOURCE_IGNORED:
        r.ignore(k)
    if common["type"] == "alternator":
        r.ignore("maxItemsPerBatch")  # their flattened Alternator setting
    r.done()
    return cfg


_STREAM_ON = ("dynamodb-streams", "dynamodb", "ddb")
_STREAM_OFF = ("disabled", "none", "off")
_KINESIS = ("kinesis", "kinesis-data-streams")


def _stream_changes(r: _Reader) -> tuple[bool, KinesisStream | None]:
    raw = r.data.get("streamChanges")
    if not isinstance(raw, dict):
        return r.bool_("streamChanges", False), None
    s = r.child("streamChanges")
    assert s is not None
    t = (s.str_("type", required=True) or "").lower()
    if t in _STREAM_ON or t in _STREAM_OFF:
        s.done()
        return t in _STREAM_ON, None
    if t not in _KINESIS:
        s.fail(s.key("type"), f"is {t!r}", "use dynamodb-streams, disabled or kinesis")
    arn = s.str_("streamArn", required=True)
    assert arn is not None
    if not re.fullmatch(r"arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[^:/\s]+", arn):
        s.fail(
            s.key("streamArn"),
            f"is {arn!r}, not a Kinesis stream ARN",
            "use arn:aws:kinesis:REGION:ACCOUNT:stream/NAME",
        )
    kinesis = KinesisStream(arn, s.str_("appName"), s.str_("initialTimestamp"))
    s.done()
    return True, kinesis


def _target(r: _Reader) -> TargetConfig:
    common = _side(r, source=False)
    billing = r.str_("billingMode")
    if billing is not None and billing.upper() not in ("PROVISIONED", "PAY_PER_REQUEST"):
        r.fail(r.key("billingMode"), f"is {billing!r}", "use PROVISIONED or PAY_PER_REQUEST")
    batch = r.int_("maxItemsPerBatch", minimum=1, maximum=100)
    alt: AlternatorSettings | None = common["alternator"]
    if alt is not None and alt.max_items_per_batch is not None:
        if batch is not None and batch != alt.max_items_per_batch:
            r.fail(
                r.key("maxItemsPerBatch"),
                f"is {batch} but the Alternator setting says {alt.max_items_per_batch}",
                "keep one of the two",
            )
        batch = alt.max_items_per_batch
    stream, kinesis = _stream_changes(r)
    cfg = TargetConfig(
        **common,
        stream_changes=stream,
        kinesis=kinesis,
        skip_initial_snapshot_transfer=r.bool_("skipInitialSnapshotTransfer", False),
        write_throughput=r.int_("writeThroughput", minimum=1),
        throughput_write_percent=r.float_("throughputWritePercent", minimum=0.1, maximum=1.5),
        billing_mode=billing.upper() if billing else None,
        max_items_per_batch=batch if batch is not None else 25,
        max_map_tasks=r.int_("maxMapTasks", minimum=1, maximum=256),
    )
    r.ignore("scanSegments")
    r.done()
    return cfg


def _savepoints(top: _Reader) -> Savepoints:
    sp = top.child("savepoints")
    if sp is None:
        return Savepoints()
    sp_path = sp.str_("path")
    interval = sp.float_("intervalSeconds", minimum=0.1, maximum=86400)
    dest = sp.child("target")
    # Their alternative spelling of `path`: accepted, not advertised in the hint list.
    sp.known.remove("target")
    if dest is not None:
        kind = dest.str_("type", required=True)
        if kind != "filesystem":
            dest.fail(
                dest.key("type"),
                f"is {kind!r}: savepoints in object storage are not supported yet",
                "use `path:` (a local directory)",
            )
        if sp_path is not None:
            sp.fail(sp.key("target"), "is given with `path`", "give only one of the two")
        sp_path = dest.str_("path", required=True)
        dest.done()
        sp.accepted.add("target")
    sp.ignore("enableParquetFileTracking")
    sp.done()
    default = Savepoints()
    return Savepoints(
        path=sp_path or default.path,
        interval_seconds=interval if interval is not None else default.interval_seconds,
    )


def _renames(top: _Reader) -> tuple[Rename, ...]:
    raw = top.get("renames")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        top.fail("renames", f"must be a list, got {_kind(raw)}", "write `- {from: a, to: b}` items")
    renames: list[Rename] = []
    for i, item in enumerate(raw):
        rr = _Reader(top.path, f"renames[{i}]", item, top.warnings)
        frm, to = rr.str_("from", required=True), rr.str_("to", required=True)
        rr.done()
        assert frm is not None and to is not None
        renames.append(Rename(from_=frm, to=to))
    targets = [r.to for r in renames]
    if len(set(targets)) != len(targets):
        top.fail("renames", "maps two attributes to one name", "give each `to` a distinct name")
    return tuple(renames)


def _validation(top: _Reader) -> Validation:
    v = top.child("validation")
    if v is None:
        return Validation()
    ftf = v.int_("failuresToFetch", minimum=0)
    fpt = v.float_("floatingPointTolerance", minimum=0.0, maximum=1e300)
    copy = v.bool_("copyMissingRows", False)
    for k in IGNORED_REASONS:
        if k.startswith("validation."):
            v.ignore(k.split(".", 1)[1])
    v.done()
    return Validation(
        failures_to_fetch=ftf if ftf is not None else Validation().failures_to_fetch,
        floating_point_tolerance=fpt if fpt is not None else 0.0,
        copy_missing_rows=copy,
    )


def _skip_segments(top: _Reader) -> tuple[int, ...]:
    raw = top.get("skipSegments")
    if raw is None:
        return ()
    if not isinstance(raw, list) or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in raw
    ):
        top.fail(
            "skipSegments", f"must be a list of segment numbers, got {_kind(raw)}", "write `[0, 2]`"
        )
    return tuple(sorted(set(raw)))


def parse(data: Any, path: str = "<memory>") -> Config:
    """Build a Config from already-loaded YAML data."""
    warnings: list[str] = []
    top = _Reader(path, "", data if data is not None else {}, warnings)
    s = top.child("source")
    t = top.child("target")
    if s is None:
        top.fail("source", "is missing", "add a `source:` section with `type: dynamodb`")
    if t is None:
        top.fail("target", "is missing", "add a `target:` section with `type: dynamodb`")
    source = _source(s)
    target = _target(t)
    savepoints = _savepoints(top)
    renames = _renames(top)
    validation = _validation(top)
    skip = _skip_segments(top)
    top.ignore("skipTokenRanges")
    top.ignore("skipParquetFiles")
    top.done()
    return Config(
        source=source,
        target=target,
        savepoints=savepoints,
        renames=renames,
        validation=validation,
        skip_segments=skip,
        path=path,
        warnings=tuple(warnings),
    )


def _read_text(p: Path) -> str:
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file; pass the path of your config with --config"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{p}: cannot read it ({e.strerror}); check the path and permissions"
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{p}: is over {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, too large for a config; "
            "pass the path of your YAML config with --config"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}: is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line}); "
            "save the config as UTF-8"
        ) from None


def load(path: str | Path) -> Config:
    """Read and check a config file; log one warning per accepted-and-ignored key."""
    p = Path(path)
    text = _read_text(p)
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"{p}: malformed YAML{where}: {problem}; fix the indentation or quoting there"
        ) from None
    cfg = parse(data, str(p))
    for w in cfg.warnings:
        log.warning(w)
    return cfg


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
