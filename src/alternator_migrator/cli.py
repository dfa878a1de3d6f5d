"""Command line: parse arguments, call one library function per command, map errors to exits.

Exit codes: 0 done (or stopped cleanly), 1 differences found / write failed, 2 bad input or
unusable endpoint, 3 the stream lost records and a new snapshot is needed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .clients import DynamoError
from .errors import MigratorError

log = logging.getLogger("alternator_migrator")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _install_stop_handlers(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: finish in-flight batches, save, exit 0. A second one: exit now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("Second stop signal; exiting without waiting")
            raise SystemExit(130)
        log.info("Stop requested (%s); finishing in-flight batches", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .config import load
    from .migrate import migrate

    cfg = load(args.config)
    stop = threading.Event()
    _install_stop_handlers(stop)
    migrate(
        cfg,
        stop,
        fresh=args.fresh,
        stop_when_caught_up=args.stop_when_caught_up,
        show_progress=not args.no_progress,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alternator-migrator",
        description="Live migration of a DynamoDB table to ScyllaDB Alternator "
        "(or any DynamoDB-API endpoint).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("migrate", help="copy the table and replay its changes until stopped")
    m.add_argument("--config", required=True, help="the migration's YAML config")
    m.add_argument(
        "--stop-when-caught-up",
        type=float,
        nargs="?",
        const=30.0,
        default=None,
        metavar="SECONDS",
        help="end the replay once every shard is drained and no record came for SECONDS "
        "(default 30)",
    )
    m.add_argument("--fresh", action="store_true", help="ignore the savepoint and start over")
    m.add_argument("--no-progress", action="store_true", help="no snapshot progress output")
    m.set_defaults(func=_cmd_migrate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        rc: int = args.func(args)
        return rc
    except MigratorError as e:
        print(f"alternator-migrator: error: {e}", file=sys.stderr)
        return e.exit_code
    except DynamoError as e:
        print(f"alternator-migrator: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
