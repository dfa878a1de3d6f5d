"""The AWS JSON protocol as this client speaks it: which service a request is for, and the
error an answer (or the network) gives, with what is worth another try."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import MigratorError

DYNAMODB = "DynamoDB_20120810"
XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
XML_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")
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


def retry_cause(err: DynamoError) -> str:
    """The cause a retry is counted under (``retries_total{cause}``)."""
    if err.code == "ConnectionError":
        return "connection"
    if err.code in _THROTTLE_CODES:
        return "throttling"
    if err.status is not None and err.status >= 500:
        return "server_error"
    return "other"
