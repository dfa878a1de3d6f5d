"""Snapshot units (Scan segments, export data files), the ledger that keeps their account, and
the copier that writes them to the target.

Layer: uses state, target, changes, aws, config and the ground."""

from .copier import ScanSource, SnapshotCopier, SnapshotSource, plan_scan
from .export import ExportSource
from .ledger import SnapshotLedger, SnapshotOutcome, UnitTally

__all__ = [
    "ExportSource",
    "ScanSource",
    "SnapshotCopier",
    "SnapshotLedger",
    "SnapshotOutcome",
    "SnapshotSource",
    "UnitTally",
    "plan_scan",
]
