"""Enabling the source's DynamoDB Stream (or recognising the one this migration enabled)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..aws.client import DynamoClient, DynamoError
from ..aws.retry import wait
from ..errors import StreamError, StreamTrimmedError

log = logging.getLogger(__name__)

NEW_IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
# How far the source's clock may run behind ours when telling whether a stream was created
# after our 'enabling' marker.
CLOCK_SLACK_SECONDS = 5.0


def _stream_status(client: DynamoClient, arn: str) -> str:
    d = client.call("DescribeStream", {"StreamArn": arn, "Limit": 1}, streams=True)
    return str(d["StreamDescription"].get("StreamStatus", "UNKNOWN"))


def _existing_stream_error(table: str, arn: str | None) -> StreamError:
    return StreamError(
        f"source table {table!r} already has a stream ({arn}) that this migration did not enable. "
        "A stream keeps records for only 24 hours and we cannot tell which changes it has already "
        "dropped, so replaying it could silently lose writes. Disable the stream on the source "
        "(UpdateTable StreamSpecification StreamEnabled=false), wait until it is gone, and run again; "
        "the migration enables a fresh NEW_IMAGE stream before it copies anything"
    )


def _no_streams_error(client: DynamoClient, table: str, answer: str) -> StreamError:
    return StreamError(
        f"the source endpoint {client.url} does not support DynamoDB Streams (enabling a stream "
        f"on {table!r} answered {answer}); changes cannot be captured there: set "
        "`target.streamChanges: false` for a snapshot-only copy"
    )


def _created_since(client: DynamoClient, arn: str, since: float) -> bool:
    """True when the stream was created after ``since`` (our clock, minus a little slack)."""
    d = client.call("DescribeStream", {"StreamArn": arn, "Limit": 1}, streams=True)
    created = d["StreamDescription"].get("CreationRequestDateTime")
    return isinstance(created, int | float) and created >= since - CLOCK_SLACK_SECONDS


def ensure_stream(
    client: DynamoClient,
    src: dict[str, Any],
    our_arn: str | None,
    *,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] | None = None,
    enabling_since: float | None = None,
    before_enable: Callable[[], None] | None = None,
) -> str:
    """Enable a NEW_IMAGE stream on the source (or reuse the one this migration enabled).

    ``before_enable`` runs just before UpdateTable (the caller saves an 'enabling' marker);
    ``enabling_since`` is a marker left by an earlier run: a NEW_IMAGE stream created after it
    is that run's, which stopped before it could record the ARN."""
    if sleep is None:
        # The run's stop ends the wait for ENABLED (Interrupted); the 'enabling' marker lets
        # the next run recognise the stream as its own.
        def sleep(seconds: float) -> None:
            wait(client.stop, seconds, "waiting for the stream to be enabled")

    table = src["TableName"]
    spec = src.get("StreamSpecification") or {}
    arn = src.get("LatestStreamArn")
    if (
        our_arn is None
        and enabling_since is not None
        and spec.get("StreamEnabled")
        and spec.get("StreamViewType") in NEW_IMAGE_VIEWS
        and arn
        and _created_since(client, arn, enabling_since)
    ):
        log.info(
            "The stream %s was enabled by an earlier run of this migration that stopped before "
            "recording it; using it",
            arn,
        )
        our_arn = arn
    if our_arn is not None and not spec.get("StreamEnabled"):
        raise StreamTrimmedError(
            f"the stream this migration enabled on {table!r} ({our_arn}) is gone, so changes made "
            "since it was disabled are lost; start a new migration with a new snapshot (--fresh)"
        )
    if spec.get("StreamEnabled"):
        if our_arn is None or arn != our_arn:
            raise _existing_stream_error(table, arn)
        if spec.get("StreamViewType") not in NEW_IMAGE_VIEWS:
            raise StreamError(f"stream {arn} does not carry new images; disable it and run again")
        log.info("Resuming with the stream this migration enabled: %s", arn)
    else:
        log.info("Source is a Dynamo table and change streaming requested; enabling Dynamo Stream")
        lost_answers: list[DynamoError] = []
        if before_enable is not None:
            before_enable()

        def note(err: DynamoError, attempt: int) -> None:
            # A throttling answer means "not done"; a reset or a 5xx may hide a done.
            if err.code == "ConnectionError" or (err.status or 0) >= 500:
                lost_answers.append(err)

        try:
            resp = client.call(
                "UpdateTable",
                {
                    "TableName": table,
                    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
                },
                on_retry=note,
            )
            arn = resp["TableDescription"].get("LatestStreamArn")
        except DynamoError as e:
            # A concurrent enable: moto says ResourceInUseException, DynamoDB ValidationException.
            if e.code not in ("ResourceInUseException", "ValidationException"):
                raise
            d = client.call("DescribeTable", {"TableName": table})["Table"]
            dspec = d.get("StreamSpecification") or {}
            if not dspec.get("StreamEnabled") and not d.get("LatestStreamArn"):
                # Refused, yet no stream anywhere: not a concurrent enable (dynalite answers a
                # ValidationException because it does not know StreamSpecification at all).
                raise _no_streams_error(client, table, f"{e.code}: {e.message}") from None
            # After a lost answer (reset, timeout, 5xx) our own first attempt may have enabled
            # it: a NEW_IMAGE stream that appeared exactly then is ours.
            if not (
                lost_answers
                and dspec.get("StreamEnabled")
                and dspec.get("StreamViewType") in NEW_IMAGE_VIEWS
                and d.get("LatestStreamArn")
            ):
                raise _existing_stream_error(table, d.get("LatestStreamArn")) from None
            arn = d["LatestStreamArn"]
            log.info("Our stream enable was answered late; using the stream it created: %s", arn)
        if not arn:
            d = client.call("DescribeTable", {"TableName": table})["Table"]
            arn = d.get("LatestStreamArn")
        if not arn:
            raise _no_streams_error(client, table, "success, yet the table reports no stream")
    while True:
        status = _stream_status(client, arn)
        if status == "ENABLED":
            break
        if status in ("DISABLING", "DISABLED"):
            raise StreamError(f"stream {arn} is {status}; it cannot be read")
        log.info(
            "Stream not yet enabled (status %s); waiting for %d seconds and retrying",
            status,
            int(poll_seconds),
        )
        sleep(poll_seconds)
    log.info("Stream enabled successfully")
    return str(arn)
