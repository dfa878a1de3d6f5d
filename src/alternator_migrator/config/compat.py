"""What becomes of each key of a Scylla Migrator DynamoDB / Alternator / S3-export config.

One table, used three ways: the parser takes the reasons of the ignored keys from it (the one
warning line), docs/scylla-migrator-users.md is generated from it, and a test feeds every key
to the parser to prove the table tells the truth. A key that is a field of our model carries
its row in the field itself (``theirs``); only the others are written here.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from . import model

HONOURED = "honoured"
MAPPED = "mapped"
IGNORED = "ignored"
REFUSED = "not supported yet"


@dataclass(frozen=True)
class KeyFate:
    key: str  # dotted path as written in their YAML; `[]` marks a list item
    fate: str  # one of the four above
    note: str  # the meaning here, what it maps to, or why it is ignored / refused


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

# Their keys that are not fields of our model (or differ by side): written here, once.
_OTHER_ROWS: tuple[KeyFate, ...] = (
    _ignored("skipTokenRanges"),
    _ignored("skipParquetFiles"),
    _ignored("savepoints.enableParquetFileTracking"),
    KeyFate(
        "savepoints.target",
        MAPPED,
        "`{type: filesystem, path}` is `savepoints.path`; `s3` and `gcs` are refused (exit 2)",
    ),
    _ignored("validation.compareTimestamps"),
    _ignored("validation.ttlToleranceMillis"),
    _ignored("validation.writetimeToleranceMillis"),
    _ignored("validation.timestampMsTolerance"),
    _ignored("validation.repairWritetimeStrategy"),
    _ignored("validation.hashColumns"),
    _ignored("validation.numericTypePolicy"),
    _ignored("source.alternator.maxItemsPerBatch"),
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
    _ignored("target.scanSegments"),
    KeyFate(
        "target.alternator.maxItemsPerBatch",
        HONOURED,
        "items per BatchWriteItem (wins over `target.maxItemsPerBatch`)",
    ),
)


def _model_rows() -> list[KeyFate]:
    """The rows of their keys that our model declares (``theirs`` in a field's metadata)."""
    rows: list[KeyFate] = []

    def walk(cls: type, prefix: str, side: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f.metadata.get("key")
            if key is None:
                continue
            path = f"{prefix}{key}"
            if "theirs" not in f.metadata:
                continue  # our own key (and what is under it)
            note = f.metadata["theirs"].replace("{side}", side or key)
            rows.append(KeyFate(path, f.metadata["fate"], note))
            tp = hints[f.name]
            many = typing.get_origin(tp) is tuple
            for arg in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                    walk(arg, f"{path}{'[]' if many else ''}.", side or key)

    walk(model.Config, "", "")
    return rows


_SECTIONS = ("", "savepoints", "validation", "source", "target")


def _section(row: KeyFate) -> int:
    head = row.key.split(".", 1)[0].split("[", 1)[0] if "." in row.key else ""
    return _SECTIONS.index(head) if head in _SECTIONS else 0


# Every key of theirs, by section (model rows first, then the others): one row each.
THEIR_KEYS: tuple[KeyFate, ...] = tuple(sorted((*_model_rows(), *_OTHER_ROWS), key=_section))
