"""`validate` at scale against a plain two-scan comparer, on two dynalite servers.

N x ~1 KB items go into both tables (identical), then 1% of the target is made different
(a quarter deleted, a quarter added, half changed). At each state the bench times, as child
processes: `validate` through the CLI and a plain comparer written here (parallel segmented
scans of both sides with the migrator's own client, a digest per key, compared by key). For
each it reports wall time, client CPU (wait4), peak RSS, and the servers' CPU (/proc of the
dynalite PIDs). `--before DIR` also times the `validate` of another source tree (a `src/`
exported from an older commit) in the same run. Usage:

    .venv/bin/python bench/validate_scale.py [--items 100000] [--segments 8] [--pairs N]
        [--before DIR]

``--pairs N`` times validate and the plain comparer N times each, back to back, the first of
each pair alternating, and prints their ratios per pair. Exit 1 when a regression floor fails
(on the pairs' totals): validate's verdicts and counts must be exact, its client CPU within
CLIENT_CPU_RATIO and its servers' CPU within CPU_RATIO of the plain comparer's, its wall time
within WALL_RATIO (on a machine not overloaded) and its peak RSS under RSS_MIB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alternator_migrator.aws.client import CredentialSource, DynamoClient  # noqa: E402
from alternator_migrator.config import Credentials  # noqa: E402
from alternator_migrator.localservers import Server, start_dynalite  # noqa: E402

WORK = ROOT / ".bench" / "validate_scale"
TABLE = "scale"
TICK = os.sysconf("SC_CLK_TCK")
# Regression floors against the plain comparer measured in the same run. CPU is what the
# design decides (wall time on a shared machine mostly measures the neighbours): the servers'
# CPU was 2.8-3.1x the plain comparer's before the rewrite, its wall time 2.5-2.9x; the servers'
# CPU of one run varies by a third on a busy machine (30,000 items: 1.15-1.5x).
CPU_RATIO = 1.5  # validate's servers' CPU at most this times the comparer's
# Validate's client CPU, at most this times the comparer's: 0.70-0.95x measured (item logs and
# digests, the GC kept off the Scan pages), 1.0-1.2x before.
CLIENT_CPU_RATIO = 1.1
WALL_RATIO = 1.5  # validate's wall time at most this times the comparer's (checked only
# while the load average is below the core count: above it the figure is the neighbours')
RSS_MIB = 160.0  # validate's peak RSS: flat, whatever the table size (measured 91-118 MiB)


def client(url: str) -> DynamoClient:
    creds = CredentialSource(Credentials("bench", "bench"), None, "us-east-1")
    return DynamoClient(url, "us-east-1", creds, label="bench", pool_size=32)


# --------------------------------------------------------------------------- data


def make_item(n: int) -> dict[str, Any]:
    rng = random.Random(n)
    item: dict[str, Any] = {
        "pk": {"S": f"key-{n:09d}"},
        "n": {"N": str(rng.randint(0, 10**9))},
        "f": {"N": f"{rng.random():.6f}"},
        "ss": {"SS": sorted({f"t{rng.randint(0, 99)}" for _ in range(4)})},
        "m": {"M": {"name": {"S": f"name {n}"}, "l": {"L": [{"N": "1"}, {"BOOL": True}]}}},
    }
    item["pad"] = {"S": "p" * (1024 - len(orjson.dumps(item)) - 12)}
    return item


def write(c: DynamoClient, reqs: list[Any]) -> None:
    for i in range(0, len(reqs), 25):
        left = reqs[i : i + 25]
        while left:
            r = c.call("BatchWriteItem", {"RequestItems": {TABLE: left}})
            left = r.get("UnprocessedItems", {}).get(TABLE, [])


def create(c: DynamoClient) -> None:
    c.call(
        "CreateTable",
        {
            "TableName": TABLE,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def load(clients: list[DynamoClient], items: int) -> None:
    chunk = 1000

    def part(args: tuple[DynamoClient, int]) -> None:
        c, lo = args
        write(
            c, [{"PutRequest": {"Item": make_item(n)}} for n in range(lo, min(items, lo + chunk))]
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(part, [(c, lo) for lo in range(0, items, chunk) for c in clients]))


def make_different(target: DynamoClient, items: int) -> dict[str, int]:
    """1% of the items: a quarter deleted from the target, a quarter added to it only, half
    changed. Returns the counts validate must report."""
    picks = random.Random(7).sample(range(items), max(4, items // 100))
    reqs: list[Any] = []
    want = {"missing": 0, "extra": 0, "differ": 0}
    for i, n in enumerate(picks):
        if i % 4 == 0:
            reqs.append({"DeleteRequest": {"Key": {"pk": make_item(n)["pk"]}}})
            want["missing"] += 1
        elif i % 4 == 1:
            extra = make_item(n)
            extra["pk"] = {"S": f"extra-{n:09d}"}
            reqs.append({"PutRequest": {"Item": extra}})
            want["extra"] += 1
        else:
            changed = make_item(n)
            changed["n"] = {"N": str(int(changed["n"]["N"]) + 1)}
            reqs.append({"PutRequest": {"Item": changed}})
            want["differ"] += 1
    write(target, reqs)
    return want


# --------------------------------------------------------------------------- the plain comparer


def plain_compare(source_url: str, target_url: str, segments: int) -> str:
    """Both sides scanned at once in ``segments`` segments each; a digest per key; compared by
    key. Holds one digest per item (not the items): the reference a validator has to beat."""
    sides: list[dict[bytes, bytes]] = [{}, {}]
    lock = threading.Lock()
    clients = [client(source_url), client(target_url)]

    def scan(args: tuple[int, int]) -> None:
        side, seg = args
        got: dict[bytes, bytes] = {}
        start = None
        while True:
            req: dict[str, Any] = {"TableName": TABLE, "Segment": seg, "TotalSegments": segments}
            if start:
                req["ExclusiveStartKey"] = start
            resp = clients[side].call("Scan", req)
            for it in resp.get("Items", []):
                # The key's own string: a small orjson.dumps() result kept alive holds ~4 KiB.
                key = it["pk"]["S"].encode()
                got[key] = hashlib.blake2b(
                    orjson.dumps(it, option=orjson.OPT_SORT_KEYS), digest_size=16
                ).digest()
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
        with lock:
            sides[side].update(got)

    with ThreadPoolExecutor(2 * segments) as pool:
        list(pool.map(scan, [(s, g) for g in range(segments) for s in (0, 1)]))
    src, dst = sides
    missing = sum(1 for k in src if k not in dst)
    extra = sum(1 for k in dst if k not in src)
    differ = sum(1 for k, d in src.items() if k in dst and dst[k] != d)
    return f"plain: source {len(src)} target {len(dst)} missing {missing} extra {extra} differ {differ}"


# --------------------------------------------------------------------------- measuring


def proc_cpu(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Run:
    label: str
    rc: int
    wall: float
    cpu: float
    rss_mib: float
    server_cpu: float
    out: str

    def line(self) -> str:
        return (
            f"  {self.label:<18} exit {self.rc}  wall {self.wall:6.2f}s  client CPU "
            f"{self.cpu:6.2f}s  servers' CPU {self.server_cpu:6.2f}s  peak RSS {self.rss_mib:6.0f} MiB"
        )


def run(label: str, cmd: list[str], servers: list[Server], env: dict[str, str]) -> Run:
    cpu0 = sum(proc_cpu(s.proc.pid) for s in servers)
    began = time.monotonic()
    log = WORK / f"{label.replace(' ', '_')}.out"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - began
    server_cpu = sum(proc_cpu(s.proc.pid) for s in servers) - cpu0
    return Run(
        label,
        os.waitstatus_to_exitcode(status),
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        server_cpu,
        log.read_text(),
    )


def total(runs: list[Run]) -> Run:
    """Runs summed (peak RSS: the highest), for the floors."""
    return Run(
        runs[0].label,
        max(r.rc for r in runs),
        sum(r.wall for r in runs),
        sum(r.cpu for r in runs),
        max(r.rss_mib for r in runs),
        sum(r.server_cpu for r in runs),
        runs[-1].out,
    )


def counts_in(report: str) -> dict[str, int]:
    out = {}
    for kind, label in (("missing", "missing in target"), ("extra", "only in target")):
        out[kind] = _count(report, label)
    out["differ"] = _count(report, "attributes differ")
    return out


def _count(report: str, label: str) -> int:
    for line in report.splitlines():
        if line.strip().startswith(label) and ":" in line:
            return int(line.split(":", 1)[1].strip().replace(",", ""))
    return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=1, help="validate, plain: this many times")
    ap.add_argument("--before", type=Path, help="a src/ directory of an older commit to time too")
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
    ap.add_argument(
        "--plain", nargs=2, metavar=("SOURCE_URL", "TARGET_URL"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.plain:
        print(plain_compare(*args.plain, args.segments))
        return 0

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    servers: list[Server] = []
    failed: list[str] = []
    rows: list[dict[str, Any]] = []

    def keep(state: str, r: Run) -> None:
        rows.append(
            {
                "state": state,
                "label": r.label,
                "exit_code": r.rc,
                "wall_s": r.wall,
                "client_cpu_s": r.cpu,
                "servers_cpu_s": r.server_cpu,
                "peak_rss_mib": r.rss_mib,
                "load": os.getloadavg()[0],
            }
        )

    try:
        servers = [start_dynalite(WORK / "logs"), start_dynalite(WORK / "logs")]
        clients = [client(s.url) for s in servers]
        for c in clients:
            create(c)
        began = time.monotonic()
        load(clients, args.items)
        print(
            f"loaded {args.items:,} x 1 KB items into both tables in {time.monotonic() - began:.0f}s"
        )
        config = WORK / "config.yaml"

        def side(s: Server) -> dict[str, Any]:
            return {
                "type": "dynamodb",
                "table": TABLE,
                "region": "us-east-1",
                "endpoint": {"host": "http://127.0.0.1", "port": s.port},
                "credentials": {"accessKey": "bench", "secretKey": "bench"},
                "scanSegments": args.segments,
                "maxMapTasks": args.segments,
            }

        config.write_text(
            yaml.safe_dump(
                {
                    "source": side(servers[0]),
                    "target": side(servers[1]),
                    "savepoints": {"path": str(WORK / "savepoints")},
                    "validation": {"failuresToFetch": 5},
                }
            )
        )
        trees = [("validate", ROOT / "src")]
        if args.before:
            trees.insert(0, ("validate (before)", args.before.resolve()))
        plain = [sys.executable, __file__, "--segments", str(args.segments), "--plain"]
        plain += [s.url for s in servers]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for state in ("identical", "1% different"):
            if state != "identical":
                want = make_different(clients[1], args.items)
            else:
                want = {"missing": 0, "extra": 0, "differ": 0}
            print(f"{state} ({args.items:,} items, {args.segments} segments), load {load_avg()}:")
            # On a shared machine neighbours come and go: each pair is run back to back, and
            # which of the two goes first alternates (A B, B A, ...) so neither always gets
            # the servers as the other left them.
            mine_all: list[Run] = []
            plain_all: list[Run] = []
            for n in range(args.pairs):
                order = ["validate", "plain"] if n % 2 == 0 else ["plain", "validate"]
                for which in order:
                    if which == "plain":
                        p = run("plain comparer", plain, servers, env)
                        print(p.line(), flush=True)
                        keep(state, p)
                        if p.rc != 0:
                            print(p.out)
                        plain_all.append(p)
                        continue
                    for label, tree in trees:
                        cmd = [sys.executable, "-m", "alternator_migrator", "validate"]
                        cmd += ["--config", str(config)]
                        r = run(label, cmd, servers, {**os.environ, "PYTHONPATH": str(tree)})
                        print(r.line(), flush=True)
                        keep(state, r)
                        got = counts_in(r.out)
                        if r.rc != (0 if state == "identical" else 1) or got != want:
                            failed.append(
                                f"{label} {state}: exit {r.rc}, counts {got}, want {want}"
                            )
                            print(r.out[-2000:])
                        if tree == ROOT / "src":
                            mine_all.append(r)
                p = plain_all[-1]
                m = mine_all[-1]
                print(
                    f"  pair {n + 1}: validate / plain: wall {m.wall / p.wall:.2f}, client CPU "
                    f"{m.cpu / p.cpu:.2f}, servers' CPU {m.server_cpu / p.server_cpu:.2f}; "
                    f"load {load_avg()}",
                    flush=True,
                )
            mine, p = total(mine_all), total(plain_all)
            checks = [
                ("client CPU", mine.cpu, p.cpu, CLIENT_CPU_RATIO),
                ("servers' CPU", mine.server_cpu, p.server_cpu, CPU_RATIO),
            ]
            if os.getloadavg()[0] < (os.cpu_count() or 1):
                checks.append(("wall time", mine.wall, p.wall, WALL_RATIO))
            else:
                print(f"  (wall time not checked: load average {load_avg()} over the cores)")
            for what, v, ref, ratio in checks:
                if v > ratio * ref:
                    failed.append(
                        f"{state}: validate's {what} {v:.2f}s is over {ratio} x the plain "
                        f"comparer's {ref:.2f}s"
                    )
            if mine.rss_mib > RSS_MIB:
                failed.append(f"{state}: validate's peak RSS {mine.rss_mib:.0f} MiB > {RSS_MIB}")
    finally:
        for s in servers:
            s.stop()
    for f in failed:
        print(f"FLOOR FAILED: {f}")
    if args.json:
        args.json.write_text(
            orjson.dumps(
                {"items": args.items, "segments": args.segments, "runs": rows, "failed": failed},
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    return 1 if failed else 0


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
