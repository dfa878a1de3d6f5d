"""The tables of a run: a multi-table config (`tables:`, `source.tablesMatching`,
`source.tablesTagged`) becomes one single-table Config per table.

Each table's Config is the one a single-table config of that table would be, so its savepoint is
the same file: a table of an estate can be resumed alone, and the other way round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Iterator
from typing import Any

from ..aws.client import DynamoClient, source_client
from ..config import Config
from ..config.model import TableEntry
from ..errors import ConfigError


def for_table(cfg: Config, e: TableEntry) -> Config:
    """The single-table config of one entry: the run's settings with the entry's overrides."""

    def pick(override: Any, base: Any) -> Any:
        return base if override is None else override

    s, t = cfg.source, cfg.target
    source = dataclasses.replace(
        s,
        table=e.source,
        tables_matching=None,
        tables_tagged=(),
        scan_segments=pick(e.scan_segments, s.scan_segments),
        read_throughput=pick(e.read_throughput, s.read_throughput),
    )
    target = dataclasses.replace(
        t,
        table=e.target,
        stream_changes=pick(e.stream_changes, t.stream_changes),
        skip_initial_snapshot_transfer=pick(
            e.skip_initial_snapshot_transfer, t.skip_initial_snapshot_transfer
        ),
        write_throughput=pick(e.write_throughput, t.write_throughput),
    )
    return dataclasses.replace(
        cfg,
        source=source,
        target=target,
        renames=pick(e.renames, cfg.renames),
        skip_segments=pick(e.skip_segments, cfg.skip_segments),
        tables=(),
    )


def _list_tables(client: DynamoClient) -> list[str]:
    names: list[str] = []
    req: dict[str, Any] = {}
    while True:
        resp = client.call("ListTables", req)
        names += resp.get("TableNames", [])
        last = resp.get("LastEvaluatedTableName")
        if not last:
            return names
        req = {"ExclusiveStartTableName": last}


def _tags(client: DynamoClient, table: str) -> dict[str, str]:
    arn = client.call("DescribeTable", {"TableName": table})["Table"]["TableArn"]
    tags: dict[str, str] = {}
    req: dict[str, Any] = {"ResourceArn": arn}
    while True:
        resp = client.call("ListTagsOfResource", req)
        tags.update({t["Key"]: t["Value"] for t in resp.get("Tags", [])})
        token = resp.get("NextToken")
        if not token:
            return tags
        req = {"ResourceArn": arn, "NextToken": token}


def discover(cfg: Config, client: DynamoClient) -> list[TableEntry]:
    """The source tables `tablesMatching` / `tablesTagged` select (both when both are given)."""
    pattern, wanted = cfg.source.tables_matching, dict(cfg.source.tables_tagged)
    found = []
    for name in sorted(_list_tables(client)):
        if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
            continue
        if wanted:
            tags = _tags(client, name)
            if any(tags.get(k) != v for k, v in wanted.items()):
                continue
        found.append(TableEntry(source=name, target=name))
    return found


def table_configs(cfg: Config, source: DynamoClient | None = None) -> list[Config]:
    """One Config per table of the run (the config itself for a single-table run)."""
    if not cfg.many_tables:
        return [cfg]
    if cfg.tables:
        entries = list(cfg.tables)
    else:
        if source is None:
            raise ValueError("discovering tables needs a source client")
        entries = discover(cfg, source)
        if not entries:
            raise ConfigError(
                f"{cfg.path}: no source table matches `source.tablesMatching`/`tablesTagged`; "
                "check the pattern and tags (ListTables found none)"
            )
    return [for_table(cfg, e) for e in entries]


@contextlib.contextmanager
def tables_of(cfg: Config) -> Iterator[list[Config]]:
    """The run's per-table configs (discovery asks the source, once)."""
    if not cfg.many_tables or cfg.tables:
        yield table_configs(cfg)
        return
    with source_client(cfg.source) as source:
        yield table_configs(cfg, source)
