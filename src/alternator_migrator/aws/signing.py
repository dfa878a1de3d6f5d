"""AWS Signature Version 4 for the JSON protocol."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from urllib.parse import quote

from .api import DYNAMODB_API, JsonApi
from .credentials import FrozenCreds

_SIGNED = "content-type;host;x-amz-date;x-amz-target"
_SIGNED_WITH_TOKEN = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"


class Signer:
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
        # Per request (a BatchWriteItem every ~25 records), so built as few strings as it can
        # be: formatted fields, the canonical request in one piece, a one-shot HMAC.
        amz_date = (
            f"{now.year:04d}{now.month:02d}{now.day:02d}"
            f"T{now.hour:02d}{now.minute:02d}{now.second:02d}Z"
        )
        datestamp = amz_date[:8]
        token = creds.token
        # The signed headers in their sorted order: content-type, host, x-amz-date,
        # x-amz-security-token (with a session token), x-amz-target.
        signed = _SIGNED_WITH_TOKEN if token else _SIGNED
        token_line = f"x-amz-security-token:{token}\n" if token else ""
        canonical = (
            f"POST\n{path if path == '/' else canonical_path(path)}\n\n"
            f"content-type:{self.content_type}\nhost:{host}\nx-amz-date:{amz_date}\n"
            f"{token_line}x-amz-target:{target}\n\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{datestamp}/{self.region}/{self.service}/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
        key = self._signing_key(creds.secret_key, datestamp)
        sig = hmac.digest(key, to_sign.encode(), "sha256").hex()
        h = {
            "content-type": self.content_type,
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        if token:
            h["x-amz-security-token"] = token
        h["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={sig}"
        )
        return h


def canonical_path(path: str) -> str:
    """SigV4's canonical URI for services other than S3: the path, URI-encoded once more."""
    return quote(path, safe="/~")
