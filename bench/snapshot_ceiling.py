"""The snapshot against the target's bare write ceiling, measured in one run (issue 22).

A dynalite target server per pair of runs A and B (a fresh one each time, the order within a
pair turning from pair to pair), each run on a fresh table:

- **A, the ceiling**: ``--procs`` processes x ``--threads`` threads send pre-encoded 25-item
  BatchWriteItem bodies of the same N ~1 KB items over keep-alive connections (no Scan, no
  ReturnConsumedCapacity), as fast as dynalite takes them;
- **B, the snapshot**: the migrator's CLI (``migrate``, ``streamChanges: false``) copies the
  same N items from a scripted Scan endpoint into a fresh table.

The source is a scripted Scan endpoint (its own process) serving pages joined from pre-encoded
items: a second dynalite would spend ~25 us of CPU per item on Scan, on a 2-core machine where
the target needs one core and the migrator the other, so the source would take its share of
the ceiling. ``--moto-items`` adds one run from moto, for reference (moto's Scan is the
bottleneck there). Reported per run: items/s (first request to last acknowledgement for A;
first Scan served (another server as the source: the migrator's "Snapshot:" log line) to the
CLI's exit for B, and process start to exit), migrator CPU us/item
(the child's whole user+sys, start-up included), target and source server CPU, the load
average; per pair the ratio B/A. ``--check`` fails when the median pair's ratio is below
``--min-ratio``. ``--before-src`` runs B twice per pair, with older code and with this tree's.

    PYTHONPATH=src .venv/bin/python bench/snapshot_ceiling.py [--items 100000] [--pairs 3]
        [--procs 2] [--threads 4] [--moto-items 10000] [--null-runs 1] [--source dynalite]
        [--before-src OLD/src] [--check] [--json out.json]

``--null-runs``: the migrator into a null target that takes every batch at once (its own
ceiling); ``--source dynalite``: B reads a second dynalite instead (it shares the cores).

B's write budget is raised (``--write-throughput`` WCU/s at 100%) so that the target, not the
budget, bounds it: the default budget of an on-demand table, 40,000 x 0.5 = 20,000 WCU/s with a
one-second burst (the Scylla Migrator's), is below what dynalite takes on a fast 2-core
machine. ``--default-budget-runs`` adds runs with the default budget, for reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "src"))

from loader import RAISED, count, create_table, item, lean_client, load  # noqa: E402
from replay_wide import NullTarget as WideNullTarget  # noqa: E402
from replay_wide import Proc, _error, _serve  # noqa: E402
from run import proc_cpu  # noqa: E402

from alternator_migrator.localservers import Server, start_dynalite, start_moto  # noqa: E402

TABLE = "items"
PAGE_BYTES = 1024 * 1024  # DynamoDB's Scan page limit


# --------------------------------------------------------------------------- scripted source


class ScanServer:
    """DescribeTable, DescribeTimeToLive and Scan (any TotalSegments, ExclusiveStartKey,
    Limit) over N pre-encoded items; segments are contiguous ranges of item numbers."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items = [orjson.dumps(item(i)) for i in range(n)]
        self.size = sum(len(b) for b in self.items)
        self.reset()

    def reset(self) -> None:
        self.first_scan: float | None = None
        self.served = 0
        self.calls: dict[str, int] = {}

    def handle(self, op: str, body: bytes) -> tuple[int, bytes]:
        self.calls[op] = self.calls.get(op, 0) + 1
        req = orjson.loads(body) if body else {}
        if op == "Scan":
            return self._scan(req)
        if op == "DescribeTable":
            return 200, orjson.dumps({"Table": self._desc()})
        if op == "DescribeTimeToLive":
            return 200, b'{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}'
        if op == "BenchStats":
            return 200, orjson.dumps(
                {"first_scan": self.first_scan, "served": self.served, "calls": self.calls}
            )
        if op == "BenchReset":
            self.reset()
            return 200, b"{}"
        return _error("UnknownOperationException", op)

    def _desc(self) -> dict[str, Any]:
        return {
            "TableName": TABLE,
            "TableStatus": "ACTIVE",
            "TableArn": f"arn:aws:dynamodb:us-east-1:000000000000:table/{TABLE}",
            "TableId": "scripted-source",
            "CreationDateTime": 1767225600.0,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
            "ItemCount": self.n,
            "TableSizeBytes": self.size,
        }

    def _scan(self, req: dict[str, Any]) -> tuple[int, bytes]:
        if self.first_scan is None:
            self.first_scan = time.monotonic()
        total = int(req.get("TotalSegments") or 1)
        seg = int(req.get("Segment") or 0)
        lo, hi = self.n * seg // total, self.n * (seg + 1) // total
        start = req.get("ExclusiveStartKey")
        if start:
            lo = int(start["pk"]["S"].split("-")[1]) + 1  # "item-%09d"
        limit = int(req.get("Limit") or self.n)
        end, size = lo, 0
        while end < hi and end - lo < limit and size < PAGE_BYTES:
            size += len(self.items[end])
            end += 1
        page = self.items[lo:end]
        self.served += len(page)
        out = (
            b'{"Items":['
            + b",".join(page)
            + b'],"Count":%d,"ScannedCount":%d'
            % (
                len(page),
                len(page),
            )
        )
        if end < hi:
            out += b',"LastEvaluatedKey":{"pk":{"S":"item-%09d"}}' % (end - 1)
        if req.get("ReturnConsumedCapacity"):
            units = max(0.5, size / 4096 * 0.5)
            out += b',"ConsumedCapacity":{"TableName":"%s","CapacityUnits":%.1f}' % (
                TABLE.encode(),
                units,
            )
        return 200, out + b"}"


