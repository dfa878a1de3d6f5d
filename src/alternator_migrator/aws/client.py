"""A lean DynamoDB / DynamoDB Streams JSON client: SigV4 + a minimal pooled HTTP/1.1 + orjson.

botocore parses every response into typed shapes and back, which costs about a core per
7k items/s; this client sends and returns the wire JSON as plain dicts, so items stay in
``{"S": ...}`` form from Scan to BatchWriteItem. boto3 is only used to resolve credentials
(default chain, assumed roles).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from ..config import AlternatorSettings, AssumeRole, Credentials, SourceConfig, TargetConfig
from ..errors import EndpointError, MigratorError
from ..metrics import METRICS
from .nodes import AlternatorNodes, KeyAffinity, SingleNode
from .retry import Backoff
from .retry import RetryPolicy as RetryPolicy  # re-exported: callers build policies
from .transport import (
    CertificateError,
    ChecksumError,
    ConnectError,
    HttpPool,
    TransportError,
    proxy_for,
)

log = logging.getLogger(__name__)

DYNAMODB = "DynamoDB_20120810"
_XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")
STREAMS = "DynamoDBStreams_20120810"


@dataclass(frozen=True)
class JsonApi:
    """What tells one AWS JSON-protocol service from another on the wire."""

    target_prefix: str  # X-Amz-Target is "<prefix>.<operation>"
    service: str  # SigV4 signing name
    content_type: str


DYNAMODB_API = JsonApi(DYNAMODB, "dynamodb", "application/x-amz-json-1.0")
KINESIS_API = JsonApi("Kinesis_20131202", "kinesis", "application/x-amz-json-1.1")

# Error codes worth another try: capacity, server hiccups, and Alternator/DynamoDB overload.
_RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionInProgressException",
}
_THROTTLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
}
_AUTH_CODES = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDeniedException",
    "ExpiredTokenException",
    "IncompleteSignatureException",
}


class DynamoError(MigratorError):
    """An error answer from the server (or the network, with ``code`` 'ConnectionError').

    One that reaches the CLI means an endpoint we cannot use as it is: exit 2. ``endpoint``
    ("source endpoint http://...") is filled in by the client that raised it.
    """

    def __init__(
        self,
        op: str,
        code: str,
        message: str,
        status: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(op, code, message, status)
        self.op = op
        self.code = code
        self.message = message
        self.status = status
        self.endpoint = endpoint

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        return f"{where}{self.op}: {self.code}: {self.message}"

    @property
    def retryable(self) -> bool:
        if self.code in _RETRYABLE_CODES or self.code == "ConnectionError":
            return True
        return self.status is not None and self.status >= 500

    @property
    def is_auth(self) -> bool:
        return self.code in _AUTH_CODES or self.status == 403


class NodeGone(DynamoError):
    """A write pinned to one node failed and that node has left the live set: route it again."""


def _cause(err: DynamoError) -> str:
    if err.code == "ConnectionError":
        return "connection"
    if err.code in _THROTTLE_CODES:
        return "throttling"
    if err.status is not None and err.status >= 500:
        return "server_error"
    return "other"


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class FrozenCreds:
    access_key: str
    secret_key: str
    token: str | None


class CredentialSource:
    """Static keys, an assumed role, or the AWS default chain; refreshed when they expire."""

    def __init__(
        self,
        static: Credentials | None,
        role: AssumeRole | None,
        region: str | None,
        *,
        label: str = "source",
    ) -> None:
        self._static = static
        self._role = role
        self._region = region
        self._label = label  # which config section, for the fix in an error
        self._lock = threading.Lock()
        self._botocore: Any = None
        self._resolved = False

    def _resolve(self) -> Any:
        import boto3

        if self._static is not None:
            session = boto3.Session(
                aws_access_key_id=self._static.access_key,
                aws_secret_access_key=self._static.secret_key,
                aws_session_token=self._static.session_token,
                region_name=self._region or "us-east-1",
            )
        else:
            session = boto3.Session(region_name=self._region or "us-east-1")
        if self._role is None:
            return session.get_credentials()
        from botocore.credentials import RefreshableCredentials

        sts = session.client("sts")
        role = self._role

        def refresh() -> dict[str, str]:
            r = sts.assume_role(
                RoleArn=role.arn, RoleSessionName=role.session_name or "alternator-migrator"
            )["Credentials"]
            return {
                "access_key": r["AccessKeyId"],
                "secret_key": r["SecretAccessKey"],
                "token": r["SessionToken"],
                "expiry_time": r["Expiration"].isoformat(),
            }

        return RefreshableCredentials.create_from_metadata(
            metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
        )

    def get(self) -> FrozenCreds:
        if self._static is not None and self._role is None:
            s = self._static
            return FrozenCreds(s.access_key, s.secret_key, s.session_token)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with self._lock:
                if not self._resolved:
                    self._botocore = self._resolve()
                    self._resolved = True
            if self._botocore is None:
                raise EndpointError(
                    "no AWS credentials found (no `credentials` in the config and none in the "
                    "environment, profile or instance role); add `credentials: {accessKey, secretKey}`"
                )
            # An assumed role refreshes here, calling STS again when it is about to expire.
            f = self._botocore.get_frozen_credentials()
        except (BotoCoreError, ClientError) as e:
            raise self._credential_error(e) from None
        return FrozenCreds(f.access_key, f.secret_key, f.token)

    def _credential_error(self, e: Exception) -> EndpointError:
        where = f"{self._label}.credentials"
        if self._role is not None:
            return EndpointError(
                f"cannot assume role {self._role.arn} through STS ({type(e).__name__}: {e}); "
                f"check `{where}.assumeRole`, the base credentials and that STS is reachable"
            )
        return EndpointError(
            f"cannot get AWS credentials ({type(e).__name__}: {e}); check `{where}` "
            "or the AWS environment/profile"
        )


# --------------------------------------------------------------------------- SigV4


class _Signer:
    """AWS Signature Version 4 for the JSON protocol (POST to the endpoint's path, no query)."""

    def __init__(self, region: str, api: JsonApi = DYNAMODB_API) -> None:
        self.region = region
        self.service = api.service
        self.content_type = api.content_type
        self._key_cache: tuple[str, str, bytes] | None = None

    def _signing_key(self, secret: str, datestamp: str) -> bytes:
        cached = self._key_cache
        if cached is not None and cached[0] == secret and cached[1] == datestamp:
            return cached[2]
        k = hmac.new(("AWS4" + secret).encode(), datestamp.encode(), hashlib.sha256).digest()
        for part in (self.region, self.service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        self._key_cache = (secret, datestamp, k)
        return k

    def headers(
        self,
        host: str,
        target: str,
        body: bytes,
        creds: FrozenCreds,
        now: dt.datetime,
        path: str = "/",
    ) -> dict[str, str]:
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        datestamp = amz_date[:8]
        h = {
            "content-type": self.content_type,
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        if creds.token:
            h["x-amz-security-token"] = creds.token
        names = sorted(h)
        signed = ";".join(names)
        canonical = "\n".join(
            [
                "POST",
                path if path == "/" else _canonical_path(path),
                "",
                "".join(f"{n}:{h[n]}\n" for n in names),
                signed,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{datestamp}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        sig = hmac.new(
            self._signing_key(creds.secret_key, datestamp), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        h["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={sig}"
        )
        return h


def _canonical_path(path: str) -> str:
    """SigV4's canonical URI for services other than S3: the path, URI-encoded once more."""
    return quote(path, safe="/~")


# --------------------------------------------------------------------------- client


class DynamoClient:
    """One endpoint (DynamoDB API and, on the same host or a sibling, the Streams API)."""

    def __init__(
        self,
        url: str,
        region: str,
        creds: CredentialSource,
        *,
        streams_url: str | None = None,
        pool_size: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        label: str = "dynamodb",
        stop: threading.Event | None = None,
        ca_bundle: str | None = None,
        alternator: AlternatorSettings | None = None,
        api: JsonApi = DYNAMODB_API,
    ) -> None:
        self.url = url.rstrip("/")
        self.api = api
        # The run's stop event: it cuts retry pauses short (the call raises ``Interrupted``).
        self.stop = stop
        self.streams_url = (streams_url or url).rstrip("/")
        self.region = region
        self.label = label
        self.retry = retry or RetryPolicy()
        self._creds = creds
        self._signer = _Signer(region, api)
        alt = alternator or AlternatorSettings()
        self._gzip = bool(alt.compression)
        # The config's CA wins over AWS_CA_BUNDLE, as botocore's `verify` does.
        ca_bundle = ca_bundle or os.environ.get("AWS_CA_BUNDLE") or None

        def pool_for(url: str) -> HttpPool:
            def ms(v: int | None, default: float) -> float:
                return v / 1000 if v is not None else default

            try:
                return HttpPool(
                    url,
                    connect_timeout=ms(alt.connection_timeout_ms, connect_timeout),
                    read_timeout=read_timeout,
                    max_idle=alt.max_connections or pool_size,
                    max_connections=alt.max_connections,
                    acquire_timeout=ms(alt.connection_acquisition_timeout_ms, 10.0),
                    max_idle_time=ms(alt.connection_max_idle_time_ms, 0) or None,
                    time_to_live=ms(alt.connection_time_to_live_ms, 0) or None,
                    ca_bundle=ca_bundle,
                    proxy=proxy_for(url),
                )
            except (ssl.SSLError, OSError) as e:  # loading the CA bundle (https only)
                raise EndpointError(
                    f"{label} CA bundle {ca_bundle} cannot be used ({e}); fix "
                    f"`{label}.endpoint.caBundle` or AWS_CA_BUNDLE"
                ) from None

        self._router: SingleNode | AlternatorNodes = (
            AlternatorNodes(self.url, alt, pool_for, label)
            if alternator is not None
            else SingleNode(pool_for(self.url))
        )
        self._streams_router: SingleNode | AlternatorNodes = (
            self._router if self.streams_url == self.url else SingleNode(pool_for(self.streams_url))
        )
        self._closed = threading.Event()
        if stop is not None:
            threading.Thread(
                target=_cut_hung_calls_on_stop,
                args=(stop, self._closed, self._pools),
                name=f"{label}-stop-watch",
                daemon=True,
            ).start()

    @property
    def affinity(self) -> KeyAffinity[HttpPool] | None:
        """Key affinity for writes when the endpoint is a discovered Alternator cluster."""
        return self._router.write_affinity

    def discovered_nodes(self) -> int:
        """How many live nodes the endpoint has (1 without node discovery)."""
        r = self._router
        return len(r.live_nodes()) if isinstance(r, AlternatorNodes) else 1

    def _pools(self) -> list[HttpPool]:
        return self._router.pools() + self._streams_router.pools()

    def __repr__(self) -> str:
        return f"DynamoClient({self.label} {self.url})"

    @property
    def where(self) -> str:
        """'source endpoint http://host:port', for messages."""
        return f"{self.label} endpoint {self.url}"

    def __enter__(self) -> DynamoClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- one attempt
    def _send(
        self,
        op: str,
        payload: bytes,
        streams: bool,
        node: HttpPool | None = None,
        parse: bool = True,
    ) -> Any:
        router = self._streams_router if streams else self._router
        target = f"{STREAMS if streams else self.api.target_prefix}.{op}"
        if self._gzip:
            # Alternator takes gzipped requests; the signature covers the bytes sent.
            gz = zlib.compressobj(1, zlib.DEFLATED, 31)
            payload = gz.compress(payload) + gz.flush()
        while True:
            if node is None:
                pool = router.pick()
            else:
                pool = node
                router.mark_busy()
            headers = self._signer.headers(
                pool.netloc, target, payload, self._creds.get(), dt.datetime.now(dt.UTC), pool.path
            )
            del headers["host"]  # signed, and sent by the transport itself
            if self._gzip:
                headers["content-encoding"] = "gzip"
            try:
                resp = pool.post(headers, payload)
                break
            except CertificateError as e:
                raise DynamoError(op, "CertificateError", str(e)) from None
            except ChecksumError as e:  # retryable, like a reset: the body is never used
                METRICS.inc("node_errors_total", endpoint=self.label, node=pool.netloc)
                raise DynamoError(op, "ConnectionError", f"{pool.netloc}: {e}") from None
            except TransportError as e:
                METRICS.inc("node_errors_total", endpoint=self.label, node=pool.netloc)
                # A node that cannot be reached is dropped; a request never sent goes to the
                # next node at once, any other (maybe processed) through the caller's retry.
                if router.failed(pool, str(e)) and isinstance(e, ConnectError) and node is None:
                    continue
                raise DynamoError(op, "ConnectionError", f"{pool.netloc}: {e}") from None
            except OSError as e:  # anything the transport did not wrap: still one clear line
                raise DynamoError(op, "ConnectionError", f"{pool.netloc}: {e}") from None
        METRICS.inc("node_requests_total", endpoint=self.label, node=pool.netloc)
        data = resp.body
        if resp.status == 200 and not parse:
            return data
        if resp.status == 200:
            try:
                out = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                out = None
            if not isinstance(out, dict):
                # Not a DynamoDB API at all (a web server, a REST port): retrying cannot help.
                raise DynamoError(
                    op,
                    "InvalidResponse",
                    f"answered HTTP 200 with a body that is not a JSON object ({data[:60]!r}); "
                    f"is this a DynamoDB-API endpoint? check `{self.label}.endpoint`",
                    200,
                )
            return out
        code, message = "HTTP" + str(resp.status), data[:300].decode("utf-8", "replace")
        try:
            err = orjson.loads(data)
            code = str(err.get("__type", code)).rsplit("#", 1)[-1]
            message = str(err.get("message") or err.get("Message") or "")
        except (orjson.JSONDecodeError, AttributeError):
            # Some gateways (and moto's IAM check) answer in the query protocol's XML.
            m = _XML_CODE.search(data)
            if m:
                code = m.group(1).decode("utf-8", "replace")
                msg = _XML_MESSAGE.search(data)
                message = msg.group(1).decode("utf-8", "replace") if msg else message
        raise DynamoError(op, code, message, resp.status)

    def call(
        self,
        op: str,
        body: dict[str, Any],
        *,
        streams: bool = False,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[DynamoError, int], None] | None = None,
        node: HttpPool | None = None,
    ) -> dict[str, Any]:
        """Send one request; retry transient failures with jittered backoff, raise the rest."""
        return self.call_raw(
            op, orjson.dumps(body), streams=streams, retry=retry, on_retry=on_retry, node=node
        )

    def call_raw(
        self,
        op: str,
        payload: bytes,
        *,
        streams: bool = False,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[DynamoError, int], None] | None = None,
        node: HttpPool | None = None,
    ) -> dict[str, Any]:
        """``node``: send to this node only (a write under key affinity). When it leaves the
        live set the error is raised at once (``NodeGone``): the caller routes again."""
        out: dict[str, Any] = self._retrying(op, payload, streams, retry, on_retry, node, True)
        return out

    def call_bytes(
        self,
        op: str,
        body: dict[str, Any],
        *,
        streams: bool = False,
        retry: RetryPolicy | None = None,
    ) -> bytes:
        """As ``call``, with a successful answer's body returned as it came, for a caller that
        decodes it its own way (GetRecords pages: ``changes.records``)."""
        out: bytes = self._retrying(op, orjson.dumps(body), streams, retry, None, None, False)
        return out

    def _retrying(
        self,
        op: str,
        payload: bytes,
        streams: bool,
        retry: RetryPolicy | None,
        on_retry: Callable[[DynamoError, int], None] | None,
        node: HttpPool | None,
        parse: bool,
    ) -> Any:
        with Backoff(
            retry or self.retry, stop=self.stop, endpoint=self.label, url=self.url, op=op
        ) as backoff:
            while True:
                try:
                    return self._send(op, payload, streams, node, parse)
                except DynamoError as e:
                    e.endpoint = self.where
                    if node is not None and e.retryable and not self._router.is_live(node):
                        raise NodeGone(op, e.code, e.message, e.status, self.where) from None
                    if not e.retryable or not backoff.retry(_cause(e), f"{e.code}: {e.message}"):
                        raise
                    if on_retry is not None:
                        on_retry(e, backoff.attempt)

    def close(self) -> None:
        self._closed.set()
        self._router.close()
        self._streams_router.close()


# A call in flight when the run is asked to stop gets this long to finish (the batch in flight
# is finished, not cut); past it, a hung request is cut instead of waiting out its read timeout.
# Cutting is safe: an unacknowledged write is not in the savepoint, so a restart redoes it.
STOP_GRACE = 5.0


def _cut_hung_calls_on_stop(
    stop: threading.Event, closed: threading.Event, pools: Callable[[], list[HttpPool]]
) -> None:
    while not stop.wait(1.0):
        if closed.is_set():
            return
    if not closed.wait(STOP_GRACE):
        for pool in pools():
            pool.abort_busy()


# AWS partitions whose DNS suffix is not amazonaws.com (botocore's endpoints.json).
_PARTITION_SUFFIXES = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
)


def aws_endpoints(region: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The DynamoDB and Streams URLs with no `endpoint` configured: AWS_ENDPOINT_URL_DYNAMODB /
    AWS_ENDPOINT_URL_DYNAMODB_STREAMS, then AWS_ENDPOINT_URL (as the AWS SDKs read them), else
    the region's public endpoints in its partition."""
    env = dict(os.environ) if env is None else env
    suffix = next((s for p, s in _PARTITION_SUFFIXES if region.startswith(p)), "amazonaws.com")
    url = f"https://dynamodb.{region}.{suffix}"
    streams_url = f"https://streams.dynamodb.{region}.{suffix}"
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        generic = env.get("AWS_ENDPOINT_URL")
        url = env.get("AWS_ENDPOINT_URL_DYNAMODB") or generic or url
        streams_url = env.get("AWS_ENDPOINT_URL_DYNAMODB_STREAMS") or generic or streams_url
    for name, u in (
        ("AWS_ENDPOINT_URL_DYNAMODB", url),
        ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", streams_url),
    ):
        if urlsplit(u).scheme not in ("http", "https"):
            raise EndpointError(f"{name} (or AWS_ENDPOINT_URL) is {u!r}; give an http(s):// URL")
    return url, streams_url


def _client_for(
    side: SourceConfig | TargetConfig,
    label: str,
    pool_size: int,
    stop: threading.Event | None = None,
) -> DynamoClient:
    region = side.region or "us-east-1"
    ca_bundle = None
    if side.endpoint is not None:
        url = side.endpoint.url
        streams_url = url
        ca_bundle = side.endpoint.ca_bundle
    else:
        url, streams_url = aws_endpoints(region)
    # Node discovery for Alternator endpoints (an `alternator:` block, or `type: alternator`).
    alternator = side.alternator
    if alternator is None and side.type == "alternator" and side.endpoint is not None:
        alternator = AlternatorSettings()
    creds = CredentialSource(side.credentials, side.assume_role, region, label=label)
    return DynamoClient(
        url,
        region,
        creds,
        streams_url=streams_url,
        pool_size=pool_size,
        label=label,
        ca_bundle=ca_bundle,
        alternator=alternator,
        stop=stop,
    )


def kinesis_url(side: SourceConfig, env: dict[str, str] | None = None) -> str:
    """Where the source's Kinesis API is: AWS_ENDPOINT_URL_KINESIS first; else the source's own
    `endpoint` (moto and LocalStack serve every service on one port); else AWS_ENDPOINT_URL or
    the region's public endpoint in its partition."""
    env = dict(os.environ) if env is None else env
    region = side.region or "us-east-1"
    suffix = next((s for p, s in _PARTITION_SUFFIXES if region.startswith(p)), "amazonaws.com")
    url = f"https://kinesis.{region}.{suffix}"
    honour_env = env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true"
    if honour_env and env.get("AWS_ENDPOINT_URL_KINESIS"):
        url = env["AWS_ENDPOINT_URL_KINESIS"]
    elif side.endpoint is not None:
        url = side.endpoint.url
    elif honour_env and env.get("AWS_ENDPOINT_URL"):
        url = env["AWS_ENDPOINT_URL"]
    if urlsplit(url).scheme not in ("http", "https"):
        raise EndpointError(
            f"AWS_ENDPOINT_URL_KINESIS (or AWS_ENDPOINT_URL) is {url!r}; give an http(s):// URL"
        )
    return url


def kinesis_client(
    cfg: SourceConfig, pool_size: int = 8, stop: threading.Event | None = None
) -> DynamoClient:
    """A client of the source account's Kinesis Data Streams API (same credentials, region)."""
    region = cfg.region or "us-east-1"
    return DynamoClient(
        kinesis_url(cfg),
        region,
        CredentialSource(cfg.credentials, cfg.assume_role, region, label="source"),
        pool_size=pool_size,
        label="source kinesis",
        ca_bundle=cfg.endpoint.ca_bundle if cfg.endpoint is not None else None,
        stop=stop,
        api=KINESIS_API,
    )


def source_client(
    cfg: SourceConfig, pool_size: int = 16, stop: threading.Event | None = None
) -> DynamoClient:
    return _client_for(cfg, "source", pool_size, stop)


def target_client(
    cfg: TargetConfig, pool_size: int = 16, stop: threading.Event | None = None
) -> DynamoClient:
    return _client_for(cfg, "target", pool_size, stop)


PREFLIGHT = RetryPolicy(base=0.2, cap=3.0, max_attempts=8, deadline=25.0)


def preflight(client: DynamoClient, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """First call to an endpoint: turn 'unreachable' and 'bad credentials' into clear errors."""
    try:
        return client.call(op, body, retry=PREFLIGHT)
    except DynamoError as e:
        if e.code == "CertificateError":
            raise EndpointError(
                f"{client.label} endpoint {client.url}: {e.message}; give the CA that signed it "
                f"with `{client.label}.endpoint.caBundle` or AWS_CA_BUNDLE"
            ) from None
        if e.code == "ConnectionError":
            raise EndpointError(
                f"{client.label} endpoint {client.url} is unreachable ({e.message.split(': ', 1)[-1]}); "
                f"check `{client.label}.endpoint` host and port and that the server is running"
            ) from None
        if e.is_auth:
            raise EndpointError(
                f"{client.label} endpoint {client.url} rejected the credentials ({e.code}: "
                f"{e.message}); check `{client.label}.credentials` (or the AWS environment/profile)"
            ) from None
        raise
