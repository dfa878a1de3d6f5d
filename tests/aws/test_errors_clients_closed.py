"""migrate and validate close their clients (connection pools) however they end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.aws.client import DynamoClient
from alternator_migrator.errors import SchemaError
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.validate.validator import validate

from ..helpers import batch_put, create_table, local_config


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    labels: list[str] = []
    real = DynamoClient.close

    def close(self: DynamoClient) -> None:
        labels.append(self.label)
        real(self)

    monkeypatch.setattr(DynamoClient, "close", close)
    return labels


def test_migrate_and_validate_close_their_clients_on_success(
    tmp_path: Path,
    moto: Server,
    dynalite: Server,
    src: Any,
    table_name: str,
    closed: list[str],
) -> None:
    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}} for i in range(5)])
    cfg = local_config(tmp_path, moto, dynalite, table_name, stream=False)
    assert migrate(cfg, show_progress=False).snapshot_complete
    assert sorted(closed) == ["source", "target"]
    closed.clear()
    assert validate(cfg).identical
    assert sorted(closed) == ["source", "target"]


def test_migrate_and_validate_close_their_clients_on_error(
    tmp_path: Path, moto: Server, dynalite: Server, closed: list[str]
) -> None:
    cfg = local_config(tmp_path, moto, dynalite, "no-such-table", stream=False)
    with pytest.raises(SchemaError):
        migrate(cfg, show_progress=False)
    assert sorted(closed) == ["source", "target"]
    closed.clear()
    with pytest.raises(SchemaError):
        validate(cfg)
    assert sorted(closed) == ["source", "target"]
