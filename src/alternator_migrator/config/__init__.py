"""Config: the typed model of a migration config, the YAML reader and the Scylla Migrator key fates.

Layer: above the ground (errors, metrics, progress); uses nothing else of ours.
``model`` holds the frozen dataclasses (each key declared once, with its doc), ``reader`` walks
the YAML, ``parse`` builds a Config from it, ``compat`` says what becomes of each key of the
Scylla Migrator, ``docgen`` writes the reference docs from all of these.
"""

from .model import (
    ALTERNATOR_STREAMS_WINDOW,
    ON_DEMAND_DEFAULT_CAPACITY,
    AlternatorSettings,
    AssumeRole,
    Config,
    Credentials,
    Endpoint,
    SourceConfig,
    TargetConfig,
    local_only_given,
    options_given,
    require_supported,
)
from .parse import load, parse
from .reader import MAX_CONFIG_BYTES

__all__ = [
    "ALTERNATOR_STREAMS_WINDOW",
    "MAX_CONFIG_BYTES",
    "ON_DEMAND_DEFAULT_CAPACITY",
    "AlternatorSettings",
    "AssumeRole",
    "Config",
    "Credentials",
    "Endpoint",
    "SourceConfig",
    "TargetConfig",
    "load",
    "local_only_given",
    "options_given",
    "parse",
    "require_supported",
]
