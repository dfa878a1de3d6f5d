"""Snapshot units (Scan segments, export data files) and the copier that writes them to the target.

Layer: uses state, target, changes, aws, config and the ground."""

from .copier import ScanSource, SnapshotCopier, SnapshotSource, plan_scan
from .export import ExportSource

__all__ = [
    "ExportSource",
    "ScanSource",
    "SnapshotCopier",
    "SnapshotSource",
    "plan_scan",
]
