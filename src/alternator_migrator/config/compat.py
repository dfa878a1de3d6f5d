"""What becomes of each key of a Scylla Migrator DynamoDB / Alternator / S3-export config.

One table, used three ways: the parser takes the reasons of the ignored keys from it (the one
warning line), docs/scylla-migrator-users.md is generated from it, and a test feeds every key
to the parser to prove the table tells the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

HONOURED = "honoured"
MAPPED = "mapped"
IGNORED = "ignored"
REFUSED = "not supported yet"


@dataclass(frozen=True)
class KeyFate:
    key: str  # dotted path as written in their YAML; `[]` marks a list item
    fate: str  # one of the four above
    note: str  # the meaning here, what it maps to, or why it is ignored / refused


_ALT = "applied to the HTTP connections to Alternator (node discovery, pool, timeouts)"


def _alternator_rows(prefix: str, batch_note: str) -> list[KeyFate]:
    keys = [
        ("datacenter", "nodes of this datacenter only"),
        ("rack", "nodes of this rack only (needs `datacenter`)"),
        ("activeRefreshIntervalMs", "node-list refresh while busy"),
        ("idleRefreshIntervalMs", "node-list refresh while idle"),
        ("compression", "gzip request bodies"),
        ("optimizeHeaders", "send only the headers Alternator reads"),
        ("maxConnections", "connection pool size"),
        ("connectionMaxIdleTimeMs", "idle connections closed after this"),
        ("connectionTimeToLiveMs", "connections recycled after this"),
        ("connectionAcquisitionTimeoutMs", "wait for a pooled connection"),
        ("connectionTimeoutMs", "TCP connect timeout"),
    ]
    rows = [KeyFate(f"{prefix}.{k}", HONOURED, f"{n}; {_ALT}") for k, n in keys]
    rows.append(KeyFate(f"{prefix}.maxItemsPerBatch", *batch_note.split("|", 1)))
    return rows


# Reasons of the keys that are accepted and ignored, by dotted path (list items: no index).
IGNORED_REASONS: dict[str, str] = {
    "skipTokenRanges": "a Cassandra key (token ranges already copied); a DynamoDB scan is split "
    "by segments, see `skipSegments`",
    "skipParquetFiles": "a Parquet-source key",
    "savepoints.enableParquetFileTracking": "a Parquet-source key",
    "validation.compareTimestamps": "Cassandra WRITETIME/TTL comparison; DynamoDB items have none",
    "validation.ttlToleranceMillis": "Cassandra TTL comparison",
    "validation.writetimeToleranceMillis": "Cassandra WRITETIME comparison",
    "validation.timestampMsTolerance": "Cassandra timestamp columns",
    "validation.repairWritetimeStrategy": "the CQL write timestamp of repaired rows; DynamoDB "
    "writes carry none",
    "validation.hashColumns": "a MySQL-validation key",
    "validation.numericTypePolicy": "SQL/CQL numeric type widening; DynamoDB has one number "
    "type (see `floatingPointTolerance`)",
    "source.streamingLeaseDurationMs": "shard leases share a stream among workers; here one run "
    "holds the savepoint lock and reads every shard",
    "source.streamingEnableCloudWatchMetrics": "this tool publishes Prometheus metrics "
    "(`--metrics-port`) instead of CloudWatch",
    "source.streamApiCallTimeoutSeconds": "every Streams call uses the HTTP transport's timeouts "
    "and bounded retries",
    "source.streamApiCallAttemptTimeoutSeconds": "every Streams call uses the HTTP transport's "
    "timeouts and bounded retries",
    "source.streamingPollFutureTimeoutSeconds": "a slow shard read is waited for; a stop still "
    "ends the run within seconds",
    "source.alternator.maxItemsPerBatch": "batches are writes; a source is only read",
    "source.maxItemsPerBatch": "(type alternator) batches are writes; a source is only read",
    "target.scanSegments": "(version 1) the source's `scanSegments` splits the scan",
}


def _ignored(key: str) -> KeyFate:
    return KeyFate(key, IGNORED, IGNORED_REASONS[key])


_KEYS = "a key attribute of the exported table"
_PT = "of a provisioned target the migration creates"

THEIR_KEYS: tuple[KeyFate, ...] = (
    # ---- top level
    KeyFate("source", HONOURED, "the table to read"),
    KeyFate("target", HONOURED, "the table to write"),
    KeyFate("renames", HONOURED, "attribute renames in snapshot, replay and validate"),
    KeyFate("renames[].from", HONOURED, "source attribute name"),
    KeyFate("renames[].to", HONOURED, "target attribute name"),
    KeyFate(
        "skipSegments",
        HONOURED,
        "scan segments this run does not copy; never counted as copied: the snapshot stays "
        "incomplete (last line, `status`) until a run copies them (docs/runbook.md)",
    ),
    _ignored("skipTokenRanges"),
    _ignored("skipParquetFiles"),
    # ---- savepoints
    KeyFate("savepoints", HONOURED, "where and how often progress is saved"),
    KeyFate("savepoints.path", HONOURED, "directory of the savepoint file"),
    KeyFate("savepoints.intervalSeconds", HONOURED, "seconds between savepoint writes"),
    _ignored("savepoints.enableParquetFileTracking"),
    KeyFate(
        "savepoints.target",
        MAPPED,
        "`{type: filesystem, path}` is `savepoints.path`; `s3` and `gcs` are refused (exit 2)",
    ),
    # ---- validation
    KeyFate("validation", HONOURED, "settings of `validate`"),
    KeyFate("validation.failuresToFetch", HONOURED, "differences printed in detail"),
    KeyFate("validation.floatingPointTolerance", HONOURED, "numbers closer than this are equal"),
    KeyFate(
        "validation.copyMissingRows",
        HONOURED,
        "`validate` writes source items the target lacks (never overwrites a differing one); "
        "`migrate` runs the same pass right after the snapshot",
    ),
    _ignored("validation.compareTimestamps"),
    _ignored("validation.ttlToleranceMillis"),
    _ignored("validation.writetimeToleranceMillis"),
    _ignored("validation.timestampMsTolerance"),
    _ignored("validation.repairWritetimeStrategy"),
    _ignored("validation.hashColumns"),
    _ignored("validation.numericTypePolicy"),
    # ---- source (dynamodb / dynamo / alternator)
    KeyFate(
        "source.type",
        HONOURED,
        "`dynamodb`, `dynamo`, `alternator`, `dynamodb-s3-export` (snapshot only: no stream)",
    ),
    KeyFate("source.table", HONOURED, "table name"),
    KeyFate("source.region", HONOURED, "AWS region"),
    KeyFate("source.endpoint", HONOURED, "`{host, port}` of a non-AWS server"),
    KeyFate("source.endpoint.host", HONOURED, "host name or URL with scheme"),
    KeyFate("source.endpoint.port", HONOURED, "TCP port"),
    KeyFate("source.credentials", HONOURED, "static keys; absent: the AWS default chain"),
    KeyFate("source.credentials.accessKey", HONOURED, "never logged"),
    KeyFate("source.credentials.secretKey", HONOURED, "never logged"),
    KeyFate("source.credentials.assumeRole", HONOURED, "role assumed through STS"),
    KeyFate("source.credentials.assumeRole.arn", HONOURED, "role ARN"),
    KeyFate("source.credentials.assumeRole.sessionName", HONOURED, "role session name"),
    KeyFate("source.scanSegments", HONOURED, "parallel Scan segments"),
    KeyFate("source.readThroughput", HONOURED, "read budget, RCU/s"),
    KeyFate("source.throughputReadPercent", HONOURED, "share of the read budget"),
    KeyFate("source.maxMapTasks", HONOURED, "segments scanned at once"),
    KeyFate("source.removeConsumedCapacity", HONOURED, "Scan without ReturnConsumedCapacity"),
    KeyFate(
        "source.alternator",
        HONOURED,
        "the Alternator block (version 2.0 nesting); with `type: alternator` the same keys may "
        "also sit directly under `source`",
    ),
    *_alternator_rows(
        "source.alternator", f"{IGNORED}|{IGNORED_REASONS['source.alternator.maxItemsPerBatch']}"
    ),
    KeyFate(
        "source.streamingPollIntervalSeconds",
        HONOURED,
        "longest wait between polls of a stream with nothing new",
    ),
    KeyFate(
        "source.streamingMaxConsecutiveErrors",
        HONOURED,
        "failed stream reads in a row (each after its own retries) before the replay stops",
    ),
    KeyFate("source.streamingPollingPoolSize", HONOURED, "threads reading shards in parallel"),
    KeyFate("source.streamingMaxRecordsPerPoll", HONOURED, "GetRecords `Limit`, 1-1000"),
    KeyFate(
        "source.streamingMaxRecordsPerSecond",
        HONOURED,
        "replay rate cap, records/s over all shards",
    ),
    _ignored("source.maxItemsPerBatch"),
    _ignored("source.streamingLeaseDurationMs"),
    _ignored("source.streamingEnableCloudWatchMetrics"),
    _ignored("source.streamApiCallTimeoutSeconds"),
    _ignored("source.streamApiCallAttemptTimeoutSeconds"),
    _ignored("source.streamingPollFutureTimeoutSeconds"),
    # ---- source (dynamodb-s3-export): an export in AWS's layout, loaded once (docs/runbook.md)
    KeyFate("source.bucket", HONOURED, "S3 bucket of the export"),
    KeyFate("source.manifestKey", HONOURED, "key of the export's `manifest-summary.json`"),
    KeyFate("source.usePathStyleAccess", HONOURED, "path-style S3 addressing"),
    KeyFate("source.tableDescription", HONOURED, "the exported table's shape, for the target"),
    KeyFate("source.tableDescription.attributeDefinitions[].name", HONOURED, _KEYS),
    KeyFate("source.tableDescription.attributeDefinitions[].type", HONOURED, "`S`, `N` or `B`"),
    KeyFate("source.tableDescription.keySchema[].name", HONOURED, _KEYS),
    KeyFate("source.tableDescription.keySchema[].type", HONOURED, "`HASH` or `RANGE`"),
    KeyFate("source.tableDescription.billingMode", HONOURED, "of a target the migration creates"),
    KeyFate("source.tableDescription.provisionedThroughput.readCapacityUnits", HONOURED, _PT),
    KeyFate("source.tableDescription.provisionedThroughput.writeCapacityUnits", HONOURED, _PT),
    # ---- target
    KeyFate("target.type", HONOURED, "`dynamodb`, `dynamo` or `alternator`"),
    KeyFate("target.table", HONOURED, "table name"),
    KeyFate("target.region", HONOURED, "AWS region"),
    KeyFate("target.endpoint", HONOURED, "`{host, port}` of a non-AWS server"),
    KeyFate("target.endpoint.host", HONOURED, "host name or URL with scheme"),
    KeyFate("target.endpoint.port", HONOURED, "TCP port"),
    KeyFate("target.credentials", HONOURED, "as for the source"),
    KeyFate("target.credentials.accessKey", HONOURED, "never logged"),
    KeyFate("target.credentials.secretKey", HONOURED, "never logged"),
    KeyFate("target.credentials.assumeRole", HONOURED, "role assumed through STS"),
    KeyFate("target.credentials.assumeRole.arn", HONOURED, "role ARN"),
    KeyFate("target.credentials.assumeRole.sessionName", HONOURED, "role session name"),
    KeyFate("target.writeThroughput", HONOURED, "write budget, WCU/s, enforced on the client"),
    KeyFate("target.throughputWritePercent", HONOURED, "share of the write budget"),
    KeyFate(
        "target.streamChanges",
        HONOURED,
        "`true`, `false`, or a mapping: `{type: dynamodb-streams}` (also `dynamodb`, `ddb`) is "
        "`true`, `{type: disabled}` (also `none`, `off`) is `false`",
    ),
    KeyFate(
        "target.streamChanges.type",
        HONOURED,
        "`kinesis`: changes are read from the table's Kinesis streaming destination",
    ),
    KeyFate(
        "target.streamChanges.streamArn",
        HONOURED,
        "the Kinesis data stream; its streaming destination is enabled on the table if needed",
    ),
    KeyFate(
        "target.streamChanges.appName",
        MAPPED,
        "names the consumer's positions: kept per Kinesis shard in the savepoint, not in a "
        "KCL lease table",
    ),
    KeyFate("target.streamChanges.initialTimestamp", REFUSED, "Kinesis start position"),
    KeyFate("target.skipInitialSnapshotTransfer", HONOURED, "replay only, no snapshot"),
    KeyFate("target.removeConsumedCapacity", HONOURED, "writes without ReturnConsumedCapacity"),
    KeyFate("target.billingMode", HONOURED, "billing mode of a target table created here"),
    KeyFate("target.maxMapTasks", MAPPED, "number of writer threads of the snapshot (version 1)"),
    _ignored("target.scanSegments"),
    KeyFate(
        "target.alternator",
        HONOURED,
        "the Alternator block (version 2.0 nesting); with `type: alternator` the same keys may "
        "also sit directly under `target`",
    ),
    *_alternator_rows(
        "target.alternator",
        f"{HONOURED}|items per BatchWriteItem (wins over `target.maxItemsPerBatch`)",
    ),
)
