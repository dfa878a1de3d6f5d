"""The sections of `make bench` that are benchmark scripts of their own (bench/*.py).

Each runs its script as a child process with ``--json``, keeps what it wrote, and renders it as
Markdown for docs/performance.md. With a ``before`` tree (``bench/run.py --before REV``: the
``src/`` of an older commit), the sections that can also time the older code in the same run,
so that every before/after pair comes from one machine and one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def script(name: str, args: list[str], work: Path, tag: str, src: Path | None = None) -> Any:
    """Run bench/NAME with ARGS and ``--json``; return what it wrote (None if it failed)."""
    out = work / f"{tag}.json"
    log = work / f"{tag}.log"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src or ROOT / "src")}
    cmd = [sys.executable, str(BENCH / name), *args, "--json", str(out)]
    say(f"{tag}: {' '.join(cmd[1:])}")
    with log.open("wb") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    tail = log.read_text(errors="replace").splitlines()[-12:]
    for line in tail:
        say(f"  {line}")
    if not out.exists():
        say(f"  {tag} wrote no results (exit {rc}); see {log}")
        return None
    data = json.loads(out.read_text())
    if isinstance(data, dict):
        data["exit_code"] = rc
    return {"exit_code": rc, "runs": data} if isinstance(data, list) else data


# --------------------------------------------------------------------------- replay, wide


def _floors(max_us: float, quick: bool) -> list[str]:
    # A smoke run's few records are dominated by start-up: the script's loose defaults then.
    return ["--check"] if quick else ["--check", "--max-us", str(max_us), "--min-rate", "20000"]


def bench_wide(quick: bool, before: Path | None, work: Path) -> dict[str, Any]:
    """The scripted wide stream (bench/replay_wide.py): DynamoDB Streams and Kinesis, null
    target and dynalite, library and CLI; 512 lineages for memory; the older code by CLI."""
    shards, records = (16, 1000) if quick else (64, 3000)
    wide_shards, wide_records = (128, 200) if quick else (512, 500)
    size = ["--shards", str(shards), "--records", str(records)]
    big = ["--shards", str(wide_shards), "--records", str(wide_records)]
    long = ["--shards", str(shards), "--records", str(3 * records)]
    runs: dict[str, Any] = {"shards": shards, "records": records, "wide_shards": wide_shards}
    plan: list[tuple[str, list[str], Path | None]] = [
        # --check: the regression floors (on the library run into the null target), with room
        # for a loaded 2-core machine: the 20,000 records/s, and CPU well above what
        # a quiet run takes (Streams ~10-14 us/record, Kinesis ~19-23).
        (
            "streams",
            [*size, "--targets", "null,dynalite", "--modes", "lib,cli", *_floors(30, quick)],
            None,
        ),
        (
            "kinesis",
            [*size, "--kinesis", "--targets", "null", "--modes", "lib,cli", *_floors(45, quick)],
            None,
        ),
        # The same library runs three more times in a row: this machine's spread, and a median;
        # each beside a run that only reads and decodes the stream (the floor under its cost).
        (
            "streams_repeat",
            [*size, "--targets", "null", "--modes", "lib,read", "--repeat", "3"],
            None,
        ),
        (
            "kinesis_repeat",
            [*size, "--kinesis", "--targets", "null", "--modes", "lib,read", "--repeat", "3"],
            None,
        ),
        ("streams_wide", [*big, "--targets", "null", "--modes", "lib"], None),
        # The Spark executors' replay: the CLI on local[2], JVM and Python workers counted; then
        # a stream three times as long, whose extra records price the workers' steady state
        # apart from their start-up.
        ("streams_spark", [*size, "--targets", "null", "--modes", "spark:2"], None),
        ("streams_spark_long", [*long, "--targets", "null", "--modes", "spark:2"], None),
        # Kinesis on Spark: one task reads the ready shards in turn (newest-wins per key).
        ("kinesis_spark", [*size, "--kinesis", "--targets", "null", "--modes", "spark:2"], None),
        (
            "kinesis_spark_long",
            [*long, "--kinesis", "--targets", "null", "--modes", "spark:2"],
            None,
        ),
    ]
    if before is not None:
        plan += [
            ("streams_before", [*size, "--targets", "null", "--modes", "cli"], before),
            ("kinesis_before", [*size, "--kinesis", "--targets", "null", "--modes", "cli"], before),
            ("streams_wide_before", [*big, "--targets", "null", "--modes", "cli"], before),
        ]
    for tag, args, src in plan:
        extra = ["--src", str(src)] if src is not None else []
        runs[tag] = script("replay_wide.py", [*args, *extra], work, f"wide-{tag}")
    return runs


def _wide_row(label: str, r: dict[str, Any]) -> str:
    # Spark: CPU of the whole machine less the servers' (JVM and workers), RSS of the driver.
    spark = r.get("cpu_from") == "machine"
    return (
        f"| {label} | {r['mode']} | {r['target']} | {r['records']:,} | "
        f"{r['records_per_s']:,.0f} | {r['us_per_record']:.1f}{' (machine)' if spark else ''} | "
        f"{r['maxrss_mib']:.0f}{' (driver)' if spark else ''} | "
        f"{r['source_cpu_s']:.1f} | {r.get('load', float('nan')):.2f} | "
        f"{format(r['steal'], '.0%') if r.get('steal') is not None else '-'} |"
    )


LIB_RUNS = (("streams", "Streams"), ("kinesis", "Kinesis"))


def _null_runs(sec: dict[str, Any] | None, tag: str, mode: str = "lib") -> list[dict[str, Any]]:
    """Every run in ``mode`` of a replay (``streams``, ``kinesis``) into the null target: the
    first and its repeats."""
    return [
        r
        for t in (tag, f"{tag}_repeat")
        for r in ((sec or {}).get(t) or {}).get("runs", [])
        if r["mode"] == mode and r["target"] == "null"
    ]


def _spread_and_workers(sec: dict[str, Any]) -> list[str]:
    """The library runs' spread and median; the Spark workers' Python CPU, start-up apart."""
    lines: list[str] = []
    for tag, label in LIB_RUNS:
        lib = _null_runs(sec, tag)
        if not lib:
            continue
        us = statistics.median(r["us_per_record"] for r in lib)
        rate = statistics.median(r["records_per_s"] for r in lib)
        steal = ", ".join(f"{r['steal']:.0%}" for r in lib if r.get("steal") is not None)
        lines += [
            "",
            f"{label}, library into the null target, {len(lib)} runs: "
            f"{', '.join(format(r['us_per_record'], '.1f') for r in lib)} us/record "
            f"(median {us:.1f}), median {rate:,.0f} records/s"
            + (f"; steal over each run: {steal}" if steal else "")
            + ".",
        ]
    for tag, label in LIB_RUNS:
        reads = _null_runs(sec, f"{tag}_repeat", "read")
        lib = _null_runs(sec, f"{tag}_repeat")
        if reads and lib:
            floor = statistics.median(r["us_per_record"] for r in reads)
            us = statistics.median(r["us_per_record"] for r in lib)
            lines += [
                "",
                f"{label}, read and decoded only (*read*: the migrator's client, shard reader and "
                f"page decoder, shard after shard, nothing written), {len(reads)} runs each "
                f"beside a library run: "
                f"{', '.join(format(r['us_per_record'], '.1f') for r in reads)} us/record "
                f"(median {floor:.1f}), against the library runs' median {us:.1f}: reading "
                f"and decoding are {floor / us:.0%} of the replay's cost.",
            ]
    for tag, label in LIB_RUNS:
        lines += _spark_steady_state(sec, tag, label)
    return lines


def _spark_runs(
    sec: dict[str, Any] | None, tag: str
) -> tuple[dict[str, Any], dict[str, Any], float] | None:
    """A replay's Spark run, the one three times as long, and the workers' Python CPU seconds
    per record beyond the first run's records (their start-up cancels out)."""
    runs = [
        r
        for t in (f"{tag}_spark", f"{tag}_spark_long")
        for r in ((sec or {}).get(t) or {}).get("runs", [])
        if r.get("worker_python_cpu_s") is not None
    ]
    if len(runs) != 2 or runs[1]["records"] <= runs[0]["records"]:
        return None
    short, long = runs
    extra = long["records"] - short["records"]
    return short, long, (long["worker_python_cpu_s"] - short["worker_python_cpu_s"]) / extra


