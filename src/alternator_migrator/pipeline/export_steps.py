"""The export snapshot's savepoint steps: which export this migration loads (asked for,
named, or resumed from the savepoint), recorded before it is loaded, so a restart resumes it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..aws.client import DynamoClient
from ..config import Config
from ..errors import ConfigError, SavepointError
from ..snapshot.export import ExportError, ExportSource, read_manifest, s3_client
from ..snapshot.export_request import (
    check_named_export,
    describe_export,
    manifest_of,
    request_export,
    stream_created,
    wait_export,
)
from ..state.savepoint import Origin, Savepoint, SavepointStore, SnapshotOrigin

log = logging.getLogger(__name__)


def _check_units(sp: Savepoint, source: ExportSource) -> None:
    if sp.total_segments is not None and sp.total_segments != source.units:
        raise SavepointError(
            f"the savepoint records {sp.total_segments} units, the export has {source.units} "
            "data files; run with --fresh to copy it again"
        )


def _live_export(
    cfg: Config,
    source: DynamoClient,
    src: dict[str, Any],
    store: SavepointStore,
    sp: Savepoint,
    stop: threading.Event,
) -> ExportSource | None:
    """One-step mode: the export this migration requested (or was given), once completed."""
    s = cfg.source
    prev = sp.snapshot_origin
    if prev.kind is Origin.SCAN and sp.total_segments is not None:
        raise SavepointError(
            f"savepoint {store.file} records a Scan snapshot in progress, but the config asks "
            "for an export (`snapshotFrom: export`); run with --fresh to start over"
        )
    if prev.kind is Origin.EXPORT:
        arn = prev.ref
        log.info("Resuming with export %s (from the savepoint)", arn)
    elif s.export_arn is not None:
        arn = s.export_arn
        check_named_export(
            describe_export(source, arn),
            src["TableArn"],
            stream_created(source, sp.stream_arn) if sp.stream_arn else None,
            streamed=cfg.target.stream_changes,
        )
    else:
        # The attempt as earlier versions spelled it ("None" for none yet): same token.
        arn = request_export(cfg, source, src, f"{sp.stream_arn} {prev.to_wire()}")
    origin = SnapshotOrigin.export(arn)
    sp.set_origin(origin)
    store.save(sp)
    try:
        desc = wait_export(source, arn, stop)
    except ExportError:
        # Not resumed; the failed ARN also changes the next request's client token, so
        # DynamoDB starts a new export rather than answering with this one.
        sp.set_origin(origin.failed())
        store.save(sp)
        raise
    if desc is None:
        return None
    s3 = s3_client(s, False)
    exp = ExportSource(s3, manifest_of(s3, desc))
    exp.origin = origin
    return exp


def snapshot_source(
    cfg: Config,
    source: DynamoClient,
    src: dict[str, Any],
    store: SavepointStore,
    sp: Savepoint,
    stop: threading.Event,
) -> ExportSource | None:
    """The export to take the snapshot from, ready to load; None when ``stop`` was set while
    waiting for it. Records which export it is in the savepoint, so a restart resumes it."""
    s = cfg.source
    if cfg.skip_segments:
        raise ConfigError(
            f"{cfg.path}: `skipSegments` numbers Scan segments, and this snapshot is loaded from "
            "an export; remove it"
        )
    if s.s3_export is not None:
        e = s.s3_export
        s3 = s3_client(s, bool(e.use_path_style_access))
        exp = ExportSource(s3, read_manifest(s3, e.bucket, e.manifest_key))
        if exp.manifest.item_count is not None:
            src["ItemCount"] = exp.manifest.item_count  # the progress bar's estimate
    else:
        live = _live_export(cfg, source, src, store, sp, stop)
        if live is None:
            return None
        exp = live
    saved = sp.snapshot_origin
    if saved.kind is not Origin.SCAN and saved != exp.origin:
        # an s3-export savepoint of another export
        raise SavepointError(
            f"savepoint {store.file} belongs to {saved}, not {exp.origin}; "
            "run with --fresh to copy the new one"
        )
    _check_units(sp, exp)
    sp.set_origin(exp.origin)
    log.info(
        "Snapshot from %s: %d data files, %s items",
        exp.origin,
        exp.units,
        exp.manifest.item_count if exp.manifest.item_count is not None else "?",
    )
    return exp
