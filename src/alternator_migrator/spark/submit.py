"""The application file for spark-submit:

    spark-submit [spark options] submit.py migrate --config FILE [migrate options]

It is the ordinary command line with ``--engine spark`` implied; the master and the rest of
Spark's settings come from spark-submit.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from alternator_migrator.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["migrate"] and not any(a.startswith("--engine") for a in args):
        args[1:1] = ["--engine", "spark"]
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
