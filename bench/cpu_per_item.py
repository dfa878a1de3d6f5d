"""Client CPU per item of a migrator snapshot, by transport variant (issue 12).

The snapshot section of run.py, migrator only, with the target reached in different ways:
``http`` (the configured endpoint, as run.py does), ``alternator`` (an ``alternator:`` block on
the target; dynalite answers 404 to /localnodes, so one node), ``before`` (http, with the child's PYTHONPATH set to ``--before-src``: another copy of the
code, e.g. the previous commit's, measured in the same run), ``cluster`` (a fake 3-node
cluster: three loopback listeners forwarding to the dynalite and serving /localnodes, run in
this process, so their CPU is not the child's). Prints one line per run. Usage:

    PYTHONPATH=src .venv/bin/python bench/cpu_per_item.py [--items 50000] [--variants http,cluster]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from loader import count, create_table  # noqa: E402
from run import (  # noqa: E402
    TABLE,
    WORK,
    Source,
    migrator_cmd,
    run_child,
    say,
    src_fingerprint,
    write_config,
)

from alternator_migrator.localservers import start_dynalite  # noqa: E402

BEFORE_SRC = ""


def one(variant: str, source: Any, items: int, work: Path) -> dict[str, Any]:
    target = start_dynalite(work / "logs")
    cluster = None
    try:
        create_table(target.url, TABLE)
        extra: dict[str, Any] = {}
        if variant in ("alternator", "cluster"):
            extra["alternator"] = {"maxConnections": 16}
        cfg = write_config(
            work / "cpu.yaml", source, target, work / "savepoints", target_extra=extra
        )
        if variant == "cluster":
            sys.path.insert(0, str(BENCH.parent))
            from tests.netfakes import FakeCluster

            cluster = FakeCluster(target.url, nodes=3).start()
            text = cfg.read_text().replace(f"port: {target.port}", f"port: {cluster.port}")
            cfg.write_text(text, encoding="utf-8")
        env_before = os.environ.get("PYTHONPATH")
        if variant == "before":  # the same run against another copy of the source
            os.environ["PYTHONPATH"] = BEFORE_SRC
        child = run_child([*migrator_cmd(cfg), "--no-progress"], work / f"cpu-{variant}.log")
        if env_before is not None:
            os.environ["PYTHONPATH"] = env_before
        copied = count(target.url, TABLE)
    finally:
        if cluster is not None:
            cluster.stop()
        target.stop()
    return {
        "variant": variant,
        "items": items,
        "exit": child.rc,
        "copied": copied,
        "items_per_s": copied / child.wall,
        "cpu_us_per_item": child.cpu / max(1, copied) * 1e6,
        "sys_us_per_item": child.sys_cpu / max(1, copied) * 1e6,
        "shares": cluster.shares() if cluster is not None else None,
        "src": src_fingerprint(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--variants", default="http")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--before-src", default="", help="src dir for the `before` variant")
    args = ap.parse_args()
    global BEFORE_SRC
    BEFORE_SRC = args.before_src
    work = WORK.parent / "cpu"
    src = Source(work / "logs", None)
    try:
        server = src.ensure(args.items)
        for _ in range(args.repeat):
            for v in args.variants.split(","):
                r = one(v, server, args.items, work)
                say(
                    f"{v}: {r['items_per_s']:,.0f} items/s, {r['cpu_us_per_item']:.1f} us CPU/item "
                    f"({r['sys_us_per_item']:.1f} sys), exit {r['exit']}, copied {r['copied']:,}"
                    + (f", node shares {r['shares']}" if r["shares"] else "")
                )
    finally:
        src.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
