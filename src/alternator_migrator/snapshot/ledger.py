"""The snapshot's bookkeeping, the same for every engine: which units are left to copy, what
the target acknowledged, the progress bar, the savepoint, and whether the snapshot is complete.

An engine only decides where units run. It asks the ledger for the to-do list and where each
unit resumes, and reports each position the target acknowledged (the local copier page by
page, a Spark task once when it ends). A unit is recorded done only when its last page was
acknowledged; a unit ``skipSegments`` names is never recorded done, so a snapshot that skipped
units is incomplete, says so, and a later run copies what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config.model import Config
from ..errors import ConfigError
from ..metrics import METRICS
from ..progress import SnapshotProgress
from ..state.savepoint import Origin, Savepoint, SnapshotOrigin

log = logging.getLogger(__name__)


class Checkpointer(Protocol):
    """Writes the Savepoint (a SavepointStore)."""

    def save(self, sp: Savepoint) -> None: ...

    def maybe_save(self, sp: Savepoint) -> bool: ...


class UnitLog(Protocol):
    """What a copier reports to: where a unit resumes, and each acknowledged position."""

    def position(self, unit: int) -> Any:
        """Where ``unit`` resumes (None: its beginning)."""
        ...

    def acknowledged(self, unit: int, position: Any, items: int) -> None:
        """The target acknowledged ``items`` more of ``unit``, up to ``position`` (None: the
        unit's end). Called in page order per unit."""
        ...


@dataclass(frozen=True)
class SnapshotOutcome:
    units: int
    kind: str  # what a unit is ("segment", "data file")
    missing: tuple[int, ...]  # units not copied to their end
    skipped: tuple[int, ...]  # of those, the ones skipSegments named

    @property
    def complete(self) -> bool:
        return not self.missing

    def incomplete_line(self) -> str:
        """The operator's line for a snapshot that skipped units."""
        return (
            f"Snapshot incomplete: {len(self.missing)} of {self.units} {self.kind}s never "
            f"copied ({_listed(self.missing)}; skipSegments skipped {_listed(self.skipped)}): "
            "the target lacks their items. Remove them from skipSegments and run again to "
            "copy them (the savepoint keeps the segments already copied)"
        )


def _listed(units: tuple[int, ...]) -> str:
    return ", ".join(map(str, units)) if units else "none"


def skipped_segments(cfg: Config, total_segments: int) -> set[int]:
    """The segments ``skipSegments`` names: not copied by this run, and not done either."""
    beyond = [n for n in cfg.skip_segments if n >= total_segments]
    if beyond:
        raise ConfigError(
            f"{cfg.path}: `skipSegments` names segment {beyond[0]} but the scan has "
            f"{total_segments} segments (0-{total_segments - 1}); set `source.scanSegments` "
            "to the count those numbers refer to"
        )
    return set(cfg.skip_segments)


class SnapshotLedger:
    """The driver's record of one snapshot (see the module's doc). Thread-safe: the
    Savepoint's methods take its lock, the progress bar has its own."""

    def __init__(
        self,
        cfg: Config,
        sp: Savepoint,
        store: Checkpointer,
        units: int,
        *,
        kind: str = "segment",
        origin: SnapshotOrigin | None = None,
        estimated_items: int = 0,
        show_progress: bool = False,
    ) -> None:
        origin = origin or SnapshotOrigin()
        self.sp, self.store, self.units, self.kind = sp, store, units, kind
        self._labels = METRICS.scope()  # a table of a multi-table run: its `table` label
        self.skip = skipped_segments(cfg, units) if origin.kind is Origin.SCAN else set()
        sp.begin_snapshot(units, origin)
        done = units - len(sp.units_missing())
        self.progress = SnapshotProgress(units, done, estimated_items) if show_progress else None
        METRICS.set("segments_total", units, **self._labels)

    def todo(self) -> list[int]:
        """The units to copy: neither done nor skipped. Logs what is skipped and resumed."""
        missing = self.sp.units_missing()
        todo = [n for n in missing if n not in self.skip]
        skipped = tuple(n for n in missing if n in self.skip)
        if skipped:
            log.info("Skipping segments %s (skipSegments)", _listed(skipped))
        partial = sum(1 for n in todo if self.sp.unit_position(n) is not None)
        done = self.units - len(missing)
        # A resume, also when only partly copied units were saved (a kill in the first pages)
        # or every one was (a kill just before the savepoint said the snapshot is done).
        if done or partial:
            log.info(
                "Resuming snapshot: %d of %d %ss already done, %d partially",
                done,
                self.units,
                self.kind,
                partial,
            )
        return todo

    def position(self, unit: int) -> Any:
        return self.sp.unit_position(unit)

    def copied(self, items: int) -> None:
        """Items the target acknowledged, shown before their unit's position is recorded (a
        Spark task's running count)."""
        METRICS.inc("items_copied_total", items, **self._labels)
        if self.progress is not None:
            self.progress.add_items(items)

    def record(self, unit: int, position: Any, *, save: bool) -> None:
        """The target acknowledged ``unit`` up to ``position`` (None: its end). ``save``: write
        the savepoint now (a Spark task's end), else when the interval has passed."""
        if self.sp.advance_unit(unit, position):
            METRICS.inc("segments_done_total", **self._labels)
            if self.progress is not None:
                self.progress.segment_done()
        if save:
            self.store.save(self.sp)
        else:
            self.store.maybe_save(self.sp)

    def acknowledged(self, unit: int, position: Any, items: int) -> None:
        self.copied(items)
        self.record(unit, position, save=False)

    def __enter__(self) -> SnapshotLedger:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.store.save(self.sp)
        finally:
            if self.progress is not None:
                self.progress.close()

    def outcome(self) -> SnapshotOutcome:
        missing = tuple(self.sp.units_missing())
        return SnapshotOutcome(
            self.units, self.kind, missing, tuple(n for n in missing if n in self.skip)
        )


@dataclass
class UnitTally:
    """A UnitLog kept in memory, for a copier that runs away from the savepoint (a Spark
    task): each unit's last acknowledged position, whether it ended, and the items copied."""

    start: dict[int, Any] = field(default_factory=dict)
    positions: dict[int, Any] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    items: int = 0

    def position(self, unit: int) -> Any:
        return self.start.get(unit)

    def acknowledged(self, unit: int, position: Any, items: int) -> None:
        self.items += items
        if position is None:
            self.finished.add(unit)
        else:
            self.positions[unit] = position
