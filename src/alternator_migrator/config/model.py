"""The config model: the Scylla Migrator's DynamoDB YAML as frozen dataclasses.

Each key is declared once, here, with its documentation. Secrets are kept out of ``repr`` so a
config can be logged safely.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError

log = logging.getLogger(__name__)

# Default read/write capacity the EMR DynamoDB connector (and hence the Scylla Migrator) assumes
# for an on-demand table, where DescribeTable reports no provisioned throughput.
ON_DEMAND_DEFAULT_CAPACITY = 40000
# ScyllaDB's default `alternator_streams_time_window_s`: how long Alternator Streams hold a
# record back before GetRecords shows it.
ALTERNATOR_STREAMS_WINDOW = 10.0


@dataclass(frozen=True)
class Check:
    """How a scalar key is read: its kind and range. The parser and the docs both use it."""

    kind: str  # "int", "float", "bool" or "str"
    minimum: float | None = None
    maximum: float | None = None


def Int(minimum: int, maximum: int | None = None) -> Check:
    return Check("int", minimum, maximum)


def Float(minimum: float, maximum: float) -> Check:
    return Check("float", minimum, maximum)


BOOL, STR = Check("bool"), Check("str")


def _doc(
    key: str,
    text: str,
    default: Any = None,
    *,
    shown: str | None = None,
    check: Check | None = None,
    local_only: bool = False,
    option: str | None = None,
    theirs: str | None = None,
    fate: str | None = None,
    **kw: Any,
) -> Any:
    """A dataclass field carrying its YAML key, documentation and how it is read.

    ``check``: a scalar read by the generic parser (``parse.declared``) with this kind and range.
    ``local_only``: the Spark engine does not apply it (it says so in one warning).
    ``option``: the Replayer keyword the key sets (``pipeline.replay.tuning``).
    ``theirs``: the key is the Scylla Migrator's too; its row in docs/scylla-migrator-users.md
    (``{side}`` is `source` or `target`), with ``fate`` (default: honoured; see ``compat``).
    """
    meta: dict[str, Any] = {"key": key, "doc": text, "default": shown, "check": check}
    if local_only:
        meta["local_only"] = True
    if option is not None:
        meta["option"] = option
    if theirs is not None:
        meta["theirs"] = theirs
        meta["fate"] = fate or "honoured"
    if "default_factory" in kw:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class Endpoint:
    host: str = _doc(
        "host",
        "Host name or URL; may carry the scheme (`http://scylla`). Without one, http is used (https for port 443).",
        "",
        theirs="host name or URL with scheme",
    )
    port: int | None = _doc(
        "port",
        "TCP port, 1-65535.",
        shown="the scheme's default",
        check=Int(1, 65535),
        theirs="TCP port",
    )
    ca_bundle: str | None = _doc(
        "caBundle",
        "PEM file of the CA(s) that sign this endpoint's TLS certificate (a private CA). Applies to https endpoints only.",
        shown="AWS_CA_BUNDLE, else the system's CAs",
        check=STR,
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
        "arn",
        "ARN of the IAM role to assume (through STS) with the base credentials.",
        "",
        theirs="role ARN",
    )
    session_name: str | None = _doc(
        "sessionName",
        "Role session name.",
        shown="alternator-migrator",
        check=STR,
        theirs="role session name",
    )


@dataclass(frozen=True)
class Credentials:
    access_key: str = _doc(
        "accessKey", "Access key id. Never logged or saved.", "", repr=False, theirs="never logged"
    )
    secret_key: str = _doc(
        "secretKey",
        "Secret access key. Never logged or saved.",
        "",
        repr=False,
        theirs="never logged",
    )
    session_token: str | None = _doc(
        "sessionToken", "Session token for temporary keys.", repr=False
    )
    assume_role: AssumeRole | None = _doc(
        "assumeRole",
        "Assume this role: `{arn, sessionName}`. Without static keys, the default chain's credentials assume it.",
        theirs="role assumed through STS",
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

    datacenter: str | None = _doc(
        "datacenter",
        "Use the Alternator nodes of this datacenter only.",
        check=STR,
        theirs="nodes of this datacenter only; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    rack: str | None = _doc(
        "rack",
        "Use the nodes of this rack only (needs `datacenter`).",
        check=STR,
        theirs="nodes of this rack only (needs `datacenter`); applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    active_refresh_interval_ms: int | None = _doc(
        "activeRefreshIntervalMs",
        "Node-list refresh interval while requests flow, ms.",
        check=Int(1),
        theirs="node-list refresh while busy; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    idle_refresh_interval_ms: int | None = _doc(
        "idleRefreshIntervalMs",
        "Node-list refresh interval while idle, ms.",
        check=Int(1),
        theirs="node-list refresh while idle; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    compression: bool | None = _doc(
        "compression",
        "Compress request bodies.",
        check=BOOL,
        theirs="gzip request bodies; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    optimize_headers: bool | None = _doc(
        "optimizeHeaders",
        "Send only the HTTP headers Alternator reads.",
        check=BOOL,
        theirs="send only the headers Alternator reads; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    max_connections: int | None = _doc(
        "maxConnections",
        "Connection pool size.",
        check=Int(1, 10_000),
        theirs="connection pool size; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    connection_max_idle_time_ms: int | None = _doc(
        "connectionMaxIdleTimeMs",
        "Close connections idle this long, ms.",
        check=Int(0),
        theirs="idle connections closed after this; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    connection_time_to_live_ms: int | None = _doc(
        "connectionTimeToLiveMs",
        "Recycle connections after this long, ms.",
        check=Int(0),
        theirs="connections recycled after this; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    connection_acquisition_timeout_ms: int | None = _doc(
        "connectionAcquisitionTimeoutMs",
        "Longest wait for a pooled connection, ms.",
        check=Int(0),
        theirs="wait for a pooled connection; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    connection_timeout_ms: int | None = _doc(
        "connectionTimeoutMs",
        "TCP connect timeout, ms.",
        check=Int(0),
        theirs="TCP connect timeout; applied to the HTTP connections to Alternator (node discovery, pool, timeouts)",
    )
    max_items_per_batch: int | None = _doc(
        "maxItemsPerBatch",
        "Items per BatchWriteItem on the target (wins over `target.maxItemsPerBatch`).",
    )

    clock_skew_guard_ms: int | None = _doc(
        "clockSkewGuardMs",
        "Our own key (target only). Every write of one item goes to one node (key affinity); when the node set changes, a key that moves to another node waits this long after the last write its old node took, so that clocks this far apart cannot reorder them. At least the nodes' worst clock disagreement (docs/runbook.md).",
        shown="1000",
        check=Int(0, 600_000),
    )


@dataclass(frozen=True)
class _Side:
    """The keys a source and a target share, written once for both."""

    table: str = _doc("table", "Table name. Required.", "", theirs="table name")
    type: str = _doc(
        "type",
        _TYPE_DOC,
        "dynamodb",
        theirs="`dynamodb`, `dynamo` or `alternator`; a source may also be `dynamodb-s3-export` (snapshot only: no stream). With `streamChanges`, an `alternator` source's changes are read from Alternator Streams (theirs refuses them; see `source.streamsSettleSeconds` and docs/runbook.md on the reverse run)",
    )
    region: str | None = _doc(
        "region",
        "AWS region. Required unless `endpoint` is set.",
        shown="us-east-1 with an endpoint",
        theirs="AWS region",
    )
    endpoint: Endpoint | None = _doc(
        "endpoint",
        "`{host, port}` of a non-AWS server (Alternator, a DynamoDB-compatible API).",
        shown="AWS",
        theirs="`{host, port}` of a non-AWS server",
    )
    credentials: Credentials | None = _doc(
        "credentials",
        "`{accessKey, secretKey, sessionToken, assumeRole}`. Absent: the AWS default chain (environment, profile, instance role).",
        shown="default chain",
        theirs="static keys; absent: the AWS default chain",
    )
    assume_role: AssumeRole | None = None
    remove_consumed_capacity: bool = _doc(
        "removeConsumedCapacity",
        "Do not ask for ConsumedCapacity (older Alternator versions reject it).",
        False,
        shown="true for type alternator, else false",
        theirs="requests without ReturnConsumedCapacity",
    )
    alternator: AlternatorSettings | None = _doc(
        "alternator",
        "Alternator client settings (node discovery, compression, connections). With `type: alternator` the same keys may also sit directly in this section.",
        shown="none",
        theirs="the Alternator block (version 2.0 nesting); with `type: alternator` the same keys may also sit directly under `{side}`",
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
        check=Int(1, 1_000_000),
        theirs="parallel Scan segments",
    )
    read_throughput: int | None = _doc(
        "readThroughput",
        "Read capacity units per second the migration may use on the source (scan and validate).",
        shown="the table's provisioned RCU; 40000 when on-demand or Alternator",
        check=Int(1),
        theirs="read budget, RCU/s",
    )
    throughput_read_percent: float | None = _doc(
        "throughputReadPercent",
        "Share of `readThroughput` to use, 0.1-1.5.",
        shown="0.5",
        check=Float(0.1, 1.5),
        theirs="share of the read budget",
    )
    max_map_tasks: int | None = _doc(
        "maxMapTasks",
        "Segments scanned at once (threads locally, concurrent tasks on Spark).",
        shown="min(scanSegments, 8)",
        check=Int(1, 10_000),
        theirs="segments scanned at once",
    )
    streaming_poll_interval_seconds: float | None = _doc(
        "streamingPollIntervalSeconds",
        "Longest wait between two polls of a stream that has nothing new, seconds.",
        shown="0.5",
        check=Float(0.01, 3600),
        local_only=True,
        option="max_idle_sleep",
        theirs="longest wait between polls of a stream with nothing new",
    )
    streaming_max_consecutive_errors: int | None = _doc(
        "streamingMaxConsecutiveErrors",
        "Stream reads that may fail in a row (each after its own retries) before the replay stops; a trimmed stream always stops it.",
        shown="1",
        check=Int(1, 1_000_000),
        local_only=True,
        option="max_consecutive_errors",
        theirs="failed stream reads in a row (each after its own retries) before the replay stops",
    )
    streaming_polling_pool_size: int | None = _doc(
        "streamingPollingPoolSize",
        "Threads that read shards in parallel; also the replay's BatchWriteItem requests in "
        "flight at once.",
        shown="8",
        check=Int(1, 256),
        local_only=True,
        option="parallel_reads",
        theirs="threads reading shards in parallel",
    )
    streaming_max_records_per_poll: int | None = _doc(
        "streamingMaxRecordsPerPoll",
        "GetRecords `Limit`, 1-1000.",
        shown="1000",
        check=Int(1, 1000),
        local_only=True,
        option="records_per_poll",
        theirs="GetRecords `Limit`, 1-1000",
    )
    streaming_max_records_per_second: int | None = _doc(
        "streamingMaxRecordsPerSecond",
        "Cap on stream records applied per second, over all shards.",
        shown="unlimited",
        check=Int(1),
        local_only=True,
        option="records_per_second",
        theirs="replay rate cap, records/s over all shards",
    )
    streams_settle_seconds: float | None = _doc(
        "streamsSettleSeconds",
        "How long after a write the source's stream may show it, seconds. Alternator Streams hold records back for `alternator_streams_time_window_s` (10 by default), so an empty read proves nothing about the last window: the replay, `status` and `cutover` call the stream caught up only once it has stayed quiet for this long after that. Set it to the cluster's `alternator_streams_time_window_s`.",
        shown="10 for type alternator, else 0",
        check=Float(0, 3600),
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
    tables_matching: str | None = _doc(
        "tablesMatching",
        "Migrate every source table whose name matches this glob (`orders-*`); with `tablesTagged`, tables must match both.",
        check=STR,
    )
    tables_tagged: tuple[tuple[str, str], ...] = _doc(
        "tablesTagged",
        "Migrate every source table carrying all these tags (`{team: payments}`), found with ListTables and ListTagsOfResource.",
        (),
        shown="none",
    )
    s3_export: S3Export | None = None  # `type: dynamodb-s3-export`

    @property
    def settle_seconds(self) -> float:
        """`streamsSettleSeconds`, or its default for this source type."""
        if self.streams_settle_seconds is not None:
            return self.streams_settle_seconds
        return ALTERNATOR_STREAMS_WINDOW if self.type == "alternator" else 0.0


@dataclass(frozen=True)
class TargetConfig(_Side):
    stream_changes: bool = _doc(
        "streamChanges",
        "Enable a NEW_IMAGE stream on the source before the snapshot and replay it afterwards, until stopped. Also a mapping: `{type: dynamodb-streams}` is true, `{type: disabled}` false, `{type: kinesis, streamArn: ARN}` reads the changes from the table's Kinesis streaming destination (enabled if needed; see docs/runbook.md).",
        False,
        theirs="`true`, `false`, or a mapping: `{type: dynamodb-streams}` (also `dynamodb`, `ddb`) is `true`, `{type: disabled}` (also `none`, `off`) is `false`",
    )
    skip_initial_snapshot_transfer: bool = _doc(
        "skipInitialSnapshotTransfer",
        "Do not copy the snapshot; only replay the stream.",
        False,
        check=BOOL,
        theirs="replay only, no snapshot",
    )
    write_throughput: int | None = _doc(
        "writeThroughput",
        "Write capacity units per second the migration may use on the target. Enforced on the client, so it also holds for Alternator, which reports no consumed capacity.",
        shown="the table's provisioned WCU; 40000 when on-demand or Alternator",
        check=Int(1),
        theirs="write budget, WCU/s, enforced on the client",
    )
    throughput_write_percent: float | None = _doc(
        "throughputWritePercent",
        "Share of `writeThroughput` to use, 0.1-1.5.",
        shown="0.5",
        check=Float(0.1, 1.5),
        theirs="share of the write budget",
    )
    billing_mode: str | None = _doc(
        "billingMode",
        "`PROVISIONED` or `PAY_PER_REQUEST` for a target table the migration creates.",
        shown="the source's",
        theirs="billing mode of a target table created here",
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
        check=Int(1, 256),
        theirs="number of writer threads of the snapshot (version 1)",
        fate="mapped",
    )
    total_write_throughput: int | None = _doc(
        "totalWriteThroughput",
        "A multi-table run's cap on the write units per second of all its tables together (each table keeps its own budget too).",
        shown="none",
        check=Int(1),
    )
    kinesis: KinesisStream | None = None  # `streamChanges: {type: kinesis}`: changes from Kinesis


@dataclass(frozen=True)
class Savepoints:
    path: str = _doc(
        "path",
        "Directory of the savepoint file (one file per migration, mode 0600).",
        "./savepoints",
        theirs="directory of the savepoint file",
    )
    interval_seconds: float = _doc(
        "intervalSeconds",
        "Seconds between savepoint writes (also written on stop).",
        300.0,
        check=Float(0.1, 86400),
        theirs="seconds between savepoint writes",
    )


@dataclass(frozen=True)
class Rename:
    from_: str = _doc("from", "Attribute name on the source.", "", theirs="source attribute name")
    to: str = _doc("to", "Attribute name on the target.", "", theirs="target attribute name")


@dataclass(frozen=True)
class Validation:
    failures_to_fetch: int = _doc(
        "failuresToFetch",
        "How many differences `validate` prints in detail.",
        100,
        check=Int(0),
        theirs="differences printed in detail",
    )
    floating_point_tolerance: float = _doc(
        "floatingPointTolerance",
        "Numbers closer than this compare equal in `validate`.",
        0.0,
        check=Float(0.0, 1e300),
        theirs="numbers closer than this are equal",
    )
    copy_missing_rows: bool = _doc(
        "copyMissingRows",
        "`validate` writes the source items the target lacks (differing items are only reported); `migrate` runs that pass right after its snapshot.",
        False,
        check=BOOL,
        theirs="`validate` writes source items the target lacks (never overwrites a differing one); `migrate` runs the same pass right after the snapshot",
    )


@dataclass(frozen=True)
class TableEntry:
    """One table of a multi-table run (`tables:`): a name, or a mapping with overrides."""

    source: str = _doc("source", "Source table name (a plain list item sets both names).", "")
    target: str = _doc("target", "Target table name.", shown="the source's name")
    renames: tuple[Rename, ...] | None = _doc(
        "renames", "This table's attribute renames (instead of the top-level `renames`)."
    )
    scan_segments: int | None = _doc(
        "scanSegments", "This table's `source.scanSegments`.", check=Int(1, 1_000_000)
    )
    skip_segments: tuple[int, ...] | None = _doc("skipSegments", "This table's `skipSegments`.")
    stream_changes: bool | None = _doc(
        "streamChanges", "This table's `target.streamChanges` (true or false).", check=BOOL
    )
    skip_initial_snapshot_transfer: bool | None = _doc(
        "skipInitialSnapshotTransfer",
        "This table's `target.skipInitialSnapshotTransfer`.",
        check=BOOL,
    )
    read_throughput: int | None = _doc(
        "readThroughput", "This table's `source.readThroughput`.", check=Int(1)
    )
    write_throughput: int | None = _doc(
        "writeThroughput", "This table's `target.writeThroughput`.", check=Int(1)
    )


@dataclass(frozen=True)
class Config:
    source: SourceConfig = _doc(
        "source", "The table to migrate from.", shown="required", theirs="the table to read"
    )
    target: TargetConfig = _doc(
        "target", "The table to migrate to.", shown="required", theirs="the table to write"
    )
    savepoints: Savepoints = _doc(
        "savepoints",
        "Where and how often progress is saved.",
        default_factory=Savepoints,
        theirs="where and how often progress is saved",
    )
    renames: tuple[Rename, ...] = _doc(
        "renames",
        "Attribute renames `[{from, to}]`, applied in snapshot, replay and validate.",
        (),
        theirs="attribute renames in snapshot, replay and validate",
    )
    validation: Validation = _doc(
        "validation",
        "Settings of `validate`. Keys of the Scylla Migrator that concern other databases are accepted and ignored with a warning (docs/scylla-migrator-users.md).",
        default_factory=Validation,
        theirs="settings of `validate`",
    )
    skip_segments: tuple[int, ...] = _doc(
        "skipSegments",
        "Scan segments this run does not copy, numbered from 0 below the segment count. They are not done: the snapshot stays incomplete until a run copies them (the savepoint records the segments copied).",
        (),
        theirs="scan segments this run does not copy; never counted as copied: the snapshot stays incomplete (last line, `status`) until a run copies them (docs/runbook.md)",
    )
    tables: tuple[TableEntry, ...] = _doc(
        "tables",
        "Several tables in one run: each item a table name (same on both sides) or `{source, target, ...}` with per-table overrides. Everything else in `source`/`target` applies to every table; `source.table`/`target.table` are then left out. See docs/runbook.md (migrating an estate).",
        (),
        shown="one table: `source.table`",
    )
    max_tables_in_parallel: int = _doc(
        "maxTablesInParallel",
        "Tables whose snapshots are copied at once in a multi-table run (their replays all run together).",
        2,
        check=Int(1, 1000),
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

    @property
    def many_tables(self) -> bool:
        """A multi-table run: a `tables:` list or discovery by name pattern or tags."""
        return bool(self.tables or self.source.tables_matching or self.source.tables_tagged)


def require_supported(cfg: Config, *, streaming: bool = True) -> None:
    """Refuse what is parsed but not built yet (exit 2), before anything is touched."""
    kinesis = cfg.target.kinesis
    if cfg.many_tables and kinesis is not None:
        raise ConfigError(
            f"{cfg.path}: `target.streamChanges: {{type: kinesis}}` names one Kinesis stream, "
            "but the config lists several tables; give each table its own config for now"
        )
    if streaming and kinesis is not None and kinesis.initial_timestamp is not None:
        # Starting later than the stream's oldest record could skip changes the snapshot
        # missed; reading from the oldest record is always exact.
        raise ConfigError(
            f"{cfg.path}: `target.streamChanges.initialTimestamp` is not supported yet; "
            "remove it: the replay reads the Kinesis stream from its oldest record, and changes "
            "older than the snapshot are superseded by newer ones"
        )


def options_given(section: Any) -> dict[str, Any]:
    """The component keywords that the keys given in ``section`` set (their ``option``)."""
    return {
        f.metadata["option"]: getattr(section, f.name)
        for f in fields(section)
        if "option" in f.metadata and getattr(section, f.name) is not None
    }


def local_only_given(section: Any) -> list[str]:
    """The YAML keys given in ``section`` that only the local engine applies."""
    return [
        f.metadata["key"]
        for f in fields(section)
        if f.metadata.get("local_only") and getattr(section, f.name) is not None
    ]


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
