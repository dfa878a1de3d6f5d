"""Many tables in one run: a read-only check of each (its plan's blockers) before any is
touched, then the same pipeline per table (``tables`` makes their configs), snapshots a few at a
time, replays all together."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..aws.client import DynamoClient, source_client, target_client
from ..aws.throttle import RateLimiter
from ..config import Config, require_supported
from ..errors import MigratorError
from ..metrics import METRICS
from ..state.savepoint import SavepointStore
from .migrate import MigrationResult, Shared, migrate
from .plan import plan_table
from .tables import table_configs, tables_of

log = logging.getLogger(__name__)


class TablesFailed(MigratorError):
    """Tables that could not be migrated (named); the others ran, or none was touched."""

    exit_code = 1


# --------------------------------------------------------------------------- the check first


def check_table(cfg: Config, source: DynamoClient, target: DynamoClient) -> str | None:
    """Why this table cannot be migrated as configured (None: it can): the blockers of its
    plan, read-only (the quick plan migrate opens with: no sample, no count)."""
    blockers = plan_table(cfg, source, target, None, quick=True).blockers
    return "; ".join(blockers) if blockers else None


# --------------------------------------------------------------------------- the run


@dataclass
class TableOutcome:
    cfg: Config
    result: MigrationResult | None = None
    error: str | None = None
    exit_code: int = 0

    @property
    def name(self) -> str:
        return self.cfg.source.table


@dataclass
class EstateResult:
    tables: list[TableOutcome] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # table -> why (never touched)

    @property
    def failed(self) -> list[TableOutcome]:
        return [t for t in self.tables if t.error is not None]


def migrate_tables(
    cfg: Config,
    stop: threading.Event | None = None,
    *,
    skip_failing_tables: bool = False,
    run_table: Callable[..., MigrationResult] = migrate,
    **options: Any,
) -> EstateResult:
    """Migrate every table of the run; ``options`` go to each table's ``migrate``.

    Every table is checked (read-only) before any is touched: a table that cannot be migrated
    stops the run here, or with ``skip_failing_tables`` is left out and named at the end."""
    stop = stop or threading.Event()
    require_supported(cfg)
    result = EstateResult()
    with (
        source_client(cfg.source, stop=stop) as source,
        target_client(cfg.target, stop=stop) as target,
    ):
        cfgs = table_configs(cfg, source)
        for c in cfgs:
            why = check_table(c, source, target)
            if why is not None:
                result.refused[c.source.table] = why
    if result.refused:
        lines = "; ".join(f"{t}: {why}" for t, why in result.refused.items())
        if not skip_failing_tables:
            raise TablesFailed(
                f"{len(result.refused)} of {len(cfgs)} tables cannot be migrated as configured, "
                f"so no table was touched: {lines}. Fix them, or run with --skip-failing-tables "
                "to migrate the others"
            )
        log.warning("Leaving out %d tables (--skip-failing-tables): %s", len(result.refused), lines)
    todo = [c for c in cfgs if c.source.table not in result.refused]
    log.info(
        "Migrating %d tables (%d snapshots at a time): %s",
        len(todo),
        cfg.max_tables_in_parallel,
        ", ".join(f"{c.source.table} -> {c.target.table}" for c in todo),
    )
    shared = Shared(
        locked=True,
        snapshot_slots=threading.Semaphore(cfg.max_tables_in_parallel),
        write_cap=RateLimiter(cfg.target.total_write_throughput)
        if cfg.target.total_write_throughput
        else None,
    )
    # Every table's lock before the first write: a second run of any of them is refused now.
    with contextlib.ExitStack() as locks:
        for c in todo:
            locks.enter_context(SavepointStore(c).exclusive())
        outcomes = [TableOutcome(c) for c in todo]
        threads = [
            threading.Thread(
                target=_run_one,
                args=(o, stop, shared, run_table, options),
                name=f"table-{o.name}",
                daemon=True,
            )
            for o in outcomes
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    result.tables = outcomes
    return result


def _run_one(
    o: TableOutcome,
    stop: threading.Event,
    shared: Shared,
    run_table: Callable[..., MigrationResult],
    options: dict[str, Any],
) -> None:
    _TABLE.name = o.name
    try:
        with METRICS.scoped(table=o.name):  # its metrics carry `table`
            o.result = run_table(o.cfg, stop, shared=shared, **options)
    except MigratorError as e:
        # One table's failure (a trimmed stream, a refused write) stops that table only.
        o.error, o.exit_code = str(e), e.exit_code
        log.error("Table %s stopped: %s", o.name, e)
    except Exception as e:
        o.error, o.exit_code = f"unexpected error: {type(e).__name__}: {e}", 1
        log.exception("Table %s stopped by an unexpected error", o.name)


def summary(result: EstateResult, out: TextIO) -> int:
    """One line per table and a last line; returns the exit code (0 when every table ran).
    A table whose snapshot is not complete is named on the last line, never counted as done."""
    partial: list[str] = []
    for o in result.tables:
        if o.error is not None:
            state = f"FAILED (exit {o.exit_code}): {o.error}"
        elif o.result is None:
            state = "not run"
        elif o.result.snapshot_complete:
            state = "snapshot complete" + (", replay stopped" if o.result.stream_arn else "")
        elif o.result.snapshot is not None and not o.result.stopped:
            state = f"snapshot INCOMPLETE: {o.result.snapshot.incomplete_line()}"
            partial.append(f"{o.name} (segments skipped)")
        else:
            state = "stopped before its snapshot was complete"
            partial.append(f"{o.name} (stopped)")
        out.write(f"{o.name} -> {o.cfg.target.table}: {state}\n")
    bad = [o.name for o in result.failed] + list(result.refused)
    if bad:
        out.write(
            f"Tables not migrated: {', '.join(bad)} ({len(result.tables) - len(result.failed)} "
            "others ran)\n"
        )
        return max([o.exit_code for o in result.failed] + [1])
    if partial:
        out.write(
            f"All {len(result.tables)} tables ran; snapshot not complete for: "
            f"{', '.join(partial)}\n"
        )
    else:
        out.write(f"All {len(result.tables)} tables ran; every snapshot complete\n")
    return 0


# --------------------------------------------------------------------------- log lines


class _TableLocal(threading.local):
    name: str | None = None


_TABLE = _TableLocal()


class TableLogFilter(logging.Filter):
    """Prefixes the log lines of a table's own thread with its name (`[orders] ...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = _TABLE.name
        if name is not None and not getattr(record, "_table_tagged", False):
            record.msg = f"[{name}] {record.msg}"
            record._table_tagged = True
        return True


