"""The pipeline: migrate (top-down), the local engine and the replay loop.

Layer: uses every layer below it (validate, snapshot, state, changes, target, aws, config)."""

from .migrate import LocalEngine, MigrationResult
from .replay import ChangeSource, Replayer

__all__ = [
    "ChangeSource",
    "LocalEngine",
    "MigrationResult",
    "Replayer",
]
