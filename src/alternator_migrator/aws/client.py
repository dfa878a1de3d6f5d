"""A lean DynamoDB / DynamoDB Streams JSON client: SigV4 + a minimal pooled HTTP/1.1 + orjson.

botocore parses every response into typed shapes and back, which costs about a core per
7k items/s; this client sends and returns the wire JSON as plain dicts, so items stay in
``{"S": ...}`` form from Scan to BatchWriteItem. boto3 is only used to resolve credentials
(default chain, assumed roles).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import orjson

from ..config import AlternatorSettings, SourceConfig, TargetConfig
from ..errors import EndpointError
from ..metrics import METRICS
from .api import (
    DYNAMODB_API,
    KINESIS_API,
    STREAMS,
    XML_CODE,
    XML_MESSAGE,
    DynamoError,
    JsonApi,
    NodeGone,
    retry_cause,
)
from .credentials import CredentialSource, FrozenCreds
from .endpoints import aws_endpoints, kinesis_url
from .nodes import AlternatorNodes, KeyAffinity, SingleNode
from .retry import Backoff
from .retry import RetryPolicy as RetryPolicy  # re-exported: callers build policies
from .signing import Signer
from .transport import (
    CertificateError,
    ChecksumError,
    ConnectError,
    HttpPool,
    Response,
    TransportError,
    post_many,
    proxy_for,
)

log = logging.getLogger(__name__)


__all__ = [  # re-exported: the client's callers name them from here
    "DYNAMODB_API",
    "CredentialSource",
    "DynamoError",
    "FrozenCreds",
    "JsonApi",
    "NodeGone",
    "aws_endpoints",
    "kinesis_url",
]

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
        self._signer = Signer(region, api)
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
        payload = self._compressed(payload)
        while True:
            if node is None:
                pool = router.pick()
            else:
                pool = node
                router.mark_busy()
            try:
                resp = pool.post(self._signed(op, streams, pool, payload), payload)
                break
            except (TransportError, OSError) as e:
                err, elsewhere = self._failure(op, router, pool, e)
                if elsewhere and node is None:
                    continue
                raise err from None
        return self._answer(op, pool, resp, parse)

    def call_many(
        self, op: str, count: int, payload: Callable[[int], bytes], in_flight: int
    ) -> list[dict[str, Any] | DynamoError]:
        """One attempt of each of ``count`` calls, up to ``in_flight`` on the wire at once, all
        from the calling thread (``post_many``). ``payload(i)`` makes call i's body just before
        it is sent, so it may wait (a write budget) and bodies are not all held at once. A
        failure comes back in its call's place, not retried: the caller retries it its own way.
        Not for calls pinned to a node (key affinity)."""
        router = self._router
        pools: list[HttpPool] = []

        def requests() -> Iterator[tuple[HttpPool, bytes]]:
            for i in range(count):
                body = self._compressed(payload(i))
                pool = router.pick()
                pools.append(pool)
                yield pool, pool.request(self._signed(op, False, pool, body), body)

        answers = post_many(requests(), in_flight)
        out: list[dict[str, Any] | DynamoError] = []
        for pool, answer in zip(pools, answers, strict=True):
            try:
                if isinstance(answer, TransportError):
                    raise self._failure(op, router, pool, answer)[0]
                out.append(self._answer(op, pool, answer, True))
            except DynamoError as e:
                e.endpoint = self.where
                out.append(e)
        return out

    def _compressed(self, payload: bytes) -> bytes:
        if not self._gzip:
            return payload
        # Alternator takes gzipped requests; the signature covers the bytes sent.
        gz = zlib.compressobj(1, zlib.DEFLATED, 31)
        return gz.compress(payload) + gz.flush()

    def _signed(self, op: str, streams: bool, pool: HttpPool, payload: bytes) -> dict[str, str]:
        target = f"{STREAMS if streams else self.api.target_prefix}.{op}"
        headers = self._signer.headers(
            pool.netloc, target, payload, self._creds.get(), dt.datetime.now(dt.UTC), pool.path
        )
        del headers["host"]  # signed, and sent by the transport itself
        if self._gzip:
            headers["content-encoding"] = "gzip"
        return headers

    def _failure(
        self, op: str, router: SingleNode | AlternatorNodes, pool: HttpPool, e: BaseException
    ) -> tuple[DynamoError, bool]:
        """What a failed exchange is to the caller, and whether the request may go to another
        node at once (it was never sent, and the node was dropped)."""
        if isinstance(e, CertificateError):
            return DynamoError(op, "CertificateError", str(e)), False
        lost = DynamoError(op, "ConnectionError", f"{pool.netloc}: {e}")
        if isinstance(e, ChecksumError):  # retryable, like a reset: the body is never used
            METRICS.inc("node_errors_total", endpoint=self.label, node=pool.netloc)
            return lost, False
        if isinstance(e, TransportError):
            METRICS.inc("node_errors_total", endpoint=self.label, node=pool.netloc)
            # A node that cannot be reached is dropped; a request never sent goes to the
            # next node at once, any other (maybe processed) through the caller's retry.
            return lost, router.failed(pool, str(e)) and isinstance(e, ConnectError)
        return lost, False  # anything the transport did not wrap: still one clear line

    def _answer(self, op: str, pool: HttpPool, resp: Response, parse: bool) -> Any:
        """A response's JSON object (or, unparsed, its body); an error response raised."""
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
                    "answered HTTP 200 with a body that is not a JSON object "
                    f"({bytes(data[:60])!r}); is this a DynamoDB-API endpoint? "
                    f"check `{self.label}.endpoint`",
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
            m = XML_CODE.search(data)
            if m:
                code = m.group(1).decode("utf-8", "replace")
                msg = XML_MESSAGE.search(data)
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
    ) -> bytes | bytearray:
        """As ``call``, with a successful answer's body returned as it came, for a caller that
        decodes it its own way (GetRecords pages: ``changes.records``)."""
        out: bytes | bytearray = self._retrying(
            op, orjson.dumps(body), streams, retry, None, None, False
        )
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
                    if not e.retryable or not backoff.retry(
                        retry_cause(e), f"{e.code}: {e.message}"
                    ):
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
