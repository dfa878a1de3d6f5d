"""The lean client: SigV4 identical to botocore's, error mapping, retries."""

from __future__ import annotations

from typing import Any

import pytest

from alternator_migrator.aws.client import (
    CredentialSource,
    DynamoClient,
    DynamoError,
    RetryPolicy,
    preflight,
)
from alternator_migrator.config import Credentials
from alternator_migrator.errors import EndpointError
from alternator_migrator.localservers import Server, free_port

from ..helpers import eventually


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
