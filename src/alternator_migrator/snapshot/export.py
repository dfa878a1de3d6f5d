"""Snapshots from a DynamoDB export to S3, in AWS's documented layout.

``manifest-summary.json`` names ``manifest-files.json``, which lists one JSON line per gzipped
data file; each data file holds one item per line, ``{"Item": {...}}`` in DynamoDB JSON (the
wire format, so items go to the target as they are). Data files are the snapshot's units: of
parallelism and of the savepoint. A file is streamed and decompressed line by line, never
held whole in memory, and its position is the number of lines acknowledged by the target.

Two ways in: a source of ``type: dynamodb-s3-export`` (an export made earlier, loaded once), and
a DynamoDB source with ``snapshotFrom: export`` (one step: the stream is enabled first, then the
export requested, waited for, loaded, and the stream replayed from its start). This module reads
S3; ``export_request`` asks DynamoDB for an export; ``pipeline.export_steps`` ties them to the
savepoint.

Every data file is checked against its manifest line as it streams: the MD5 of the object's
bytes as S3 sends them (``md5Checksum``, base64, is of the gzipped object: checked on the real
AWS export of the Scylla Migrator's tests) and the number of items (``itemCount``). A file that
does not match stops the run before it is recorded as done, so a partial upload or a swapped
object never loads as a complete snapshot. A file resumed mid-way is read again from its first
byte (one GET, as before: the lines already loaded are decompressed and counted, not parsed or
written again), because an MD5 can only be taken over the whole object.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..aws.client import CredentialSource
from ..config import SourceConfig
from ..errors import EndpointError, MigratorError
from ..metrics import METRICS
from ..state.savepoint import SnapshotOrigin

log = logging.getLogger(__name__)

PAGE_ITEMS = 1000  # items handed to the copier at a time (bounds memory per reader)
DEFAULT_PREFIX = "alternator-migrator"
FILE_ATTEMPTS = 5  # re-opens of one data file after a broken download


class ExportError(MigratorError):
    """An export that cannot be used (missing, failed, ION, too old for the stream)."""


class MissingObject(ExportError):
    """An S3 object (or its bucket) that does not exist."""


class ExportMismatch(ExportError):
    """A data file that is not what its manifest says (item count or MD5): damaged data, not a
    config mistake, so it fails the run like a write that failed for good."""

    exit_code = 1


@dataclass(frozen=True)
class DataFile:
    key: str
    item_count: int | None
    md5: str | None = None  # manifest-files.json's md5Checksum: base64 MD5 of the gzipped object


@dataclass(frozen=True)
class Manifest:
    bucket: str
    summary_key: str
    export_arn: str | None
    item_count: int | None
    files: tuple[DataFile, ...]


# --------------------------------------------------------------------------- S3


def s3_client(side: SourceConfig, path_style: bool) -> Any:
    """boto3's S3 client for the side's region, endpoint and credentials (default chain and
    assumed roles resolved as for DynamoDB)."""
    import boto3
    import botocore.session
    from botocore.config import Config as BotoConfig
    from botocore.credentials import CredentialProvider

    class _Given(CredentialProvider):  # type: ignore[misc]
        METHOD = "alternator-migrator"

        def __init__(self, creds: Any) -> None:
            super().__init__()
            self._creds = creds

        def load(self) -> Any:
            return self._creds

    region = side.region or "us-east-1"
    creds = CredentialSource(side.credentials, side.assume_role, region).botocore_credentials()
    if creds is None:
        raise EndpointError(
            "no AWS credentials found for S3 (no `source.credentials` and none in the "
            "environment, profile or instance role); add `credentials: {accessKey, secretKey}`"
        )
    # The same resolved, maybe self-refreshing (assumed role) credentials as the DynamoDB
    # client's, given to boto3 as the first provider of its chain (its public way in).
    bs = botocore.session.get_session()
    bs.get_component("credential_provider").insert_before("env", _Given(creds))
    session = boto3.Session(botocore_session=bs, region_name=region)
    style = "path" if path_style or side.endpoint is not None else "auto"
    return session.client(
        "s3",
        endpoint_url=side.endpoint.url if side.endpoint is not None else None,
        config=BotoConfig(
            s3={"addressing_style": style},
            retries={"max_attempts": 10, "mode": "standard"},
            max_pool_connections=32,
        ),
    )


def _get(s3: Any, bucket: str, key: str, what: str, fix: str) -> Any:
    """The streaming body of an object; a missing one is an operator error naming it."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            raise MissingObject(
                f"{what} s3://{bucket}/{key} does not exist ({code}); {fix}"
            ) from None
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            raise EndpointError(
                f"S3 refused to read s3://{bucket}/{key} ({code}); check `source.credentials` "
                "and the bucket's policy"
            ) from None
        raise
    except BotoCoreError as e:
        raise EndpointError(f"S3 is unreachable for s3://{bucket}/{key} ({e})") from None


