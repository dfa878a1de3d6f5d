"""Where the AWS APIs are: the region's public endpoints in its partition, or the URLs the
AWS SDKs' environment variables give."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..config import SourceConfig
from ..errors import EndpointError

# AWS partitions whose DNS suffix is not amazonaws.com (botocore's endpoints.json).
_PARTITION_SUFFIXES = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
)


def dns_suffix(region: str) -> str:
    """The DNS suffix of the region's partition (`amazonaws.com` for the commercial one)."""
    return next((s for p, s in _PARTITION_SUFFIXES if region.startswith(p)), "amazonaws.com")


def aws_endpoints(region: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The DynamoDB and Streams URLs with no `endpoint` configured: AWS_ENDPOINT_URL_DYNAMODB /
    AWS_ENDPOINT_URL_DYNAMODB_STREAMS, then AWS_ENDPOINT_URL (as the AWS SDKs read them), else
    the region's public endpoints in its partition."""
    env = dict(os.environ) if env is None else env
    suffix = dns_suffix(region)
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


def kinesis_url(side: SourceConfig, env: dict[str, str] | None = None) -> str:
    """Where the source's Kinesis API is: AWS_ENDPOINT_URL_KINESIS first; else the source's own
    `endpoint` (moto and LocalStack serve every service on one port); else AWS_ENDPOINT_URL or
    the region's public endpoint in its partition."""
    env = dict(os.environ) if env is None else env
    region = side.region or "us-east-1"
    suffix = dns_suffix(region)
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
