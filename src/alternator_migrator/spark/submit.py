"""The application file for spark-submit:

    spark-submit [spark options] submit.py [--log-format text] migrate --config FILE [options]

It is the ordinary command line with ``--engine spark`` implied, wherever the options stand;
the master and the rest of Spark's settings come from spark-submit. Anything that would run
on the driver alone instead (another command, ``--engine local``) stops with exit 2: a large
table must never be copied by one machine without anyone noticing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from alternator_migrator.cli import build_parser
from alternator_migrator.cli import main as cli_main


def _refuse(message: str) -> int:
    print(f"alternator-migrator: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as e:  # argparse has printed its one-line usage error
        return 2 if e.code else 0
    if parsed.command != "migrate":
        return _refuse(
            f"under spark-submit only `migrate` runs (on Spark); run `alternator-migrator "
            f"{parsed.command} ...` directly, without spark-submit"
        )
    engines = [a for a in args if a == "--engine" or a.startswith("--engine=")]
    if parsed.engine != "spark" and engines:
        return _refuse(
            f"under spark-submit the engine is spark: drop --engine {parsed.engine}, or run "
            f"`alternator-migrator migrate` without spark-submit for the local engine"
        )
    if not engines:
        # Appended: whatever stands before `migrate`, the last arguments are migrate's own.
        args += ["--engine", "spark"]
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