_FIX = "check `source.bucket` and `source.manifestKey` (the export's manifest-summary.json)"


def read_manifest(s3: Any, bucket: str, summary_key: str, fix: str = _FIX) -> Manifest:
    try:
        return _read_manifest(s3, bucket, summary_key, fix)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ExportError(
            f"s3://{bucket}/{summary_key} or its file list is not a DynamoDB export manifest "
            f"({type(e).__name__}: {e}); {fix}"
        ) from None


def _read_manifest(s3: Any, bucket: str, summary_key: str, fix: str) -> Manifest:
    summary = orjson.loads(_get(s3, bucket, summary_key, "export manifest", fix).read())
    fmt = str(summary.get("outputFormat") or "DYNAMODB_JSON").upper()
    if fmt != "DYNAMODB_JSON":
        raise ExportError(
            f"export s3://{bucket}/{summary_key} is in {fmt} format, which is not supported; "
            "export the table again with ExportFormat DYNAMODB_JSON"
        )
    files_key = summary.get("manifestFilesS3Key")
    if not files_key:
        raise ExportError(
            f"s3://{bucket}/{summary_key} has no `manifestFilesS3Key`; is it a DynamoDB export's "
            f"manifest-summary.json? {fix}"
        )
    files: list[DataFile] = []
    body = _get(s3, bucket, str(files_key), "export file list", fix)
    for line in body.iter_lines():
        if line.strip():
            entry = orjson.loads(line)
            n, md5 = entry.get("itemCount"), entry.get("md5Checksum")
            files.append(
                DataFile(
                    str(entry["dataFileS3Key"]),
                    int(n) if n is not None else None,
                    str(md5) if md5 else None,
                )
            )
    unchecked = sum(1 for f in files if f.item_count is None or f.md5 is None)
    if unchecked:
        # AWS writes both for every file; a hand-made or third-party manifest may not.
        log.warning(
            "%d of %d data files in s3://%s/%s have no itemCount or md5Checksum: they are "
            "loaded without checking that they are whole",
            unchecked,
            len(files),
            bucket,
            files_key,
        )
    count = summary.get("itemCount")
    return Manifest(
        bucket,
        summary_key,
        summary.get("exportArn"),
        int(count) if count is not None else None,
        tuple(files),
    )