def migrate_estate(
    cfg: Config,
    stop: threading.Event,
    *,
    skip_failing_tables: bool = False,
    out: TextIO,
    **options: Any,
) -> int:
    """The `migrate` command for a multi-table config: run, then one line per table and a last
    line naming the tables not migrated. Returns the exit code."""
    handlers = logging.getLogger().handlers
    tagger = TableLogFilter()
    for h in handlers:
        h.addFilter(tagger)
    try:
        result = migrate_tables(
            cfg, stop, skip_failing_tables=skip_failing_tables, show_progress=False, **options
        )
    finally:
        for h in handlers:
            h.removeFilter(tagger)
    return summary(result, out)


def validate_estate(cfg: Config, *, out: TextIO, **options: Any) -> int:
    """`validate` for every table of the run: exit 1 when any differs (named on the last line),
    4 when stopped before the last table was compared (never a pass)."""
    from ..validate.validator import validate

    differ: list[str] = []
    with tables_of(cfg) as cfgs:
        for i, c in enumerate(cfgs):
            out.write(f"== {c.source.table} -> {c.target.table}\n")
            out.flush()
            report = validate(c, out=out, **options)
            if report.partial:
                left = [x.source.table for x in cfgs[i:]]
                out.write(f"Stopped: not compared (or not to the end): {', '.join(left)}\n")
                return report.exit_code
            if not report.identical:
                differ.append(c.source.table)
    if differ:
        out.write(f"Tables that differ: {', '.join(differ)} ({len(differ)} of {len(cfgs)})\n")
        return 1
    out.write(f"All {len(cfgs)} tables identical\n")
    return 0
