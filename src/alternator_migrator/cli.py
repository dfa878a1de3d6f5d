"""Command line: parse arguments, call one library function per command, map errors to exits.

Exit codes: 0 done (or stopped cleanly), 1 differences found / write failed, 2 bad input or
unusable endpoint, 3 the stream lost records and a new snapshot is needed, 4 validate stopped
before the end (a partial report).
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
from .errors import Interrupted, MigratorError

log = logging.getLogger("alternator_migrator")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors (and anything not on a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime as dt

        import orjson

        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def _setup_logging(verbose: bool, fmt: str = "auto") -> None:
    from . import progress

    json_logs = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
        progress.PLAIN = True  # no bar redrawn in place between JSON lines
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "py4j"):
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
    from .pipeline.migrate import migrate

    if (args.master or args.conf) and args.engine != "spark":
        raise MigratorError("--master and --conf apply only to --engine spark")
    spark_conf = {}
    for item in args.conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MigratorError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.log.level=INFO")
        spark_conf[key.strip()] = value
    cfg = load(args.config)
    stop = threading.Event()
    _install_stop_handlers(stop)
    if args.metrics_port is not None:
        from .metrics import MetricsServer

        server = MetricsServer(args.metrics_port, args.metrics_host).start()
        log.info(
            "Serving Prometheus metrics on http://%s:%d/metrics", args.metrics_host, server.port
        )
    if cfg.many_tables:
        from .pipeline.estate import migrate_estate

        if args.engine == "spark":
            from .spark import migrate_spark_tables  # imports pyspark only when asked for

            return migrate_spark_tables(
                cfg,
                stop,
                master=args.master,
                conf=spark_conf,
                skip_failing_tables=args.skip_failing_tables,
                out=sys.stdout,
                fresh=args.fresh,
                stop_when_caught_up=args.stop_when_caught_up,
            )
        return migrate_estate(
            cfg,
            stop,
            skip_failing_tables=args.skip_failing_tables,
            out=sys.stdout,
            fresh=args.fresh,
            stop_when_caught_up=args.stop_when_caught_up,
        )
    if args.skip_failing_tables:
        raise MigratorError("--skip-failing-tables applies to a multi-table config (`tables:`)")
    if args.engine == "spark":
        from .spark import migrate_spark  # imports pyspark only when asked for

        migrate_spark(
            cfg,
            stop,
            master=args.master,
            conf=spark_conf,
            fresh=args.fresh,
            stop_when_caught_up=args.stop_when_caught_up,
            show_progress=not args.no_progress,
        )
        return 0
    migrate(
        cfg,
        stop,
        fresh=args.fresh,
        stop_when_caught_up=args.stop_when_caught_up,
        show_progress=not args.no_progress,
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .config import load
    from .status import estate_status, estate_to_dict, print_estate_status, print_status, status

    cfg = load(args.config)
    if cfg.many_tables:
        tables = estate_status(cfg, probe_stream=not args.no_stream)
        if args.json:
            import orjson

            print(orjson.dumps(estate_to_dict(tables), option=orjson.OPT_INDENT_2).decode())
        else:
            print_estate_status(tables)
        return 0
    st = status(cfg, probe_stream=not args.no_stream)
    if args.json:
        import orjson

        print(orjson.dumps(st.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print_status(st)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .config import load
    from .pipeline.plan import run_plan

    return run_plan(load(args.config), as_json=args.json)


def _cmd_validate(args: argparse.Namespace) -> int:
    from .config import load
    from .validate.validator import validate

    stop = threading.Event()
    _install_stop_handlers(stop)  # a stop ends with a partial report (exit 4), never a pass
    # Exit 1 means "differences found", so every failure to compare is a 2.
    try:
        cfg = load(args.config)
        if cfg.many_tables:
            from .pipeline.estate import validate_estate

            return validate_estate(
                cfg,
                out=sys.stdout,
                repair=args.repair,
                stop=stop,
                sample=args.sample,
                fresh=args.fresh,
            )
        report = validate(cfg, repair=args.repair, stop=stop, sample=args.sample, fresh=args.fresh)
    except MigratorError as e:
        _error(e)
        return 2
    return report.exit_code


def _cmd_cutover(args: argparse.Namespace) -> int:
    from .config import load
    from .cutover import cutover

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM stops a step as Ctrl-C does: undone, exit 130

    signal.signal(signal.SIGTERM, interrupt)
    cutover(load(args.config), load(args.reverse_config), assume_yes=args.yes, settle=args.settle)
    return 0


def _cmd_loadgen(args: argparse.Namespace) -> int:
    from .loadgen import LoadgenOptions, parse_mix, parse_rate, run

    opts = LoadgenOptions(
        endpoint=args.endpoint,
        table=args.table,
        keys=args.keys,
        rate=parse_rate(args.rate),
        duration=args.duration,
        seed=args.seed,
        mix=parse_mix(args.mix),
        create=args.create,
        region=args.region,
        access_key=args.access_key,
        secret_key=args.secret_key,
        writers=args.writers,
    )
    stop = threading.Event()
    _install_stop_handlers(stop)
    stats = run(opts, stop)
    return 1 if stats.errors else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alternator-migrator",
        description="Live migration of a DynamoDB table to ScyllaDB Alternator "
        "(or any DynamoDB-API endpoint).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument(
        "--log-format",
        choices=("auto", "text", "json"),
        default="auto",
        help="auto (default): text on a terminal, JSON lines otherwise",
    )
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
    m.add_argument(
        "--skip-failing-tables",
        action="store_true",
        help="multi-table config: migrate the tables that can be, leave out (and name) the others",
    )
    m.add_argument("--no-progress", action="store_true", help="no snapshot progress output")
    m.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: threads in this process (default); spark: on a Spark cluster "
        "(needs the [spark] extra; see docs/spark.md)",
    )
    m.add_argument(
        "--master",
        metavar="URL",
        help="Spark master for --engine spark (e.g. spark://host:7077, yarn, local[4]); "
        "default: spark-submit's, else local[*]",
    )
    m.add_argument(
        "--conf",
        action="append",
        metavar="KEY=VALUE",
        help="a Spark setting for --engine spark (repeatable), e.g. "
        "spark.pyspark.python=/usr/bin/python3.11; over spark-submit's own",
    )
    m.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on PORT (0: any free port, logged)",
    )
    m.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for --metrics-port (default 127.0.0.1: this host only; 0.0.0.0: every "
        "interface, for a Prometheus on another host)",
    )
    m.set_defaults(func=_cmd_migrate)

    st = sub.add_parser(
        "status", help="where a migration stands: phase, segments, shards, lag, caught up"
    )
    st.add_argument("--config", required=True, help="the migration's YAML config")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument(
        "--no-stream", action="store_true", help="read only the savepoint, not the source stream"
    )
    st.set_defaults(func=_cmd_status)

    pl = sub.add_parser(
        "plan",
        help="what migrate will do, how long and at what cost; changes nothing "
        "(exit 0 feasible, 1 a table cannot run as configured, 2 bad input)",
    )
    pl.add_argument("--config", required=True, help="the migration's YAML config")
    pl.add_argument("--json", action="store_true", help="print JSON")
    pl.set_defaults(func=_cmd_plan)

    v = sub.add_parser(
        "validate",
        help="compare source and target both ways (exit 0 identical, 1 differences, 2 error, "
        "4 stopped: partial report)",
    )
    v.add_argument("--config", required=True, help="the migration's YAML config")
    v.add_argument(
        "--repair",
        action="store_true",
        help="copy missing and differing items from the source and delete target-only items "
        "(exit status still reports the differences found; validate again to confirm)",
    )
    v.add_argument(
        "--sample",
        type=float,
        default=None,
        metavar="FRACTION",
        help="compare only this fraction of each side's scan segments (e.g. 0.05), for a quick "
        "check; the report says what was sampled",
    )
    v.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the position a stopped validate left next to the savepoint and start over",
    )
    v.set_defaults(func=_cmd_validate)

    co = sub.add_parser(
        "cutover",
        help="switch to the target with a way back: while the forward migrate runs, wait for "
        "it, record the reverse run's start, stop the forward run (docs/runbook.md)",
    )
    co.add_argument("--config", required=True, help="the forward migration's config (running)")
    co.add_argument(
        "--reverse-config",
        required=True,
        help="the reverse migration's config: the same tables the other way round",
    )
    co.add_argument(
        "--yes", action="store_true", help="do not ask: the application's writes are stopped"
    )
    co.add_argument(
        "--settle",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the source's stream must stay quiet once writes are stopped (default "
        "10; the source's streamsSettleSeconds is added)",
    )
    co.set_defaults(func=_cmd_cutover)

    lg = sub.add_parser("loadgen", help="random puts/updates/deletes at a given rate")
    lg.add_argument("--endpoint", required=True, help="DynamoDB-API URL, e.g. http://host:8000")
    lg.add_argument("--table", required=True)
    lg.add_argument("--keys", type=int, default=10_000, help="size of the key space")
    lg.add_argument("--rate", default="10-25", help="operations per second, LOW-HIGH or N")
    lg.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS (default: until Ctrl-C; 0: only --create)",
    )
    lg.add_argument("--seed", type=int, default=None)
    lg.add_argument("--mix", default="put=40,update=30,delete=30", help="operation weights")
    lg.add_argument(
        "--create",
        action="store_true",
        help="create the table if missing and prepopulate every key",
    )
    lg.add_argument(
        "--writers",
        type=int,
        default=1,
        help="concurrent writers (default 1: moto's stream ordering needs one)",
    )
    lg.add_argument("--region", default="us-east-1")
    lg.add_argument("--access-key", default="dummy", help="default suits local servers")
    lg.add_argument("--secret-key", default="dummy", help="default suits local servers")
    lg.set_defaults(func=_cmd_loadgen)
    return p


def _error(message: object) -> None:
    """The one line an operator sees: newlines from a server's message are folded away."""
    text = " ".join(str(message).split())
    print(f"alternator-migrator: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.log_format)
    try:
        rc: int = args.func(args)
        return rc
    except Interrupted as e:
        # Stopped while waiting (a retry pause, a budget): what was acknowledged is saved.
        log.info("Stopped (%s)", e)
        return 0
    except MigratorError as e:  # DynamoError included: an endpoint we cannot use as it is
        _error(e)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # A bug or a case we did not foresee: one line, the traceback only when asked for.
        if args.verbose:
            log.exception("unexpected error")
        _error(
            f"unexpected error: {type(e).__name__}: {e}"
            + ("" if args.verbose else " (rerun with -v for the traceback)")
        )
        return 1