class _Hashed:
    """The object's bytes on their way to gzip: MD5 and size of exactly what S3 sent, taken
    as they stream (no second read)."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def read(self, n: int | None = -1) -> bytes:
        data: bytes = self.body.read(n) if n is not None and n >= 0 else self.body.read()
        self.md5.update(data)
        self.size += len(data)
        return data

    def seek(self, n: int) -> object:
        raise io.UnsupportedOperation("an S3 stream is read once, front to back")


def _md5_matches(expected: str, digest: bytes) -> bool:
    """AWS writes base64; a hex spelling (as some tools copy an ETag) is accepted too."""
    e = expected.strip()
    return e == base64.b64encode(digest).decode() or e.lower() == digest.hex()


def read_items(
    s3: Any, bucket: str, key: str, skip: int = 0, expect: DataFile | None = None
) -> Iterator[dict[str, Any]]:
    """The items of one data file, decompressed as they stream in, after ``skip`` lines.

    The whole object is always read (the lines before ``skip`` are counted, not parsed), and,
    after its last item, checked against ``expect``'s item count and MD5: a mismatch raises
    ``ExportMismatch`` before the caller can see the file's end."""
    body = _get(s3, bucket, key, "export data file", "was the export deleted or moved?")
    raw = _Hashed(body)
    items = 0
    with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        for n, line in enumerate(gz):
            blank = not line.strip()
            items += not blank
            if n < skip:
                continue
            if blank:
                yield {}
                continue
            try:
                item = orjson.loads(line)["Item"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise ExportError(
                    f"line {n + 1} of s3://{bucket}/{key} is not an item in DynamoDB JSON "
                    '(`{"Item": {...}}`); is this a DynamoDB export in DYNAMODB_JSON format?'
                ) from None
            if not isinstance(item, dict):
                raise ExportError(f"line {n + 1} of s3://{bucket}/{key}: `Item` is not a mapping")
            yield item
    while raw.read(1 << 16):  # whatever gzip left unread still belongs to the object's MD5
        pass
    if expect is not None:
        _verify(bucket, key, expect, items, raw)


def _verify(bucket: str, key: str, expect: DataFile, items: int, raw: _Hashed) -> None:
    wrong: list[str] = []
    if expect.item_count is not None and items != expect.item_count:
        wrong.append(f"{items} items, the manifest says {expect.item_count}")
    digest = raw.md5.digest()
    if expect.md5 is not None and not _md5_matches(expect.md5, digest):
        wrong.append(
            f"MD5 {base64.b64encode(digest).decode()} of its {raw.size} bytes, the manifest "
            f"says {expect.md5}"
        )
    if wrong:
        METRICS.inc("export_files_mismatched_total")
        raise ExportMismatch(
            f"data file s3://{bucket}/{key} does not match manifest-files.json: "
            f"{'; '.join(wrong)}. Not recorded as done. The export is damaged or incomplete "
            "(a partial upload, a replaced object): restore the file, or export the table again"
        )


class ExportSource:
    """The data files of one export as snapshot units (a ``snapshot.SnapshotSource``)."""

    kind = "data file"

    def __init__(self, s3: Any, manifest: Manifest, page_items: int = PAGE_ITEMS) -> None:
        self.s3 = s3
        self.manifest = manifest
        self.page_items = page_items
        self.origin = SnapshotOrigin.export(
            manifest.export_arn or f"s3://{manifest.bucket}/{manifest.summary_key}"
        )

    @property
    def units(self) -> int:
        return len(self.manifest.files)

    def pages(
        self, unit: int, start: Any, stop: threading.Event
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """(items, position) per page; the position is the number of lines done, None at the
        file's end, which comes only once the file matched its manifest (``read_items``). A
        download that breaks is read again from its first byte (the MD5 covers the whole
        object), handing out only the lines after those already handed out."""
        from botocore.exceptions import BotoCoreError

        f = self.manifest.files[unit]
        done = int(start or 0)
        attempt = 0
        while True:
            page: list[dict[str, Any]] = []
            lines = done
            try:
                for item in read_items(self.s3, self.manifest.bucket, f.key, done, f):
                    lines += 1
                    if item:  # a blank line moves the position, carries nothing
                        page.append(item)
                    if lines - done >= self.page_items:
                        done = lines
                        METRICS.inc("items_scanned_total", len(page))
                        yield page, done
                        page = []
                        if stop.is_set():
                            return
            except (OSError, EOFError, BotoCoreError) as e:
                attempt += 1
                if attempt >= FILE_ATTEMPTS:
                    raise ExportError(
                        f"reading s3://{self.manifest.bucket}/{f.key} failed {attempt} times "
                        f"({e}); a restart resumes this file from its last acknowledged line"
                    ) from None
                log.warning("S3 data file %s broke at line %d (%s); re-opening", f.key, lines, e)
                METRICS.inc("retries_total", cause="connection", endpoint="s3")
                if stop.wait(min(5.0, 0.2 * 2**attempt)):
                    return  # stopped: the unit stays unfinished, resumed next run
                continue
            METRICS.inc("items_scanned_total", len(page))
            yield page, None
            return
