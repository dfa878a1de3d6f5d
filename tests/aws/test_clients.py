"""The lean client: SigV4 identical to botocore's, error mapping, retries."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from alternator_migrator.aws.client import (
    CredentialSource,
    DynamoClient,
    DynamoError,
    FrozenCreds,
    RetryPolicy,
    _Signer,
    preflight,
)
from alternator_migrator.config import Credentials
from alternator_migrator.errors import EndpointError
from alternator_migrator.localservers import Server, free_port

from ..helpers import eventually


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
def test_sigv4_matches_botocore(token: str | None) -> None:
    now = dt.datetime(2026, 11, 28, 7, 0, 1, tzinfo=dt.UTC)
    body = b'{"TableName":"t\xc3\xa9"}'
    creds = FrozenCreds("AKIDEXAMPLE", "secret/key+x", token)
    ours = _Signer("eu-west-3").headers(
        "127.0.0.1:8000", "DynamoDB_20120810.Scan", body, creds, now
    )

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


def _client(url: str, **kw: Any) -> DynamoClient:
    return DynamoClient(
        url, "us-east-1", CredentialSource(Credentials("a", "b"), None, "us-east-1"), **kw
    )


def test_error_codes_parsed(dynalite: Server) -> None:
    c = _client(dynalite.url)
    with pytest.raises(DynamoError) as e:
        c.call("DescribeTable", {"TableName": "does-not-exist"})
    assert e.value.code == "ResourceNotFoundException"
    assert not e.value.retryable


def test_unreachable_endpoint_is_clear_and_bounded() -> None:
    port = free_port()  # nothing listens there
    c = _client(f"http://127.0.0.1:{port}", retry=RetryPolicy(base=0.01, cap=0.05, max_attempts=3))
    with pytest.raises(DynamoError) as e:
        c.call("ListTables", {})
    assert e.value.code == "ConnectionError"
    with pytest.raises(EndpointError, match=f"127.0.0.1:{port} is unreachable"):
        preflight(c, "ListTables", {})


def test_wire_format_round_trip(dynalite: Server, table_name: str) -> None:
    c = _client(dynalite.url)
    c.call(
        "CreateTable",
        {
            "TableName": table_name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    # CreateTable is asynchronous on dynalite too, even with --createTableMs 0.
    eventually(
        lambda: (
            c.call("DescribeTable", {"TableName": table_name})["Table"]["TableStatus"] == "ACTIVE"
        ),
        message="table active",
    )
    item = {
        "pk": {"S": "ü"},
        "n": {"N": "-1.5E+100"},
        "b": {"B": "AAEC"},
        "m": {"M": {"x": {"NULL": True}}},
    }
    c.call("PutItem", {"TableName": table_name, "Item": item})
    got = c.call(
        "GetItem", {"TableName": table_name, "Key": {"pk": {"S": "ü"}}, "ConsistentRead": True}
    )
    assert got["Item"]["m"] == item["m"]
    assert got["Item"]["b"] == item["b"]


def test_assume_role_credentials_are_used(moto: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # STS on the loopback moto server (botocore's per-service endpoint variable), never AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.url)
    from alternator_migrator.config import AssumeRole

    source = CredentialSource(
        Credentials("AKIDBASE", "base-secret"),
        AssumeRole("arn:aws:iam::123456789012:role/migrator", "mig-test"),
        "us-east-1",
    )
    creds = source.get()
    assert creds.access_key != "AKIDBASE" and creds.token  # temporary credentials of the role
    c = DynamoClient(moto.url, "us-east-1", source)
    assert "TableNames" in c.call("ListTables", {})
