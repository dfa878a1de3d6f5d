"""The live migration with both endpoints behind TLS with a private CA (AWS_CA_BUNDLE), and
again through a forward proxy (HTTPS_PROXY, with NO_PROXY bypassing it for the target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.localservers import Server
from alternator_migrator.state.savepoint import SavepointStore

from ..helpers import (
    BackgroundMigration,
    batch_put,
    create_table,
    eventually,
    local_config,
    table_diff,
)
from ..netfakes import ConnectProxy, HttpForwarder, PrivateCA


@pytest.mark.parametrize("mode", ["tls", "tls+proxy"])
def test_live_migration_over_tls_with_private_ca(
    moto: Server,
    dynalite: Server,
    src: Any,
    dst: Any,
    table_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(v, raising=False)
    ca = PrivateCA(tmp_path)
    source = HttpForwarder(moto.url, tls=ca.server_ctx).start()
    target = HttpForwarder(dynalite.url, host="127.0.0.2", tls=ca.server_ctx).start()
    proxy = ConnectProxy().start()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.pem))
    if mode == "tls+proxy":
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    try:
        create_table(src, table_name)
        batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(400)])
        cfg = local_config(tmp_path, source, target, table_name)
        store = SavepointStore(cfg)
        run = BackgroundMigration(cfg).start()

        def snapshot_done() -> bool:
            run.check()
            sp = store.load()
            return sp is not None and sp.snapshot_done

        eventually(snapshot_done, timeout=60, message="snapshot finished")
        for i in range(150):
            src.put_item(TableName=table_name, Item={"pk": {"S": f"n{i}"}, "v": {"N": "1"}})
            if i % 5 == 0:
                src.delete_item(TableName=table_name, Key={"pk": {"S": f"k{i}"}})
        eventually(
            lambda: (run.check(), not table_diff(src, table_name, dst, table_name, ("pk",)))[1],
            timeout=90,
            message="target converges",
        )
        result = run.finish()
    finally:
        proxy.stop()
        source.stop()
        target.stop()
    assert result.replay is not None and result.replay.records >= 150
    assert source.ops["GetRecords"] > 0 and target.ops["BatchWriteItem"] > 0
    if mode == "tls+proxy":
        assert set(proxy.seen) == {f"CONNECT 127.0.0.1:{source.port}"}  # NO_PROXY: not the target
    else:
        assert not proxy.seen


def test_a_scan_page_failing_its_crc32_is_retried_and_never_written(
    moto: Server, dynalite: Server, src: Any, dst: Any, table_name: str, tmp_path: Path
) -> None:
    from alternator_migrator.pipeline.migrate import migrate

    create_table(src, table_name)
    batch_put(src, table_name, [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(200)])
    source = HttpForwarder(moto.url).start()
    source.corrupt_next.add("Scan")
    try:
        cfg = local_config(tmp_path, source, dynalite, table_name, stream=False)
        result = migrate(cfg, show_progress=False)
    finally:
        source.stop()
    assert source.corrupted == 1
    assert result.snapshot_complete
    assert not table_diff(src, table_name, dst, table_name, ("pk",))  # no bogus item
