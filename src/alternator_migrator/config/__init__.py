"""Config: the typed model of a migration config, the YAML reader and the Scylla Migrator key fates.

Layer: above the ground (errors, metrics, progress); uses nothing else of ours."""

from .model import Config, SourceConfig, TargetConfig, load, parse, require_supported

__all__ = [
    "Config",
    "SourceConfig",
    "TargetConfig",
    "load",
    "parse",
    "require_supported",
]
