"""The one-step export (`snapshotFrom: export`): asking DynamoDB for an export to S3 of the
table (point-in-time recovery on, a client token so a restart gets the same export), and
waiting for it."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from ..aws.client import DynamoClient, DynamoError
from ..config import Config
from ..errors import ConfigError
from .export import (
    DEFAULT_PREFIX,
    ExportError,
    Manifest,
    MissingObject,
    read_manifest,
)

log = logging.getLogger(__name__)


def wanted(cfg: Config) -> bool:
    return cfg.source.s3_export is not None or cfg.source.snapshot_from == "export"


def describe(cfg: Config) -> dict[str, Any] | None:
    """For a `dynamodb-s3-export` source, the table as DescribeTable would show it (None for
    a live source, which is described by asking it)."""
    e = cfg.source.s3_export
    if e is None:
        return None
    if cfg.target.stream_changes:
        raise ConfigError(
            f"{cfg.path}: `target.streamChanges` is true, but an S3 export has no stream; set it "
            "to false, or migrate the live table (`source.type: dynamodb`, `snapshotFrom: export`)"
        )
    return e.table_description.describe(cfg.source.table)


def describe_export(source: DynamoClient, arn: str) -> dict[str, Any]:
    desc: dict[str, Any] = source.call("DescribeExport", {"ExportArn": arn})["ExportDescription"]
    return desc


def _ensure_pitr(source: DynamoClient, table: str) -> None:
    """An export needs point-in-time recovery; turn it on (as the stream is) when it is off."""
    cb = source.call("DescribeContinuousBackups", {"TableName": table})
    pitr = cb.get("ContinuousBackupsDescription", {}).get("PointInTimeRecoveryDescription", {})
    if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
        return
    log.info("Enabling point-in-time recovery on %r (an export needs it)", table)
    source.call(
        "UpdateContinuousBackups",
        {
            "TableName": table,
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def stream_created(source: DynamoClient, stream_arn: str) -> float | None:
    if ":kinesis:" in stream_arn:
        return None  # when a Kinesis destination began to carry changes is not recorded
    d = source.call("DescribeStream", {"StreamArn": stream_arn, "Limit": 1}, streams=True)
    t = d.get("StreamDescription", {}).get("CreationRequestDateTime")
    return float(t) if isinstance(t, int | float) else None


def check_named_export(
    desc: dict[str, Any], table_arn: str, stream_created: float | None, streamed: bool = True
) -> None:
    """Refuse an export the stream does not cover: the replay must start before the export's
    point in time, or changes between the two would be lost (without a stream to replay, any
    export of the table will do)."""
    arn = desc.get("ExportArn")
    if desc.get("TableArn") != table_arn:
        raise ExportError(
            f"export {arn} is of {desc.get('TableArn')}, not of {table_arn}; check `source.exportArn`"
        )
    at = desc.get("ExportTime") or desc.get("StartTime")
    if streamed:
        if not isinstance(at, int | float) or stream_created is None:
            raise ExportError(
                f"cannot tell whether export {arn} started after the stream was enabled (no "
                "export or stream time); remove `source.exportArn` to request a new export"
            )
        if float(at) < stream_created:
            raise ExportError(
                f"export {arn} is of a point in time before the stream was enabled, so changes "
                "in between would be lost; remove `source.exportArn` to request a new export"
            )
    if str(desc.get("ExportFormat") or "DYNAMODB_JSON").upper() != "DYNAMODB_JSON":
        raise ExportError(
            f"export {arn} is in {desc.get('ExportFormat')} format; only DYNAMODB_JSON is supported"
        )


def request_export(cfg: Config, source: DynamoClient, src: dict[str, Any], attempt: str) -> str:
    s = cfg.source
    assert s.export_bucket is not None
    _ensure_pitr(source, s.table)
    # Same migration, stream and attempt -> same token: DynamoDB answers a repeated request
    # (a crash before the savepoint recorded it) with the same export, not a second one.
    token = hashlib.sha256(f"{cfg.fingerprint()} {attempt}".encode()).hexdigest()[:36]
    req = {
        "TableArn": src["TableArn"],
        "S3Bucket": s.export_bucket,
        "S3Prefix": s.export_prefix or DEFAULT_PREFIX,
        "ExportFormat": "DYNAMODB_JSON",
        "ClientToken": token,
    }
    try:
        desc = source.call("ExportTableToPointInTime", req)["ExportDescription"]
    except DynamoError as e:
        raise ExportError(
            f"could not request an export of {s.table!r}: {e.code}: {e.message}"
        ) from None
    arn = str(desc["ExportArn"])
    log.info("Requested export %s to s3://%s/%s", arn, s.export_bucket, req["S3Prefix"])
    return arn


def wait_export(source: DynamoClient, arn: str, stop: threading.Event) -> dict[str, Any] | None:
    """Poll until the export is COMPLETED (its description) or ``stop`` is set (None)."""
    start = time.monotonic()
    pause = 0.5
    while True:
        desc = describe_export(source, arn)
        status = desc.get("ExportStatus")
        if status == "COMPLETED":
            log.info(
                "Export %s completed (%s items) after %.0fs",
                arn,
                desc.get("ItemCount", "?"),
                time.monotonic() - start,
            )
            return desc
        if status != "IN_PROGRESS":
            raise ExportError(
                f"export {arn} is {status} ({desc.get('FailureCode')}: {desc.get('FailureMessage')}); "
                "run again to request a new export"
            )
        log.info("Export %s in progress; waiting (%.0fs so far)", arn, time.monotonic() - start)
        if stop.wait(pause):
            return None
        pause = min(30.0, pause * 2)


def manifest_of(s3: Any, desc: dict[str, Any]) -> Manifest:
    """The export's manifest-summary.json: DescribeExport's ExportManifest, else its
    documented place, ``<prefix>/AWSDynamoDB/<export id>/manifest-summary.json``."""
    bucket = str(desc["S3Bucket"])
    prefix = str(desc.get("S3Prefix") or "").strip("/")
    export_id = str(desc["ExportArn"]).rsplit("/", 1)[-1]
    named = str(desc.get("ExportManifest") or "")
    candidates = [named, f"{prefix}/{named}"] if named else []
    candidates.append(f"{prefix}/AWSDynamoDB/{export_id}/manifest-summary.json".lstrip("/"))
    fix = (
        f"export {desc['ExportArn']} completed, but its manifest is not where DescribeExport and "
        "AWS's documented layout put it; was it moved or deleted?"
    )
    for key in candidates[:-1]:
        try:
            return read_manifest(s3, bucket, key, fix)
        except MissingObject:
            continue
    return read_manifest(s3, bucket, candidates[-1], fix)
