"""Errors the CLI turns into a one-line message and an exit code (no traceback)."""

from __future__ import annotations


class MigratorError(Exception):
    """An error an operator can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(MigratorError):
    """Bad config file: names the file, the key and the fix."""


class EndpointError(MigratorError):
    """An endpoint could not be reached or rejected our credentials."""


class SchemaError(MigratorError):
    """Source table missing, or target table incompatible with the source."""


class StreamError(MigratorError):
    """The source stream cannot be used (already enabled by someone else, disabled, ...)."""


class StreamTrimmedError(MigratorError):
    """Records that were never applied are gone from the stream: a new snapshot is needed."""

    exit_code = 3


class WriteError(MigratorError):
    """A write to the target failed for good; the run stops rather than drop it."""

    exit_code = 1


class SavepointError(MigratorError):
    """A savepoint that cannot be used for this migration."""


class StreamRecordError(MigratorError):
    """A stream record that cannot be applied (no keys, no new image, unknown event): the run
    stops before it rather than skip a change."""

    exit_code = 1


class Interrupted(MigratorError):
    """The run was asked to stop while it waited (a retry pause, a throughput budget). Not a
    failure: what was acknowledged is in the savepoint, and the CLI exits 0."""

    exit_code = 0