def _spark_steady_state(sec: dict[str, Any], tag: str, label: str) -> list[str]:
    """The Spark workers' Python CPU per record in the steady state: the difference between
    a run and one three times as long, so that their start-up cancels out."""
    got = _spark_runs(sec, tag)
    if got is None:
        return []
    short, long, steady = got
    fixed = short["worker_python_cpu_s"] - steady * short["records"]
    return [
        "",
        f"{label} on Spark, its Python workers (pyspark's daemon and the workers it forks, "
        f"their CPU read from /proc): {short['worker_python_cpu_s']:.2f} s for "
        f"{short['records']:,} records, {long['worker_python_cpu_s']:.2f} s for "
        f"{long['records']:,}. Each record beyond the first {short['records']:,} cost "
        f"{steady * 1e6:.1f} us: the executors' replay in its steady state. The other "
        f"{max(0.0, fixed):.1f} s are the workers' start-up, paid once per executor: most of "
        f"it imports (pyspark, which Spark ships as a zip of sources that each process "
        f"compiles, then our package).",
    ]


def render_wide(sec: dict[str, Any]) -> list[str]:
    lines = [
        "## Replay on a wide stream: the migrator's own cost (issue 22)",
        "",
        f"Run {sec['machine']['date']}, load average before {sec['machine']['loadavg'][0]:.2f}. "
        f"`bench/replay_wide.py`: a scripted DynamoDB Streams (or Kinesis) endpoint in its own "
        f"process serves {sec['shards']} lineages (a closed parent and its open child) of "
        f"{sec['records']:,} ~1 KB NEW_IMAGE records each (INSERT/MODIFY/REMOVE, hot keys) from "
        "pre-encoded pages, so it cannot bottleneck the migrator. *null*: a target answering "
        "every BatchWriteItem from one pre-encoded answer (the migrator's own cost); *dynalite*: "
        "a real one, whose table is checked against the stream's last state. *lib*: "
        "`migrate()` as the CLI wires it, measured around the call; *cli*: the whole process "
        "(start-up included); *spark:2*: the CLI on Spark `local[2]`, its CPU the whole machine's "
        "less the scripted servers' (the JVM and its Python workers included), its RSS the "
        "driver's. records/s: first GetRecords to last write. *steal*: the share of the "
        "machine's CPU time its hypervisor gave to other guests while the run lasted (this is a "
        "shared virtual machine). *before*: the code at the start of this round "
        f"(`{sec.get('before_rev', '?')}`), through its CLI.",
        "",
        "| source | mode | target | records | records/s | migrator CPU us/record | peak RSS MiB "
        "| source CPU s | load | steal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "streams_before": "Streams, before",
        "streams": "Streams",
        "streams_repeat": "Streams, again",
        "streams_spark": "Streams, Spark local[2]",
        "streams_spark_long": "Streams, Spark local[2], 3x longer",
        "kinesis_before": "Kinesis, before",
        "kinesis": "Kinesis",
        "kinesis_repeat": "Kinesis, again",
        "kinesis_spark": "Kinesis, Spark local[2]",
        "kinesis_spark_long": "Kinesis, Spark local[2], 3x longer",
        "streams_wide_before": f"Streams, {sec['wide_shards']} lineages, before",
        "streams_wide": f"Streams, {sec['wide_shards']} lineages",
    }
    for tag, label in names.items():
        got = sec.get(tag)
        if not got:
            continue
        for r in got.get("runs", []):
            lines.append(_wide_row(label, r))
        if got.get("exit_code"):
            lines.append(f"| {label} | | | | exit {got['exit_code']} (a floor broke) | | | | | |")
    lines += _spread_and_workers(sec)
    lines += [
        "",
        "Reproduce: `PYTHONPATH=src .venv/bin/python bench/replay_wide.py [--kinesis] "
        "[--shards 512 --records 500] [--profile] [--check]`.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- validate


def bench_validate(quick: bool, before: Path | None, work: Path) -> dict[str, Any]:
    args = ["--items", "5000" if quick else "100000", "--segments", "8", "--pairs", "2"]
    if before is not None:
        args += ["--before", str(before)]
    return script("validate_scale.py", args, work, "validate") or {}


def render_validate(sec: dict[str, Any]) -> list[str]:
    if not sec.get("runs"):
        return []
    lines = [
        f"## Validate: {sec['items']:,} x 1 KB items, two dynalite servers",
        "",
        f"Run {sec['machine']['date']}, load average before {sec['machine']['loadavg'][0]:.2f}. "
        f"`bench/validate_scale.py`, {sec['segments']} segments: `validate` through its CLI "
        "against a plain comparer (parallel segmented scans of both sides with the migrator's "
        "client, a digest per key, compared by key), first on identical tables, then with 1% of "
        "the target different. *before*: the code at the start of this round.",
        "",
        "| tables | tool | exit | wall s | client CPU s | servers' CPU s | peak RSS MiB | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sec["runs"]:
        lines.append(
            f"| {r['state']} | {r['label']} | {r['exit_code']} | {r['wall_s']:.1f} | "
            f"{r['client_cpu_s']:.1f} | {r['servers_cpu_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['load']:.2f} |"
        )
    for f in sec.get("failed", []):
        lines.append(f"\nFloor failed: {f}")
    lines.append("")
    return lines


# --------------------------------------------------------------------------- export


def bench_export(quick: bool, before: Path | None, work: Path) -> dict[str, Any]:
    args = ["--items", "5000" if quick else "100000", "--files", "4" if quick else "16"]
    return script("export_snapshot.py", args, work, "export") or {}


def render_export(r: dict[str, Any]) -> list[str]:
    if not r.get("best"):
        return []
    m, best = r["machine"], r["best"]
    lines = [
        f"## Snapshot from an S3 export: {r['items']:,} x 1 KB items -> dynalite",
        "",
        f"Run {m['date']}, load average before {m['loadavg'][0]:.2f}. The same items copied by "
        "the migrator's CLI from a Scan of a dynalite table, and from a DynamoDB export in AWS's "
        f"layout ({r['files']} gzipped data files in moto's S3, items in the table's hashed key "
        "order as AWS writes them, `type: dynamodb-s3-export`), each into a fresh dynalite; best "
        f"of {len(r['runs']) // 2}, timed from process start to exit. *Source server*: dynalite "
        "serving the Scan, or moto serving S3. Both with the write budget raised as in the "
        "snapshot section.",
        "",
        "| snapshot from | items/s | client CPU us/item | peak RSS MiB | source server CPU s "
        "| target CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("scan", "export"):
        b = best[kind]
        lines.append(
            f"| {kind} | {b['items_per_s']:,.0f} | {b['client_cpu_us_per_item']:.0f} | "
            f"{b['peak_rss_mib']:.0f} | {b['source_cpu_s']:.1f} | {b['target_cpu_s']:.1f} |"
        )
    every = ", ".join(f"{x['kind']} {x['items_per_s']:,.0f}" for x in r["runs"])
    lines += [
        "",
        f"Every run, in order (items/s): {every}. Both paths write through the same copier; "
        "the export reads no source capacity at all, where a Scan of DynamoDB is held to "
        "`readThroughput`. Reproduce: `.venv/bin/python bench/export_snapshot.py --items 100000 "
        "--files 16`.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- Spark scaling


def bench_spark(quick: bool, before: Path | None, work: Path) -> dict[str, Any]:
    items = "5000" if quick else "100000"
    cores = os.cpu_count() or 1
    masters = ",".join(f"local[{n}]" for n in sorted({1, cores, 2 * cores}))
    args = ["--items", items, "--segments", "16", "--master", masters]
    return script("spark_vs_local.py", args, work, "spark") or {}


def render_spark(sec: dict[str, Any]) -> list[str]:
    if not sec.get("spark"):
        return []
    loc = sec["local"]
    lines = [
        "## Snapshot on Spark: how it grows with executors",
        "",
        f"Run {sec['machine']['date']}, load average before {sec['machine']['loadavg'][0]:.2f}. "
        f"`bench/spark_vs_local.py`: {sec['items']:,} x 1 KB items, dynalite -> dynalite, "
        f"{sec['segments']} scan segments, the same table copied by the local engine and by "
        "the Spark engine on `local[N]` (N executor cores in one JVM on this machine). The "
        "session's start is timed apart: a cluster pays it once per run. Both engines with "
        "the write budget raised as in the snapshot section.",
        "",
        "| engine | items/s | copy s | session start s | load |",
        "|---|---|---|---|---|",
        f"| local engine | {loc['items_per_s']:,.0f} | {loc['seconds']:.1f} | - | - |",
    ]
    for r in sec["spark"]:
        lines.append(
            f"| Spark {r['master']} | {r['items_per_s']:,.0f} | {r['seconds']:.1f} | "
            f"{r['startup_s']:.1f} | {r['load']:.2f} |"
        )
    best = max(sec["spark"], key=lambda r: r["items_per_s"])
    lines += [
        "",
        f"Best Spark figure here: {best['items_per_s']:,.0f} items/s on {best['master']}, "
        f"{best['items_per_s'] / loc['items_per_s']:.2f}x the local engine's.",
        "",
        *SPARK_MODEL.splitlines(),
        "",
    ]
    return lines


SPARK_MODEL = """\
**The model for N machines.** Each Spark task runs the local engine's copier on one unit (a scan
segment or an export data file), so with E executor cores the snapshot's rate is

    rate(E) = min(E x c, R_source, W_target, U x u)

- c: what one executor core copies; from the local engine's client CPU per item in the
  snapshot section, c = 1e6 / (us per item) items/s when nothing else limits it;
- R_source: the source's read budget (`readThroughput` x `throughputReadPercent`). DynamoDB
  serves at most 3,000 read units/s per partition (8 KB per unit at eventual consistency), so
  a table of P partitions reads at most P x 24 MB/s; an export reads no table capacity;
- W_target: the target's write ceiling (the cluster's, for Alternator: more nodes, more),
  and the write budget (`writeThroughput` x `throughputWritePercent`; for an on-demand table
  or Alternator, 40,000 x 0.5 = 20,000 WCU/s unless set, ~20,000 items/s of 1 KB: the runs
  above raise it so that it does not hide the engines);
- U x u: the units (`scanSegments`, or the export's data files) times what one unit's task
  copies; with fewer units than executor cores the extra cores idle.

It stops scaling at the first of these limits: add executors until E x c reaches
min(R_source, W_target), with at least E units. On one machine, as measured above, the
executors share its cores with the servers, so the target's ceiling or the cores are reached
first. The replay scales the same way per micro-batch, bounded by the number of open shards (a
task per shard; a Kinesis source runs one task per micro-batch, so that newest-wins per key
holds across shards, and does not scale with executors) and by a fixed cost of one Spark job
per micro-batch, which bounds a quiet
stream's latency rather than a busy one's throughput (`bench/spark_replay_backlog.py` times
it)."""


# --------------------------------------------------------------------------- snapshot ceiling


def bench_ceiling(quick: bool, before: Path | None, work: Path) -> dict[str, Any]:
    items = ["--items", "5000" if quick else "100000", "--moto-items", "2000" if quick else "10000"]
    args = [*items, "--pairs", "2" if quick else "5", "--null-runs", "1", "--check"]
    if before is not None:
        args += ["--before-src", str(before)]
    sec = script("snapshot_ceiling.py", args, work, "ceiling") or {}
    now = sorted(sec.get("ratios", {}).get("-now" if before is not None else "", []))
    sec["ratio"] = now[len(now) // 2] if now else None  # the median pair, as --check judges
    sec["items"] = int(items[1])
    return sec


def _budget(sec: dict[str, Any]) -> str:
    wcu = next((r.get("write_budget") for r in sec["runs"] if r.get("write_budget")), None)
    return f"`writeThroughput: {wcu:,}`, 100%" if wcu else "no: older runs kept the default"


def render_ceiling(sec: dict[str, Any]) -> list[str]:
    if not sec.get("runs"):
        return []
    lines = [
        f"## Snapshot against the target's bare write ceiling: {sec['items']:,} x 1 KB items",
        "",
        f"Run {sec['machine']['date']}, load average before {sec['machine']['loadavg'][0]:.2f}. "
        "`bench/snapshot_ceiling.py`, a fresh dynalite target per pair (the order within a pair "
        "turning from pair to pair; dynalite keeps what a dropped table held, and slows as it "
        "grows), each run on a fresh table: "
        "*ceiling*: pre-encoded 25-item BatchWriteItem bodies of the same items over "
        "keep-alive connections from several processes, no Scan; *snapshot*: the migrator's "
        "CLI copying them from a scripted Scan endpoint (pre-encoded pages, so that the source "
        "takes no core the target needs); *before*: the code at the start of this round. "
        "items/s of a snapshot: first Scan served to exit; *process*: start to exit. *-> null*: "
        "into a target that takes every batch at once (the migrator's own ceiling); *moto*: "
        "from moto, whose Scan bounds it. The snapshots' write budget is raised "
        f"({_budget(sec)}) so that the target, not the budget, bounds them; *default budget*: "
        "the same copy with the default budget of an on-demand table (40,000 x 0.5 = 20,000 "
        "WCU/s with a one-second burst, the Scylla Migrator's), which an operator raises with "
        "`target.writeThroughput` when the target takes more.",
        "",
        "| pair | run | items/s | items/s (process) | migrator CPU us/item | peak RSS MiB "
        "| target CPU us/item | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sec["runs"]:
        if r["kind"] == "ceiling":
            name = "ceiling"
        else:
            name = f"snapshot{r['code'].replace('-now', '').replace('-', ', ')}"
            if r.get("source") in ("-> null", "moto", "default budget"):
                name = f"snapshot {r['source']}{r['code'].replace('-now', '').replace('-', ', ')}"
        pair = "-" if r.get("pair") is None else str(r["pair"] + 1)
        mig = (f"{r['items_per_s_process']:,.0f}", f"{r['cpu_us_per_item']:.1f}",
               f"{r['maxrss_mib']:.0f}") if r["kind"] != "ceiling" else ("-", "-", "-")  # fmt: skip
        lines.append(
            f"| {pair} | {name} | {r['items_per_s']:,.0f} | {mig[0]} | {mig[1]} | {mig[2]} | "
            f"{r['target_cpu_us_per_item']:.1f} | {r['load']:.2f} |"
        )
    lines.append("")
    for code, ratios in sec.get("ratios", {}).items():
        label = "before" if code == "-before" else "now"
        lines.append(
            f"Snapshot / ceiling per pair ({label}): " + ", ".join(f"{x:.2f}" for x in ratios) + "."
        )
    if sec.get("ratio") is not None:
        lines.append(f"Median pair (now): **{sec['ratio']:.0%}** of the ceiling.")
    return [*lines, ""]


# --------------------------------------------------------------------------- issue 22's figures

REPLAY_US = 10.0  # migrator CPU per record, library run, null target
REPLAY_RATE = 20_000.0  # records/s from one process
REPLAY_RSS_MIB = 300.0  # at 64 lineages and at 512


def _run(sec: dict[str, Any] | None, tag: str, mode: str = "lib") -> dict[str, Any] | None:
    got = (sec or {}).get(tag) or {}
    return next(
        (r for r in got.get("runs", []) if r["mode"] == mode and r["target"] == "null"), None
    )


def targets22(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(figure, target, measured, met) for issue 22's goals, from the sections that ran."""
    rows: list[tuple[str, str, str, bool]] = []
    wide = results.get("wide")
    for tag, label in (("streams", "Streams"), ("kinesis", "Kinesis")):
        for mode in ("lib", "cli"):
            r = _run(wide, tag, mode)
            if r is None:
                continue
            us, rate = r["us_per_record"], r["records_per_s"]
            rows.append(
                (f"{label} replay CPU/record ({mode})", f"<= {REPLAY_US:.0f} us", f"{us:.1f} us",
                 us <= REPLAY_US)
            )  # fmt: skip
            rows.append(
                (f"{label} replay records/s ({mode})", f">= {REPLAY_RATE:,.0f}", f"{rate:,.0f}",
                 rate >= REPLAY_RATE)
            )  # fmt: skip
    for tag, label in LIB_RUNS:
        lib = _null_runs(wide, tag)
        if len(lib) > 1:  # the first run and the repeats: this machine's spread, as a median
            us = statistics.median(r["us_per_record"] for r in lib)
            rows.append(
                (f"{label} replay CPU/record (lib, median of {len(lib)} runs)",
                 f"<= {REPLAY_US:.0f} us", f"{us:.1f} us", us <= REPLAY_US)
            )  # fmt: skip
    for tag, label in LIB_RUNS:
        got = _spark_runs(wide, tag)
        if got is not None:
            us = got[2] * 1e6
            rows.append(
                (f"{label} replay on Spark, executors' Python CPU/record (steady state)",
                 f"<= {REPLAY_US:.0f} us", f"{us:.1f} us", us <= REPLAY_US)
            )  # fmt: skip
    w = wide or {}
    for tag, label in (("streams", w.get("shards")), ("streams_wide", w.get("wide_shards"))):
        r = _run(wide, tag)
        if r is not None:
            rss = r["maxrss_mib"]
            rows.append(
                (f"replay peak RSS, {label} lineages", f"< {REPLAY_RSS_MIB:.0f} MiB",
                 f"{rss:.0f} MiB", rss < REPLAY_RSS_MIB)
            )  # fmt: skip
    val = results.get("validate") or {}
    for state in ("identical", "1% different"):
        runs = [r for r in val.get("runs", []) if r["state"] == state]
        mine = [r for r in runs if r["label"] == "validate"]
        plain = [r for r in runs if r["label"] == "plain comparer"]
        if mine and plain:
            ratio = min(r["wall_s"] for r in mine) / min(r["wall_s"] for r in plain)
            rows.append(
                (f"validate wall / plain comparer, fastest of each ({state})", "<= 1.00x",
                 f"{ratio:.2f}x",
                 ratio <= 1.0)
            )  # fmt: skip
    ceil = results.get("ceiling") or {}
    if ceil.get("ratio") is not None:
        rows.append(
            ("snapshot / target's bare write ceiling", ">= 90%", f"{ceil['ratio']:.0%}",
             ceil["ratio"] >= 0.9)
        )  # fmt: skip
    return rows


def render_targets22(results: dict[str, Any]) -> list[str]:
    rows = targets22(results)
    if not rows:
        return []
    lines = [
        "## Targets (issue 22)",
        "",
        "| figure | target | measured | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {'met' if ok else 'NOT met'} |" for a, b, c, ok in rows]
    return [*lines, ""]


# --------------------------------------------------------------------------- registry

Runner = Callable[[bool, "Path | None", Path], dict[str, Any]]
Renderer = Callable[[dict[str, Any]], list[str]]

SECTIONS: dict[str, tuple[Runner, Renderer]] = {
    "ceiling": (bench_ceiling, render_ceiling),
    "wide": (bench_wide, render_wide),
    "validate": (bench_validate, render_validate),
    "export": (bench_export, render_export),
    "spark": (bench_spark, render_spark),
}
