"""`make bench`: the migrator against a plain boto3 copier, its memory, and its replay latency.

Starts its own servers (dynalite, moto) on loopback ports and reports, in one run:

- snapshot: N x 1 KB items, dynalite -> dynalite, the migrator (its CLI, ``streamChanges:
  false``) and the plain copier (bench/plain_copier.py), each in its own child process: items/s
  end to end (process start to exit) and client CPU (user + sys of that child, from wait4) per
  item; server CPU from /proc/PID/stat;
- rss: the migrator's peak RSS (ru_maxrss of the child) at each size of ``--rss-items``;
- replay: moto source with a stream -> dynalite, the migrator replaying; puts at 100/s and
  1,000/s and the delay until each is visible in the target (p50/p99), the records/s applied,
  and the drain rate of a backlog.

Prints a table, writes .bench/results.json (sections run now replace those of earlier runs) and,
with ``--write-docs``, regenerates docs/performance.md from it. Numbers only; nothing asserts.

    .venv/bin/python bench/run.py [--items N] [--rss-items 100000,1000000] [--quick]
                                  [--only snapshot,rss,replay] [--skip-replay] [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "src"))

from loader import RAISED, count, create_table, load  # noqa: E402
from replay_latency import PhaseResult, read_stream_ceiling, run_phase  # noqa: E402
from replay_wide import machine_busy, proc_stat  # noqa: E402
from sections import SECTIONS as SCRIPTED  # noqa: E402
from sections import render_targets22  # noqa: E402

from alternator_migrator.localservers import Server, start_dynalite, start_moto  # noqa: E402

WORK = ROOT / ".bench" / "run"
RESULTS = ROOT / ".bench" / "results.json"
DOCS = ROOT / "docs" / "performance.md"
TABLE = "bench"
SECTIONS = ("snapshot", "rss", "replay", *SCRIPTED)

# The figures issue 6 asks for.
TARGET_SPEEDUP = 2.0  # migrator items/s over the plain copier's, same run
TARGET_CPU_US = 40.0  # migrator client CPU per item
TARGET_RSS_MIB = 300.0  # migrator peak RSS at every size
TARGET_RSS_FLAT = 0.20  # largest size's peak RSS at most 20% above the smallest's
TARGET_P99_100 = 1.0  # replay p99 seconds at 100 mutations/s


# --------------------------------------------------------------------------- measuring


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + sys) a live process has used so far; 0.0 if it is gone."""
    try:
        return proc_stat(pid)[1]
    except OSError:
        return 0.0


@dataclass
class Child:
    rc: int
    wall: float
    cpu: float  # user + sys seconds of the child (and any children it waited for)
    maxrss_mib: float
    sys_cpu: float  # the sys part of ``cpu``: the kernel's share (sockets, memory)


def run_child(cmd: list[str], log: Path, src: Path | None = None) -> Child:
    """Run ``cmd`` to completion; its own rusage from wait4 (not the loader's or servers').
    ``src``: the migrator tree it imports (default: this checkout's)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src or ROOT / "src")}
    with log.open("wb") as fh:
        began = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        proc.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        usage.ru_stime,
    )


class Meter:
    """CPU used by the servers and by the whole machine between start() and stop()."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.servers = servers
        self.cpu: dict[str, float] = {}
        self.busy = 0.0
        self.wall = 0.0

    def start(self) -> Meter:
        self._cpu0 = {n: proc_cpu(s.proc.pid) for n, s in self.servers.items()}
        self._busy0 = machine_busy()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> Meter:
        self.cpu = {n: proc_cpu(s.proc.pid) - self._cpu0[n] for n, s in self.servers.items()}
        self.busy = machine_busy() - self._busy0
        self.wall = time.monotonic() - self._t0
        return self


def migrator_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "alternator_migrator", "migrate", "--config", str(config)]


