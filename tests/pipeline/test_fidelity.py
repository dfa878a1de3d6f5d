"""Value fidelity: every attribute type survives the snapshot and the replay unchanged."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alternator_migrator.config import Config, load
from alternator_migrator.localservers import Server
from alternator_migrator.pipeline.migrate import migrate
from alternator_migrator.state.savepoint import SavepointStore

from ..helpers import BackgroundMigration, create_table, eventually, normalize, write_config
from ..strategies import items

_tables = itertools.count()
_keys = itertools.count()
FIDELITY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def unique_keys() -> st.SearchStrategy[str]:
    return st.builds(lambda _: f"k{next(_keys)}", st.none())


def _config(tmp: Path, moto: Server, dynalite: Server, table: str, stream: bool) -> Config:
    return load(
        write_config(
            tmp / f"{table}.yaml",
            source_url=moto.url,
            source_table=table,
            target_url=dynalite.url,
            target_table=table,
            savepoints=tmp / "sp",
            stream=stream,
            source_extra={"scanSegments": 2},
        )
    )


def _get(client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(
        TableName=table, Key=key, ConsistentRead=True
    ).get("Item")
    return item


@FIDELITY
@given(batch=st.lists(items(unique_keys()), min_size=1, max_size=8))
def test_snapshot_preserves_values(
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[dict[str, Any]],
) -> None:
    table = f"fid-snap-{next(_tables)}"
    create_table(src, table)
    for item in batch:
        src.put_item(TableName=table, Item=item)
    cfg = _config(tmp_path_factory.mktemp("fid"), moto, dynalite, table, stream=False)
    result = migrate(cfg, show_progress=False)
    assert result.snapshot_complete
    for item in batch:
        got = _get(dst, table, {"pk": item["pk"]})
        assert got is not None
        assert normalize(got) == normalize(item)


@pytest.fixture(scope="module")
def live(
    moto: Server, dynalite: Server, src: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migration left running for the whole module; examples write into its source."""
    table = f"fid-live-{next(_tables)}"
    create_table(src, table)
    cfg = _config(tmp_path_factory.mktemp("fid-live"), moto, dynalite, table, stream=True)
    run = BackgroundMigration(cfg).start()
    store = SavepointStore(cfg)
    eventually(
        lambda: (s := store.load()) is not None and s.snapshot_done,
        timeout=30,
        message="replay started",
    )
    yield table, run.errors
    run.finish(30)


@FIDELITY
@given(batch=st.lists(items(unique_keys()), min_size=1, max_size=6), data=st.data())
def test_replay_preserves_values(
    live: tuple[str, list[BaseException]],
    src: Any,
    dst: Any,
    batch: list[dict[str, Any]],
    data: st.DataObject,
) -> None:
    table, errors = live
    for item in batch:
        src.put_item(TableName=table, Item=item)
    # Then overwrite one and delete one: replay must apply the last change per key.
    last = {repr(i["pk"]): i for i in batch}
    victim = data.draw(st.sampled_from(batch))
    src.delete_item(TableName=table, Key={"pk": victim["pk"]})
    last.pop(repr(victim["pk"]))

    def converged() -> bool:
        assert not errors, f"the migration stopped: {errors}"
        for item in last.values():
            got = _get(dst, table, {"pk": item["pk"]})
            if got is None or normalize(got) != normalize(item):
                return False
        return _get(dst, table, {"pk": victim["pk"]}) is None

    eventually(converged, timeout=30, message="replayed values equal the source's")