class NullTarget(WideNullTarget):
    """A target that takes every BatchWriteItem at once (one pre-encoded answer): the
    migrator's own ceiling, what it would reach against a target far faster than dynalite.
    The wide-stream bench's null target, counting the same way, with the table the snapshot
    asks about."""

    def handle(self, op: str, body: bytes) -> tuple[int, bytes]:
        if op == "DescribeTable":
            name = orjson.loads(body)["TableName"]
            desc = ScanServer.__new__(ScanServer)
            desc.n, desc.size = 0, 0
            arn = f"arn:aws:dynamodb:us-east-1:111111111111:table/{name}"
            table = {**desc._desc(), "TableName": name, "TableArn": arn, "TableId": "null"}
            return 200, orjson.dumps({"Table": table})
        if op == "DescribeTimeToLive":
            return 200, b'{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}'
        if op == "ListTagsOfResource":
            return 200, b'{"Tags":[]}'
        return super().handle(op, body)


# --------------------------------------------------------------------------- the ceiling


def ceiling_worker(url: str, table: str, n: int, part: int, parts: int, threads: int) -> None:
    """One process of the ceiling: its share of the batches, pre-encoded, sent by ``threads``
    threads over keep-alive connections once the driver says go. Prints its timing."""
    header = b'{"RequestItems":{' + orjson.dumps(table) + b":["
    bodies = []
    for start in range(part * 25, n, parts * 25):
        reqs = [
            b'{"PutRequest":{"Item":' + orjson.dumps(item(i)) + b"}}"
            for i in range(start, min(n, start + 25))
        ]
        bodies.append(header + b",".join(reqs) + b"]}}")
    client = lean_client(url, pool_size=threads + 1, label="ceiling")
    client.call("DescribeTable", {"TableName": table})  # one connection warm
    print("READY", flush=True)
    sys.stdin.readline()
    nxt = iter(range(len(bodies)))
    lock = threading.Lock()

    def send() -> None:
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            body = bodies[i]
            while True:
                r = client.call_raw("BatchWriteItem", body)
                left = r.get("UnprocessedItems", {}).get(table)
                if not left:
                    break
                body = header + b",".join(orjson.dumps(x) for x in left) + b"]}}"

    t0 = time.monotonic()
    ts = [threading.Thread(target=send) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t1 = time.monotonic()
    print("RESULT " + json.dumps({"first": t0, "last": t1, "batches": len(bodies)}), flush=True)


def run_ceiling(target: Server, table: str, n: int, procs: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "ceiling", "--url", target.url, "--table", table]
    cmd += ["--items", str(n), "--procs", str(procs), "--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    children = [
        subprocess.Popen(
            [*cmd, "--part", str(p)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for p in range(procs)
    ]
    for c in children:
        assert c.stdout is not None
        if c.stdout.readline().strip() != b"READY":
            raise RuntimeError("a ceiling worker did not start")
    cpu0 = proc_cpu(target.proc.pid)
    for c in children:
        assert c.stdin is not None
        c.stdin.write(b"go\n")
        c.stdin.flush()
    results, client_cpu = [], 0.0
    for c in children:
        assert c.stdout is not None
        out = c.stdout.read().decode()
        _, status, ru = os.wait4(c.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("a ceiling worker failed")
        client_cpu += ru.ru_utime + ru.ru_stime
        results += [json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT ")]
    target_cpu = proc_cpu(target.proc.pid) - cpu0
    window = max(r["last"] for r in results) - min(r["first"] for r in results)
    return {
        "kind": "ceiling",
        "seconds": window,
        "items_per_s": n / window,
        "client_cpu_s": client_cpu,  # includes building the bodies before the start
        "target_cpu_s": target_cpu,
        "target_cpu_us_per_item": target_cpu / n * 1e6,
        "target_cores": target_cpu / window,
    }


# --------------------------------------------------------------------------- the snapshot


class ScanProc(Proc):
    """The Scan source (``scan``; the migrator's reads cost it little) or the null target
    (``null``), each this file run in its own process."""

    def __init__(self, role: str, n: int, work: Path) -> None:
        super().__init__([role, "--items", str(n)], work, role, script=__file__)


def write_config(
    path: Path,
    source_url: str,
    src_table: str,
    target: Server | ScanProc,
    table: str,
    target_extra: dict[str, Any] | None = None,
) -> None:
    def side(url: str, t: str) -> dict[str, Any]:
        host, port = url.rsplit(":", 1)
        return {
            "type": "dynamodb",
            "table": t,
            "region": "us-east-1",
            "endpoint": {"host": host, "port": int(port)},
            "credentials": {"accessKey": "bench", "secretKey": "bench"},
        }

    savepoints = path.parent / "savepoints" / table
    shutil.rmtree(savepoints, ignore_errors=True)
    cfg = {
        "source": side(source_url, src_table),
        "target": {**side(target.url, table), "streamChanges": False, **(target_extra or {})},
        "savepoints": {"path": str(savepoints), "intervalSeconds": 5},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_snapshot(
    source_url: str,
    src_table: str,
    scan: ScanProc | None,
    source_pid: int,
    target: Server | ScanProc,
    table: str,
    n: int,
    work: Path,
    target_extra: dict[str, Any] | None = None,
    src: Path = ROOT / "src",
) -> dict[str, Any]:
    cfg = work / f"{table}.yaml"
    write_config(cfg, source_url, src_table, target, table, target_extra)
    if scan is not None:
        scan.call("BenchReset")
    cmd = [sys.executable, "-m", "alternator_migrator", "migrate", "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    t_cpu0, s_cpu0 = proc_cpu(target.proc.pid), proc_cpu(source_pid)
    with open(work / f"{table}.log", "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [*cmd, "--no-progress"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        _, status, ru = os.wait4(proc.pid, 0)
        t1 = time.monotonic()
        t1_wall = time.time()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the migrator failed; see {work / (table + '.log')}")
    target_cpu = proc_cpu(target.proc.pid) - t_cpu0
    r: dict[str, Any] = {
        "kind": "snapshot",
        "wall_s": t1 - t0,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "cpu_us_per_item": (ru.ru_utime + ru.ru_stime) / n * 1e6,
        "maxrss_mib": ru.ru_maxrss / 1024,
        "target_cpu_s": target_cpu,
        "target_cpu_us_per_item": target_cpu / n * 1e6,
        "source_cpu_s": proc_cpu(source_pid) - s_cpu0,
    }
    if scan is not None:
        s = scan.call("BenchStats")
        first = s["first_scan"]
        r["scan_calls"] = s["calls"]
    else:  # another server as the source: from the migrator's "Snapshot: ..." log line
        first = t1 - (t1_wall - snapshot_began(work / f"{table}.log"))
    r["seconds"] = t1 - first
    r["items_per_s"] = n / r["seconds"]
    r["items_per_s_process"] = n / r["wall_s"]
    r["target_cores"] = target_cpu / r["seconds"]
    return r


def snapshot_began(log: Path) -> float:
    """Epoch seconds of the migrator's "Snapshot: N segments..." line (its first Scan follows)."""
    for text in log.read_text(errors="replace").splitlines():
        if '"msg":"Snapshot: ' in text:
            ts = json.loads(text)["ts"]
            return dt.datetime.fromisoformat(ts).timestamp()
    raise RuntimeError(f"no 'Snapshot:' line in {log}")


# --------------------------------------------------------------------------- driver


def settle(target: Server, table: str) -> None:
    """Drop the run's table and wait until dynalite is idle again (deleting costs it CPU)."""
    lean_client(target.url, label="bench").call("DeleteTable", {"TableName": table})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        c0 = proc_cpu(target.proc.pid)
        time.sleep(0.3)
        if proc_cpu(target.proc.pid) - c0 < 0.02:
            return


def line(r: dict[str, Any]) -> str:
    if r["kind"] == "ceiling":
        return (
            f"A ceiling          {r['items_per_s']:>8,.0f} items/s  {r['seconds']:5.1f}s  "
            f"target {r['target_cpu_us_per_item']:5.1f} us/item {r['target_cores']:.2f} cores  "
            f"load {r['load']:.2f}"
        )
    return (
        f"B {r['source'] + r['code']:<16} {r['items_per_s']:>8,.0f} items/s  {r['seconds']:5.1f}s  "
        f"target {r['target_cpu_us_per_item']:5.1f} us/item {r['target_cores']:.2f} cores  "
        f"load {r['load']:.2f}  migrator {r['cpu_us_per_item']:.1f} us/item "
        f"RSS {r['maxrss_mib']:.0f} MiB (process {r['items_per_s_process']:,.0f} items/s)  "
        f"source CPU {r['source_cpu_s']:.1f}s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "role", nargs="?", default="bench", choices=["bench", "scan", "null", "ceiling"]
    )
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2, help="ceiling sender processes")
    ap.add_argument("--threads", type=int, default=4, help="threads (connections) per sender")
    ap.add_argument(
        "--source",
        default="scripted",
        choices=["scripted", "dynalite"],
        help="B's source: the scripted Scan endpoint, or a second dynalite (it shares the cores)",
    )
    ap.add_argument("--moto-items", type=int, default=10_000, help="0: no moto reference run")
    ap.add_argument(
        "--null-runs", type=int, default=1, help="migrator runs into a null target (its own cost)"
    )
    ap.add_argument(
        "--write-throughput",
        type=int,
        default=1_000_000,
        help="B's writeThroughput (WCU/s, at throughputWritePercent 1.0); 0: the default budget",
    )
    ap.add_argument(
        "--default-budget-runs",
        type=int,
        default=1,
        help="snapshot runs with the default write budget, after the pairs (not in the ratio)",
    )
    ap.add_argument("--check", action="store_true", help="fail when a pair is below the floor")
    ap.add_argument("--min-ratio", type=float, default=0.85)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--before-src",
        type=Path,
        help="also run B with this code (e.g. an export of an older commit's src/), each pair "
        "then A, B-before and B-now, in an order that turns from pair to pair",
    )
    ap.add_argument("--port-file", type=Path)
    ap.add_argument("--url")
    ap.add_argument("--table")
    ap.add_argument("--part", type=int, default=0)
    a = ap.parse_args()

    if a.role == "scan":
        _serve(a.port_file, ScanServer(a.items).handle)
        return 0
    if a.role == "null":
        _serve(a.port_file, NullTarget().handle)
        return 0
    if a.role == "ceiling":
        ceiling_worker(a.url, a.table, a.items, a.part, a.procs, a.threads)
        return 0

    work = Path(tempfile.mkdtemp(prefix="snapshot-ceiling-"))
    n = a.items
    # The code B runs: this tree's src/, after an older one's (``--before-src``) if given.
    codes: list[tuple[str, Path]] = [("", ROOT / "src")]
    if a.before_src is not None:
        codes = [("-before", a.before_src.resolve()), ("-now", ROOT / "src")]
    print(
        f"snapshot_ceiling: {n:,} x ~1 KB items; ceiling {a.procs} procs x {a.threads} threads; "
        f"{a.pairs} pairs A B; work {work}; load {os.getloadavg()}",
        flush=True,
    )
    # dynalite never gives back what a dropped table held (~150 MB per 100,000 items), and
    # past ~1 GB it takes ~15% more CPU per item: each pair gets a fresh server, and the
    # order within a pair turns, so that no run is always the one on the fuller server.
    target = start_dynalite(work / "logs")
    scan = ScanProc("scan", n, work)
    src_dyn = None
    if a.source == "dynalite":
        src_dyn = start_dynalite(work / "logs")
        create_table(src_dyn.url, TABLE)
        load(src_dyn.url, TABLE, 0, n)
    raised = {**RAISED, "writeThroughput": a.write_throughput} if a.write_throughput else None
    runs: list[dict[str, Any]] = []

    def keep(r: dict[str, Any], table: str, load_before: float, why: str = "") -> None:
        """A run into ``table`` of the current target: its copy counted, kept, the table
        dropped."""
        r["load"] = load_before
        r["copied"] = count(target.url, table)
        if r["copied"] != n:
            raise RuntimeError(f"{table} holds {r['copied']:,} items, expected {n:,}")
        runs.append(r)
        print(line(r) + why, flush=True)
        settle(target, table)

    try:
        for p in range(a.pairs):
            if p:
                target.stop()
                target = start_dynalite(work / "logs")
            order = [("ceiling", "", None)] + [("snapshot", c, s) for c, s in codes]
            for kind, code, src in order[p % len(order) :] + order[: p % len(order)]:
                table = f"{kind}{code}{p}"
                create_table(target.url, table)
                load_before = os.getloadavg()[0]
                if src is None:
                    r = run_ceiling(target, table, n, a.procs, a.threads)
                else:
                    if src_dyn is None:
                        source_url, scanner, pid = scan.url, scan, scan.proc.pid
                    else:
                        source_url, scanner, pid = src_dyn.url, None, src_dyn.proc.pid
                    r = run_snapshot(
                        source_url, TABLE, scanner, pid, target, table, n, work, raised, src
                    )
                    r["source"] = a.source
                    r["write_budget"] = a.write_throughput or None
                r["code"] = code
                r["pair"] = p
                keep(r, table, load_before)
        target.stop()
        target = start_dynalite(work / "logs")
        for i in range(a.default_budget_runs if a.write_throughput else 0):
            table = f"default-budget{i}"
            create_table(target.url, table)
            load_before = os.getloadavg()[0]
            r = run_snapshot(scan.url, TABLE, scan, scan.proc.pid, target, table, n, work)
            r.update(source="default budget", code="", pair=None)
            keep(r, table, load_before, "  (the default write budget, 20,000 WCU/s, bounds it)")
        for i, (code, src) in ((i, c) for i in range(a.null_runs) for c in codes):
            null = ScanProc("null", 0, work)
            try:
                load_before = os.getloadavg()[0]
                # The null target reports no consumed capacity: the default budget (half of
                # 40,000 WCU/s, charged by the bytes) would bound it, not the migrator.
                budget = {"writeThroughput": 10_000_000, "throughputWritePercent": 1.0}
                r = run_snapshot(
                    scan.url,
                    TABLE,
                    scan,
                    scan.proc.pid,
                    null,
                    f"null{code}{i}",
                    n,
                    work,
                    budget,
                    src,
                )
                puts = null.call("BenchStats")["puts"]
            finally:
                null.stop()
            r.update(source="-> null", code=code, pair=None, load=load_before, copied=puts)
            runs.append(r)
            print(line(r) + "  (the migrator's own ceiling)", flush=True)
            if puts != n:
                raise RuntimeError(f"the null target took {puts:,} puts, expected {n:,}")
        if a.moto_items:
            moto = start_moto(work / "logs")
            try:
                create_table(moto.url, TABLE)
                load(moto.url, TABLE, 0, a.moto_items, processes=2)
                create_table(target.url, "moto")
                r = run_snapshot(
                    moto.url, TABLE, None, moto.proc.pid, target, "moto", a.moto_items, work
                )
                r.update(source="moto", code="", pair=None, load=os.getloadavg()[0])
                r["copied"] = count(target.url, "moto")
                runs.append(r)
                print(line(r) + "  (moto's Scan bounds it)", flush=True)
            finally:
                moto.stop()
    finally:
        scan.stop()
        target.stop()
        if src_dyn is not None:
            src_dyn.stop()
    ratios: dict[str, list[float]] = {}
    for code, _ in codes:
        for p in range(a.pairs):
            ce = next(r for r in runs if r["pair"] == p and r["kind"] == "ceiling")
            sn = next(
                r for r in runs if r["pair"] == p and r["kind"] == "snapshot" and r["code"] == code
            )
            ratios.setdefault(code, []).append(sn["items_per_s"] / ce["items_per_s"])
        print(
            f"ratio snapshot{code and f' ({code})'}/ceiling per pair: "
            + ", ".join(f"{x:.2f}" for x in ratios[code])
        )
    print(f"load now {os.getloadavg()}")
    ceil_mean = sum(r["items_per_s"] for r in runs if r["kind"] == "ceiling") / max(1, a.pairs)
    moto_run = next((r for r in runs if r.get("source") == "moto"), None)
    if moto_run and a.pairs:
        print(
            f"moto-sourced: {moto_run['items_per_s']:,.0f} items/s = "
            f"{moto_run['items_per_s'] / ceil_mean:.2f} of the mean ceiling"
        )
    if a.json:
        a.json.write_text(json.dumps({"runs": runs, "ratios": ratios}, indent=1))
    # The median pair: on a shared 2-core machine one pair can be hit by someone else's burst
    # in A or in B alone (a ratio far above 1 is as much noise as one far below).
    mine = sorted(ratios.get(codes[-1][0], []))
    median = mine[len(mine) // 2] if mine else 0.0
    print(f"median ratio {median:.2f} (floor {a.min_ratio})")
    if a.check and median < a.min_ratio:
        print(f"FLOOR BROKEN: median ratio {median:.2f} < {a.min_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
