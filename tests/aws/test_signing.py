"""SigV4 (aws/signing.py): our headers are botocore's, byte for byte."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from alternator_migrator.aws.credentials import FrozenCreds
from alternator_migrator.aws.signing import Signer


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
def test_sigv4_matches_botocore(token: str | None) -> None:
    now = dt.datetime(2026, 11, 28, 7, 0, 1, tzinfo=dt.UTC)
    body = b'{"TableName":"t\xc3\xa9"}'
    creds = FrozenCreds("AKIDEXAMPLE", "secret/key+x", token)
    ours = Signer("eu-west-3").headers("127.0.0.1:8000", "DynamoDB_20120810.Scan", body, creds, now)

    req = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8000/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.Scan",
        },
    )
    signer = SigV4Auth(
        BotoCredentials("AKIDEXAMPLE", "secret/key+x", token), "dynamodb", "eu-west-3"
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        signer.add_auth(req)
    assert (
        ours["authorization"].split("Signature=")[1]
        == req.headers["Authorization"].split("Signature=")[1]
    )
