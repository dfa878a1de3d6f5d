"""AWS Signature Version 4 for the JSON protocol."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from urllib.parse import quote

from .api import DYNAMODB_API, JsonApi
from .credentials import FrozenCreds


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
        # Per request (a BatchWriteItem every ~25 records): formatted fields and a one-shot
        # HMAC, not strftime and hmac.new, which cost a few times more.
        amz_date = (
            f"{now.year:04d}{now.month:02d}{now.day:02d}"
            f"T{now.hour:02d}{now.minute:02d}{now.second:02d}Z"
        )
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
                path if path == "/" else canonical_path(path),
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
        key = self._signing_key(creds.secret_key, datestamp)
        sig = hmac.digest(key, to_sign.encode(), "sha256").hex()
        h["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={sig}"
        )
        return h


def canonical_path(path: str) -> str:
    """SigV4's canonical URI for services other than S3: the path, URI-encoded once more."""
    return quote(path, safe="/~")