def write_config(
    path: Path,
    source: Server,
    target: Server,
    savepoints: Path,
    *,
    table: str = TABLE,
    stream: bool = False,
    target_extra: dict[str, Any] | None = None,
) -> Path:
    def side(s: Server) -> dict[str, Any]:
        return {
            "type": "dynamodb",
            "table": table,
            "region": "us-east-1",
            "endpoint": {"host": "http://127.0.0.1", "port": s.port},
            "credentials": {"accessKey": "bench", "secretKey": "bench"},
        }

    shutil.rmtree(savepoints, ignore_errors=True)
    cfg = {
        "source": side(source),
        "target": {**side(target), "streamChanges": stream, **(target_extra or {})},
        "savepoints": {"path": str(savepoints), "intervalSeconds": 5},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def src_fingerprint() -> str:
    """A short hash of the migrator's source as it is now: the code is being changed while the
    benchmark is re-run, so every migrator figure records which code it measured."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "src" / "alternator_migrator").rglob("*.py")):
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- snapshot + rss


class Source:
    """A dynalite source table, loaded incrementally to the sizes asked for."""

    def __init__(self, logs: Path, path: Path | None) -> None:
        self.logs = logs
        self.path = path
        self.server: Server | None = None
        self.loaded = 0

    def ensure(self, items: int) -> Server:
        if self.server is not None and self.loaded > items:
            self.stop()
        if self.server is None:
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                self.path.mkdir(parents=True)
            self.server = start_dynalite(self.logs, path=self.path)
            create_table(self.server.url, TABLE)
            self.loaded = 0
        if items > self.loaded:
            say(f"loading source items {self.loaded:,}..{items:,}")
            secs = load(self.server.url, TABLE, self.loaded, items)
            say(f"  loaded {items - self.loaded:,} items in {secs:.0f}s")
            self.loaded = items
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def copy_run(
    tool: str, source: Server, items: int, work: Path, before: Path | None = None
) -> dict[str, Any]:
    """One measured copy of the whole source table into a fresh target server. ``tool``:
    plain, migrator, or before (the migrator of the ``before`` tree)."""
    target = start_dynalite(work / "logs")
    try:
        create_table(target.url, TABLE)  # both tools find the table ready
        if tool in ("migrator", "before"):
            cfg = write_config(
                work / "snapshot.yaml", source, target, work / "savepoints", target_extra=RAISED
            )
            cmd = [*migrator_cmd(cfg), "--no-progress"]
        else:
            cmd = [
                sys.executable,
                str(BENCH / "plain_copier.py"),
                "--source",
                source.url,
                "--target",
                target.url,
                "--table",
                TABLE,
            ]
        code = src_fingerprint() if tool != "before" else "before"
        meter = Meter({"source": source, "target": target}).start()
        child = run_child(cmd, work / f"{tool}-{items}.log", before if tool == "before" else None)
        meter.stop()
        copied = count(target.url, TABLE)
    finally:
        target.stop()
    servers = meter.cpu["source"] + meter.cpu["target"]
    other = max(0.0, meter.busy - servers - child.cpu)
    return {
        "tool": tool,
        "items": items,
        "exit_code": child.rc,
        "copied": copied,
        "seconds": child.wall,
        "items_per_s": copied / child.wall,
        "client_cpu_s": child.cpu,
        "client_cpu_us_per_item": child.cpu / max(1, copied) * 1e6,
        "client_sys_us_per_item": child.sys_cpu / max(1, copied) * 1e6,
        "client_cores": child.cpu / child.wall,
        "peak_rss_mib": child.maxrss_mib,
        "source_cpu_s": meter.cpu["source"],
        "target_cpu_s": meter.cpu["target"],
        "server_cpu_share": servers / max(1e-9, servers + child.cpu),
        "other_cores": other / meter.wall,
        "src": code,
        "log": str(work / f"{tool}-{items}.log"),
    }


def bench_snapshot(
    src: Source, items: int, repeat: int, work: Path, before: Path | None = None
) -> dict[str, Any]:
    server = src.ensure(items)
    runs: list[dict[str, Any]] = []
    tools = ("plain", "migrator", *(("before",) if before is not None else ()))
    for r in range(repeat):
        for tool in tools:
            say(f"snapshot: {tool} copying {items:,} items (run {r + 1}/{repeat})")
            res = copy_run(tool, server, items, work, before)
            say(
                f"  {res['items_per_s']:,.0f} items/s, {res['client_cpu_us_per_item']:.0f} us "
                f"CPU/item, exit {res['exit_code']}, copied {res['copied']:,}"
            )
            runs.append(res)

    def best(tool: str) -> dict[str, Any]:
        return max((x for x in runs if x["tool"] == tool), key=lambda x: x["items_per_s"])

    plain, mig = best("plain"), best("migrator")
    older = {"before": best("before")} if before is not None else {}
    return {
        **older,
        "items": items,
        "item_bytes": 1000,
        "repeat": repeat,
        "runs": runs,
        "plain": plain,
        "migrator": mig,
        "speedup": mig["items_per_s"] / plain["items_per_s"],
    }


def baseline_rss(work: Path) -> float:
    cmd = [
        sys.executable,
        "-c",
        "import alternator_migrator.cli, alternator_migrator.pipeline.migrate",
    ]
    return run_child(cmd, work / "baseline.log").maxrss_mib


def bench_rss(
    src: Source, sizes: list[int], reuse: dict[str, Any] | None, work: Path
) -> dict[str, Any]:
    points = []
    for size in sorted(sizes):
        if reuse is not None and reuse["items"] == size:
            say(f"rss: {size:,} items: reusing the snapshot section's migrator run")
            res = reuse
        else:
            server = src.ensure(size)
            say(f"rss: migrator copying {size:,} items")
            res = copy_run("migrator", server, size, work)
            say(f"  peak RSS {res['peak_rss_mib']:.0f} MiB, {res['items_per_s']:,.0f} items/s")
        points.append(
            {
                "items": size,
                "peak_rss_mib": res["peak_rss_mib"],
                "items_per_s": res["items_per_s"],
                "client_cpu_us_per_item": res["client_cpu_us_per_item"],
                "copied": res["copied"],
                "exit_code": res["exit_code"],
                "src": res.get("src"),
            }
        )
    rss = [p["peak_rss_mib"] for p in points]
    return {
        "points": points,
        "baseline_rss_mib": baseline_rss(work),
        "growth": (max(rss) - min(rss)) / min(rss) if rss else 0.0,
    }


# --------------------------------------------------------------------------- replay


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"migrator exited with {proc.returncode}; see {log}")
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"migrator did not log {text!r} within {timeout}s; see {log}")


def _phase_summary(
    name: str, res: PhaseResult, meter: Meter, migrator_cpu: float, measured_from: float
) -> dict[str, Any]:
    p50, p99 = res.percentile(0.5), res.percentile(0.99)
    applied_span = res.last_visible - measured_from
    return {
        "phase": name,
        "target_rate": res.target_rate,
        "writers": res.writers,
        "written": res.written,
        "achieved_rate": res.achieved_rate,
        "visible": res.visible,
        "not_visible": res.written - res.visible,
        "p50_s": p50,
        "p99_s": p99,
        "max_s": max(res.latencies) if res.latencies else None,
        "applied_per_s": res.visible / applied_span if applied_span > 0 else 0.0,
        "poll_interval_s": res.poll_interval,
        "migrator_cpu_s": migrator_cpu,
        "migrator_cpu_us_per_record": migrator_cpu / max(1, res.visible) * 1e6,
        "moto_cpu_s": meter.cpu["moto"],
        "dynalite_cpu_s": meter.cpu["dynalite"],
        "wall_s": meter.wall,
        "other_cores": max(
            0.0,
            meter.busy - meter.cpu["moto"] - meter.cpu["dynalite"] - migrator_cpu,
        )
        / max(1e-9, meter.wall),
    }


def bench_replay(
    rates: list[float], duration: float, backlog: int, writers_high: int, work: Path
) -> dict[str, Any]:
    logs = work / "logs"
    moto = start_moto(logs)
    target = start_dynalite(logs)
    proc: subprocess.Popen[bytes] | None = None
    phases: list[dict[str, Any]] = []
    log = work / "replay-migrator.log"
    try:
        create_table(moto.url, TABLE)
        cfg = write_config(
            work / "replay.yaml",
            moto,
            target,
            work / "replay-savepoints",
            stream=True,
            target_extra={"skipInitialSnapshotTransfer": True},
        )
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [*migrator_cmd(cfg), "--no-progress"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        code = src_fingerprint()
        _wait_for(log, "Starting to transfer changes", proc, 60)
        mig = proc
        say("replay: migrator replaying; warm-up")
        run_phase(moto.url, target.url, TABLE, "warm", 20, 3, 1, work)
        servers = {"moto": moto, "dynalite": target}
        for rate in rates:
            writers = 1 if rate <= 200 else writers_high
            say(f"replay: {rate:,.0f} mutations/s for {duration:.0f}s ({writers} writer(s))")
            meter = Meter(servers).start()
            c0 = proc_cpu(mig.pid)
            res = run_phase(
                moto.url, target.url, TABLE, f"r{rate:.0f}", rate, duration, writers, work
            )
            c1 = proc_cpu(mig.pid)
            meter.stop()
            s = _phase_summary(f"{rate:.0f}/s", res, meter, c1 - c0, res.first_ack)
            phases.append(s)
            say(
                f"  achieved {s['achieved_rate']:,.0f}/s, p50 {s['p50_s']}, p99 {s['p99_s']}, "
                f"applied {s['applied_per_s']:,.0f}/s, not visible {s['not_visible']}"
            )
        if backlog:
            say(f"replay: backlog of {backlog:,} puts written while the migrator is paused")
            resumed: list[float] = []

            def pause() -> None:
                os.kill(mig.pid, signal.SIGSTOP)

            def resume() -> None:
                resumed.append(time.monotonic())
                os.kill(mig.pid, signal.SIGCONT)

            pause()
            meter = Meter(servers).start()
            c0 = proc_cpu(mig.pid)
            res = run_phase(
                moto.url,
                target.url,
                TABLE,
                "backlog",
                0,
                0,
                writers_high,
                work,
                total=backlog // writers_high,
                after_written=resume,
                settle_timeout=120,
            )
            if not resumed:
                resume()
            c1 = proc_cpu(mig.pid)
            meter.stop()
            s = _phase_summary("backlog", res, meter, c1 - c0, resumed[0])
            phases.append(s)
            say(f"  drained at {s['applied_per_s']:,.0f} records/s")
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss = usage.ru_maxrss / 1024
        rc = proc.returncode
        say("replay: reading the whole stream with one plain reader (source's ceiling)")
        ceiling = read_stream_ceiling(moto.url, TABLE)
        say(f"  {ceiling['records']:,} records at {ceiling['records_per_s']:,.0f} records/s")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        moto.stop()
        target.stop()
    return {
        "duration_s": duration,
        "phases": phases,
        "migrator_exit_code": rc,
        "migrator_peak_rss_mib": rss,
        "stream_read_ceiling": ceiling,
        "src": code,
        "log": str(log),
    }


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": list(os.getloadavg()),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _f(v: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, target, measured, PASS/FAIL) for every target whose section was run."""
    rows = []
    snap = results.get("snapshot")
    if snap:
        sp = snap["speedup"]
        rows.append(
            (
                "snapshot items/s, migrator / plain copier",
                f">= {TARGET_SPEEDUP:.0f}x",
                f"{sp:.2f}x",
                _verdict(sp >= TARGET_SPEEDUP),
            )
        )
        cpu = snap["migrator"]["client_cpu_us_per_item"]
        rows.append(
            (
                "migrator client CPU per item",
                f"<= {TARGET_CPU_US:.0f} us",
                f"{cpu:.0f} us",
                _verdict(cpu <= TARGET_CPU_US),
            )
        )
    rss = results.get("rss")
    if rss:
        peak = max(p["peak_rss_mib"] for p in rss["points"])
        rows.append(
            (
                "migrator peak RSS, every size",
                f"< {TARGET_RSS_MIB:.0f} MiB",
                f"{peak:.0f} MiB",
                _verdict(peak < TARGET_RSS_MIB),
            )
        )
        if len(rss["points"]) > 1:
            lo, hi = rss["points"][0]["items"], rss["points"][-1]["items"]
            rows.append(
                (
                    f"peak RSS flat, {lo:,} -> {hi:,} items",
                    f"growth <= {TARGET_RSS_FLAT:.0%}",
                    f"{rss['growth']:+.0%}",
                    _verdict(rss["growth"] <= TARGET_RSS_FLAT),
                )
            )
    rep = results.get("replay")
    if rep:
        ph = next((p for p in rep["phases"] if p["phase"] == "100/s"), None)
        if ph is not None:
            p99 = ph["p99_s"]
            ok = p99 is not None and p99 < TARGET_P99_100 and ph["not_visible"] == 0
            rows.append(
                (
                    "replay p99 at 100 mutations/s",
                    f"< {TARGET_P99_100:.0f} s",
                    f"{_f(p99, '.2f')} s",
                    _verdict(ok),
                )
            )
    return rows


def pair_speedups(snap: dict[str, Any]) -> list[float]:
    """Migrator/plain items/s for each repeat (the two ran back to back, so under similar load)."""
    plain = [r for r in snap["runs"] if r["tool"] == "plain"]
    mig = [r for r in snap["runs"] if r["tool"] == "migrator"]
    return [m["items_per_s"] / p["items_per_s"] for p, m in zip(plain, mig, strict=False)]


def text_report(results: dict[str, Any]) -> str:
    out: list[str] = []
    snap = results.get("snapshot")
    if snap:
        out.append(
            f"\nSNAPSHOT  {snap['items']:,} x 1 KB items, dynalite -> dynalite "
            f"(best of {snap['repeat']}; whole child process, start to exit)"
        )
        hdr = (
            f"{'tool':<10}{'items/s':>9}{'wall s':>8}{'CPU s':>8}{'us/item':>9}{'(sys)':>7}"
            f"{'cores':>7}{'RSS MiB':>9}{'src CPU s':>10}{'tgt CPU s':>10}"
            f"{'srv share':>10}{'other cores':>12}"
        )
        out.append(hdr)
        for key in ("plain", "migrator"):
            r = snap[key]
            out.append(
                f"{key:<10}{r['items_per_s']:>9,.0f}{r['seconds']:>8.1f}{r['client_cpu_s']:>8.1f}"
                f"{r['client_cpu_us_per_item']:>9.0f}{r.get('client_sys_us_per_item', float('nan')):>7.0f}"
                f"{r['client_cores']:>7.2f}"
                f"{r['peak_rss_mib']:>9.0f}{r['source_cpu_s']:>10.1f}{r['target_cpu_s']:>10.1f}"
                f"{r['server_cpu_share']:>10.0%}{r['other_cores']:>12.2f}"
            )
        out.append(f"speed-up migrator/plain: {snap['speedup']:.2f}x (best vs best)")
        if snap["repeat"] > 1:
            out.append(
                "per repeat (back to back): "
                + ", ".join(f"{x:.2f}x" for x in pair_speedups(snap))
                + "; all runs: "
                + ", ".join(
                    f"{r['tool']} {r['items_per_s']:,.0f}/s {r['client_cpu_us_per_item']:.0f} us"
                    for r in snap["runs"]
                )
            )
    rss = results.get("rss")
    if rss:
        out.append(
            f"\nPEAK RSS  migrator (baseline: interpreter + imports "
            f"{rss['baseline_rss_mib']:.0f} MiB)"
        )
        out.append(f"{'items':>10}{'peak RSS MiB':>14}{'items/s':>9}{'us/item':>9}{'copied':>11}")
        for p in rss["points"]:
            out.append(
                f"{p['items']:>10,}{p['peak_rss_mib']:>14.0f}{p['items_per_s']:>9,.0f}"
                f"{p['client_cpu_us_per_item']:>9.0f}{p['copied']:>11,}"
            )
    rep = results.get("replay")
    if rep:
        out.append(
            f"\nREPLAY  moto (stream) -> dynalite, {rep['duration_s']:.0f}s per rate; latency = "
            "put acknowledged by source -> visible in target"
        )
        out.append(
            f"{'phase':<9}{'writers':>8}{'written':>9}{'achieved/s':>11}{'p50 s':>7}{'p99 s':>7}"
            f"{'max s':>7}{'applied/s':>10}{'lost':>6}{'mig us/rec':>11}{'moto CPU s':>11}"
            f"{'dyn CPU s':>10}{'other cores':>12}"
        )
        for p in rep["phases"]:
            lat = (
                [None, None, None]
                if p["phase"] == "backlog"
                else [p["p50_s"], p["p99_s"], p["max_s"]]
            )
            out.append(
                f"{p['phase']:<9}{p['writers']:>8}{p['written']:>9,}{p['achieved_rate']:>11,.0f}"
                f"{_f(lat[0], '.2f'):>7}{_f(lat[1], '.2f'):>7}{_f(lat[2], '.2f'):>7}"
                f"{p['applied_per_s']:>10,.0f}{p['not_visible']:>6}"
                f"{p['migrator_cpu_us_per_record']:>11.0f}{p['moto_cpu_s']:>11.1f}"
                f"{p['dynalite_cpu_s']:>10.1f}{p['other_cores']:>12.2f}"
            )
        out.append("(other cores here include the benchmark's own mutators and checker)")
        out.append(f"migrator peak RSS during replay: {rep['migrator_peak_rss_mib']:.0f} MiB")
        c = rep.get("stream_read_ceiling")
        if c:
            out.append(
                f"source stream read alone (one reader, GetRecords Limit 1000, no writes): "
                f"{c['records']:,} records in {c['calls']} calls, {c['records_per_s']:,.0f} records/s"
            )
    rows = targets(results)
    if rows:
        out.append("\nTARGETS")
        for fig, tgt, got, verdict in rows:
            out.append(f"{fig:<44}{tgt:>16}{got:>12}  {verdict}")
    return "\n".join(out)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Performance",
        "",
        "Generated by `make bench` (`bench/run.py --write-docs`) from `.bench/results.json`; "
        "do not edit by hand: re-run the benchmark instead.",
        "",
        f"Machine: {m['nproc']} cores, Python {m['python']}, {m['platform']}. "
        f"Last run {m['date']}.",
        "",
    ]
    if results.get("byte_compiled"):
        lines += [
            "Both migrator trees (this one and *before*) are byte-compiled first, as installing "
            "them does: the rows that time a whole process do not include compiling sources.",
            "",
        ]
    quick = [s for s in SECTIONS if results.get(s, {}).get("quick")]
    if quick:
        lines += [f"**Smoke-run sizes (`--quick`) in: {', '.join(quick)}.**", ""]
    rows = targets(results)
    if rows:
        lines += [
            "## Targets (issue 6)",
            "",
            "| figure | target | measured | |",
            "|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
        lines.append("")
    lines += render_targets22(results)
    snap = results.get("snapshot")
    if snap:
        lines += [
            f"## Snapshot: {snap['items']:,} x 1 KB items, dynalite -> dynalite",
            "",
            f"Run {snap['machine']['date']}, load average before "
            f"{snap['machine']['loadavg'][0]:.2f}. Each tool runs in its own child process, "
            "timed from start to exit; client CPU is that child's user + sys time (wait4), server "
            "CPU is read from /proc. *Other cores*: CPU used meanwhile by processes outside the "
            f"benchmark. Best of {snap['repeat']}. The migrator's write budget is raised "
            "(`writeThroughput: 1,000,000`, 100%): the plain copier has none, and the default "
            "for an on-demand table (20,000 WCU/s) would bound it on a fast machine. Migrator source "
            f"`{snap['migrator'].get('src', '?')}` (hash of src/alternator_migrator).",
            "",
            "| tool | items/s | client CPU us/item (of which sys) | client cores | peak RSS MiB "
            "| source CPU s | target CPU s | server share of CPU | other cores |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for key, label in (
            ("plain", "plain boto3 copier (4 threads)"),
            ("before", "migrator, before (start of this round)"),
            ("migrator", "migrator"),
        ):
            if key not in snap:
                continue
            r = snap[key]
            lines.append(
                f"| {label} | {r['items_per_s']:,.0f} | {r['client_cpu_us_per_item']:.0f} "
                f"({r.get('client_sys_us_per_item', float('nan')):.0f}) | "
                f"{r['client_cores']:.2f} | {r['peak_rss_mib']:.0f} | {r['source_cpu_s']:.1f} | "
                f"{r['target_cpu_s']:.1f} | {r['server_cpu_share']:.0%} | {r['other_cores']:.2f} |"
            )
        lines += [
            "",
            f"Speed-up (items/s, migrator / plain copier): **{snap['speedup']:.2f}x** "
            "(best run of each).",
            "",
        ]
        if snap["repeat"] > 1:
            lines += [
                "Every run, in order (plain and migrator back to back): "
                + "; ".join(
                    f"{r['tool']} {r['items_per_s']:,.0f} items/s, "
                    f"{r['client_cpu_us_per_item']:.0f} us/item"
                    for r in snap["runs"]
                )
                + ". Speed-up per pair: "
                + ", ".join(f"{x:.2f}x" for x in pair_speedups(snap))
                + ".",
                "",
            ]
    rss = results.get("rss")
    if rss:
        lines += [
            "## Migrator peak RSS by table size",
            "",
            f"Run {rss['machine']['date']}, load average before "
            f"{rss['machine']['loadavg'][0]:.2f}. Peak RSS is the child's ru_maxrss (a size equal "
            "to the snapshot section's reuses that run). Baseline "
            f"(interpreter + imports, no work): {rss['baseline_rss_mib']:.0f} MiB.",
            "",
            "| items | peak RSS MiB | items/s | client CPU us/item | migrator source |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['items']:,} | {p['peak_rss_mib']:.0f} | {p['items_per_s']:,.0f} | "
            f"{p['client_cpu_us_per_item']:.0f} | `{p.get('src', '?')}` |"
            for p in rss["points"]
        ]
        lines.append("")
    rep = results.get("replay")
    if rep:
        lines += [
            "## Replay: moto (stream) -> dynalite",
            "",
            f"Run {rep['machine']['date']}, load average before "
            f"{rep['machine']['loadavg'][0]:.2f}. Puts of ~1 KB items at a fixed rate for "
            f"{rep['duration_s']:.0f} s each; latency is from the put being acknowledged by the "
            "source to the item being visible in the target (BatchGetItem polling every "
            f"{rep['phases'][0]['poll_interval_s'] * 1000:.0f} ms, which bounds the resolution). "
            "*Achieved/s* is the rate the source actually took. *Backlog*: puts written while "
            "the migrator was paused (SIGSTOP), then the rate at which it drained them. "
            f"Migrator source `{rep.get('src', '?')}`.",
            "",
            "| phase | writers | written | achieved/s | p50 s | p99 s | max s | applied records/s "
            "| not visible | migrator CPU us/record | moto CPU s | dynalite CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for p in rep["phases"]:
            lat = (
                [None, None, None]
                if p["phase"] == "backlog"
                else [p["p50_s"], p["p99_s"], p["max_s"]]
            )
            lines.append(
                f"| {p['phase']} | {p['writers']} | {p['written']:,} | {p['achieved_rate']:,.0f} | "
                f"{_f(lat[0], '.2f')} | {_f(lat[1], '.2f')} | {_f(lat[2], '.2f')} | "
                f"{p['applied_per_s']:,.0f} | {p['not_visible']} | "
                f"{p['migrator_cpu_us_per_record']:.0f} | {p['moto_cpu_s']:.1f} | "
                f"{p['dynalite_cpu_s']:.1f} |"
            )
        c = rep.get("stream_read_ceiling")
        if c:
            lines += [
                "",
                f"For comparison, one plain reader (GetRecords, Limit 1000, nothing written) read "
                f"the same stream afterwards at {c['records_per_s']:,.0f} records/s "
                f"({c['records']:,} records, {c['calls']} calls).",
            ]
        lines.append("")
    lines += TRANSPORT_NOTES.splitlines()
    for name, (_, render) in SCRIPTED.items():
        sec = results.get(name)
        if sec:
            lines += render(sec)
        elif name == "export" and (ROOT / ".bench" / "export.json").exists():
            # bench/export_snapshot.py run alone keeps its figures there.
            lines += render(json.loads((ROOT / ".bench" / "export.json").read_text()))
    lines += [
        "## How to reproduce",
        "",
        "```",
        "make bench                                   # every section, --before 5b3d873, docs",
        ".venv/bin/python bench/run.py --quick        # smoke run, small sizes (~2 min)",
        ".venv/bin/python bench/run.py --only snapshot --items 100000",
        ".venv/bin/python bench/run.py --only rss --rss-items 100000,1000000",
        ".venv/bin/python bench/run.py --only replay",
        ".venv/bin/python bench/run.py --only wide,validate,export,spark --before REV",
        ".venv/bin/python bench/run.py --write-docs   # also regenerate this page",
        ".venv/bin/python bench/run.py --docs-only    # only re-render it from the last results",
        "PYTHONPATH=src .venv/bin/python bench/cpu_per_item.py --variants before,http,cluster "
        "--before-src OLD/src   # transport variants",
        "PYTHONPATH=src .venv/bin/python bench/https_client.py   # lean transport vs urllib3",
        "```",
        "",
        "The benchmark starts its own dynalite and moto servers on loopback ports. Sections run "
        "later replace the same sections in `.bench/results.json`; this page is rendered from "
        "that file. Servers, loader and benchmark share the machine's cores with the measured "
        "process, so compare figures from the same run and note the load.",
        "",
    ]
    return "\n".join(lines)


# Measured separately (bench/cpu_per_item.py, bench/https_client.py) and kept as written.
TRANSPORT_NOTES = (ROOT / "bench" / "transport_notes.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- main


def before_tree(rev: str) -> Path:
    """The ``src/`` of git revision ``rev``, exported under .bench/ (kept between runs)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = ROOT / ".bench" / f"before-{sha}"
    if not (dest / "src").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "src"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def byte_compile(tree: Path) -> None:
    """Write the byte-code of ``tree``, as installing a package does. The rows that time a whole
    process (the CLI, Spark's workers) would otherwise include compiling each source newer than
    its cache at every start: Python does not write the cache itself where
    PYTHONDONTWRITEBYTECODE is set, and an installed migrator never pays that."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)


def parse_sizes(text: str) -> list[int]:
    return sorted({int(float(s)) for s in text.split(",") if s.strip()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=None, help="snapshot size (default 100000)")
    ap.add_argument("--rss-items", default=None, help="sizes for peak RSS (default 100000,1000000)")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--only", default=None, help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--repeat", type=int, default=1, help="snapshot runs per tool (best is kept)")
    ap.add_argument("--replay-seconds", type=float, default=None, help="per rate (default 20)")
    ap.add_argument("--replay-rates", default="100,1000")
    ap.add_argument("--backlog", type=int, default=None, help="backlog puts (default 10000)")
    ap.add_argument("--disk", action="store_true", help="dynalite source on disk (--path)")
    ap.add_argument("--write-docs", action="store_true", help="regenerate docs/performance.md")
    ap.add_argument(
        "--before",
        metavar="REV",
        default=None,
        help="also time this git revision's migrator (snapshot, wide replay, validate), same run",
    )
    ap.add_argument(
        "--docs-only",
        action="store_true",
        help="run nothing: print the report and regenerate the docs from .bench/results.json",
    )
    args = ap.parse_args(argv)
    if args.docs_only:
        results = json.loads(RESULTS.read_text())
        print(text_report(results))
        DOCS.write_text(markdown(results))
        print(f"docs: {DOCS}")
        return 0

    items = args.items or (5_000 if args.quick else 100_000)
    sizes = parse_sizes(args.rss_items or ("5000,20000" if args.quick else "100000,1000000"))
    duration = args.replay_seconds or (6.0 if args.quick else 20.0)
    backlog = args.backlog if args.backlog is not None else (1_000 if args.quick else 10_000)
    wanted = set(SECTIONS) if args.only is None else {s.strip() for s in args.only.split(",")}
    unknown = wanted - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.skip_replay:
        wanted.discard("replay")

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    results: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            results = json.loads(RESULTS.read_text())
        except ValueError:
            results = {}
    results["machine"] = machine()
    say(f"machine: {results['machine']}")

    older = before_tree(args.before) if args.before else None
    for tree in (ROOT / "src", older):
        if tree is not None:
            byte_compile(tree)
    results["byte_compiled"] = True
    src = Source(WORK / "logs", WORK / "source-db" if args.disk else None)
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if "snapshot" in wanted:
        steps.append(("snapshot", lambda: bench_snapshot(src, items, args.repeat, WORK, older)))
    if "rss" in wanted:

        def rss() -> dict[str, Any]:
            snap = results.get("snapshot") if "snapshot" in wanted else None
            return bench_rss(src, sizes, snap["migrator"] if snap else None, WORK)

        steps.append(("rss", rss))
    if "replay" in wanted:
        rates = [float(r) for r in args.replay_rates.split(",") if r.strip()]

        def replay() -> dict[str, Any]:
            src.stop()  # the snapshot source (up to ~2 GB of node) is not needed any more
            return bench_replay(rates, duration, backlog, 2, WORK)

        steps.append(("replay", replay))
    for name, (runner, _) in SCRIPTED.items():
        if name in wanted:

            def scripted(run: Any = runner) -> dict[str, Any]:
                src.stop()
                sec = run(args.quick, older, WORK)
                return {**sec, "before_rev": args.before} if args.before else sec

            steps.append((name, scripted))
    try:
        for name, step in steps:
            before = machine()
            section = step()
            section["machine"] = before
            section["quick"] = args.quick
            results[name] = section
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2))
    finally:
        src.stop()
    print(text_report(results))
    print(f"\nresults: {RESULTS}")
    if args.write_docs:
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        DOCS.write_text(markdown(results))
        print(f"docs: {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
