"""A soak harness that tries to break a live migration: a seeded random fault schedule against
the real servers, the migrator as a CLI child process, and checks that nothing reported done
was not.

The pieces:
- ``Dataset``: hot items (changed all the time), cold items (changed now and then) and frozen
  items (never changed: whatever the savepoint calls copied must hold them on the target).
- ``Writer``: ONE thread mutating the source (moto repeats stream sequence numbers under
  concurrent writers, see TESTING.md).
- ``Migrator``: ``python -m alternator_migrator migrate`` in a child process that the schedule
  kills (-9), stops (SIGSTOP/SIGCONT), stops politely (SIGTERM, must exit 0) and restarts.
- ``Monitor``: reads the savepoint every few hundred ms and records every claim that is false
  (snapshot done with segments missing, done segments whose items are not on the target,
  progress going backwards).
- ``Target``: what the migrator writes to, and the faults it can produce. ``ProxiedTarget`` is
  dynalite behind a FaultProxy (500s, throttling, resets, outages, slowness); ``ClusterTarget``
  is a 3-node cluster in front of that proxy, adding "node lost, then back". The cluster is
  pluggable: anything with ``url``, ``hosts``, ``take_down(i)``, ``bring_back(i)`` and
  ``stop()`` (``NodeSet``) that keeps the items in the server behind it (the monitor reads
  that server directly). ``RevivableCluster`` forwards all nodes to one dynalite: node loss
  without clock skew. The skewed-clock stand-in (tests/skew_cluster.py's ``SkewCluster``, same
  interface) plugs in through ``cluster_factory``; test_soak.py uses it when it is there.
- ``Schedule``: the fault actions and their timing, drawn from ``random.Random(seed)`` up front
  and printed, so ``SOAK_SEED=N`` replays the same schedule (the processes' own timing is not
  replayable; the schedule is).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..helpers import (
    batch_put,
    create_table,
    eventually,
    normalize,
    read_savepoint,
    table_diff,
    write_config,
)
from ..netfakes import FakeCluster, HttpForwarder
from ..proxy import FaultProxy

# --------------------------------------------------------------------------- settings


def env_seeds(default: list[int]) -> list[int]:
    """``SOAK_SEED=N`` (one) or ``SOAK_SEEDS=a,b,c``; ``default`` otherwise."""
    one = os.environ.get("SOAK_SEED")
    if one:
        return [int(one)]
    many = os.environ.get("SOAK_SEEDS")
    if many:
        return [int(s) for s in many.replace(" ", "").split(",") if s]
    return default


def env_duration(default: float) -> float:
    """``SOAK_DURATION`` seconds of fault schedule (the catch-up and checks come on top)."""
    return float(os.environ.get("SOAK_DURATION") or default)


# --------------------------------------------------------------------------- data set

HOT = 12  # hot keys: several changes a second between them, through every fault


@dataclass
class Dataset:
    table: str
    cold: int  # seeded items; every third one is frozen (never changed)
    pad: int

    @staticmethod
    def key(i: int, kind: str = "cold") -> dict[str, Any]:
        return {"pk": {"S": f"{kind}#{i}"}}

    def frozen_indexes(self) -> list[int]:
        return [i for i in range(self.cold) if i % 3 == 0]

    def seed_item(self, i: int) -> dict[str, Any]:
        return {
            **self.key(i),
            "v": {"N": str(i)},
            "pad": {"S": "f" * (self.pad + i % 50)},
            "tags": {"SS": ["seed", f"t{i % 7}"]},
        }

    def seed(self, client: Any) -> None:
        create_table(client, self.table)
        batch_put(client, self.table, [self.seed_item(i) for i in range(self.cold)])

    def frozen_by_segment(self, client: Any, total: int) -> dict[int, list[str]]:
        """Frozen keys by the Scan segment the source puts them in (moto: a hash of the key)."""
        frozen = {f"cold#{i}" for i in self.frozen_indexes()}
        out: dict[int, list[str]] = {}
        for seg in range(total):
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "Segment": seg,
                "TotalSegments": total,
                "ProjectionExpression": "pk",
            }
            keys: list[str] = []
            while True:
                r = client.scan(**kwargs)
                keys += [it["pk"]["S"] for it in r["Items"] if it["pk"]["S"] in frozen]
                if "LastEvaluatedKey" not in r:
                    break
                kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]
            out[seg] = keys
        assert sum(len(v) for v in out.values()) == len(frozen), "segments must cover the table"
        return out


class Writer(threading.Thread):
    """One thread of puts, updates and deletes on hot and (non-frozen) cold items."""

    def __init__(self, client: Any, data: Dataset, rng: random.Random, rate: float) -> None:
        super().__init__(name="soak-writer", daemon=True)
        self.client, self.data, self.rng, self.rate = client, data, rng, rate
        self.stop = threading.Event()
        self.ops: dict[str, int] = {"put": 0, "update": 0, "delete": 0}
        self.error: BaseException | None = None
        # The finale: hot items only, three times as fast, so that the last changes of each
        # come close together (what skewed node clocks would reorder).
        self.hot_only = False

    def _key(self) -> dict[str, Any]:
        if self.hot_only or self.rng.random() < 0.7:
            return Dataset.key(self.rng.randrange(HOT), "hot")
        i = self.rng.randrange(self.data.cold)
        if i % 3 == 0:  # frozen: take its unfrozen neighbour
            i = (i + 1) % self.data.cold
        return Dataset.key(i)

    def step(self, n: int) -> None:
        c, t, rng = self.client, self.data.table, self.rng
        key = self._key()
        x = rng.random()
        if x < 0.2:
            c.delete_item(TableName=t, Key=key)
            self.ops["delete"] += 1
        elif x < 0.55:
            c.update_item(
                TableName=t,
                Key=key,
                UpdateExpression="SET v = :v, m = :m REMOVE #pad",
                ExpressionAttributeNames={"#pad": "pad"},  # a reserved word
                ExpressionAttributeValues={
                    ":v": {"N": str(-n)},
                    ":m": {"M": {"n": {"N": str(n)}, "l": {"L": [{"BOOL": n % 2 == 0}]}}},
                },
            )
            self.ops["update"] += 1
        else:
            item = {
                **key,
                "v": {"N": str(n)},
                "pad": {"S": "w" * rng.randrange(1, self.data.pad + 1)},
                "tags": {"SS": [f"w{n}", "x"]},
            }
            if rng.random() < 0.3:
                item["b"] = {"B": bytes([n % 256, 0, 7])}
            c.put_item(TableName=t, Item=item)
            self.ops["put"] += 1

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                self.step(n)
                # Pacing, not waiting for a condition: the mutation rate is part of the schedule.
                rate = self.rate * (3 if self.hot_only else 1)
                self.stop.wait(self.rng.uniform(0, 2 / rate))
        except BaseException as e:
            self.error = e

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        assert not self.is_alive(), "the writer did not stop"
        assert self.error is None, f"the source writer failed: {self.error!r}"


# --------------------------------------------------------------------------- the migrator


class Migrator:
    """The CLI's ``migrate`` as a child process; one log file per run; every exit recorded."""

    def __init__(self, cfg: Path, logs: Path) -> None:
        self.cfg, self.logs = cfg, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.started = 0.0  # monotonic time of the last start
        self.exits: list[tuple[int, int, str]] = []  # (run, exit code, why it ended)
        self.stopped = False  # SIGSTOPped

    def log(self, run: int | None = None) -> Path:
        return self.logs / f"run-{run or self.runs}.log"

    def start(self, *extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        self.started = time.monotonic()
        with self.log().open("ab") as fh:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "alternator_migrator",
                    "migrate",
                    "--config",
                    str(self.cfg),
                    "--no-progress",
                    *extra,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reap_unexpected(self) -> bool:
        """True (and recorded) when the run ended by itself while it should be running."""
        if self.proc is None or self.proc.poll() is None:
            return False
        self.exits.append((self.runs, self.proc.returncode, "ended by itself"))
        self.proc = None
        return True

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(30)
        self.exits.append((self.runs, rc, "kill -9"))
        self.proc, self.stopped = None, False

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        if self.proc is not None and self.stopped:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def up(self) -> bool:
        """The run has logged past reading its config, so its stop handlers are installed (a
        SIGTERM before that ends python with -15, which says nothing about the migrator)."""
        lines = self.log().read_text(errors="replace").splitlines()
        return any('"logger":"alternator_migrator.' in x and ".config" not in x for x in lines)

    def terminate(self, timeout: float = 120) -> int:
        """SIGTERM: finish in-flight batches, save, exit 0 (the contract a stop must keep)."""
        assert self.proc is not None
        self.resume()
        eventually(lambda: self.up() or not self.alive(), 120, 0.05, f"run {self.runs} logging")
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.exits.append((self.runs, rc, "SIGTERM"))
        self.proc = None
        return rc

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self.exits.append((self.runs, rc, "finished"))
        self.proc = None
        return rc

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            self.proc.wait(30)

    def tails(self, lines: int = 40) -> str:
        out = []
        for r in range(1, self.runs + 1):
            text = self.log(r).read_text(errors="replace").splitlines()
            out.append(f"--- run {r} ({len(text)} lines), last {lines}:")
            out += text[-lines:]
        return "\n".join(out)


# --------------------------------------------------------------------------- savepoint monitor


def _seq(s: str | None) -> int | None:
    return int(s) if s and s.isdigit() else None


class Monitor(threading.Thread):
    """Samples the savepoint and records every claim it makes that is not true."""

    def __init__(
        self,
        sp_dir: Path,
        target: Any,
        data: Dataset,
        frozen_by_segment: dict[int, list[str]],
        interval: float = 0.25,
    ) -> None:
        super().__init__(name="soak-monitor", daemon=True)
        self.sp_dir, self.target, self.data = sp_dir, target, data
        self.frozen = frozen_by_segment
        self.interval = interval
        self.stop = threading.Event()
        self.violations: list[str] = []
        self._said: set[str] = set()
        self.samples = 0
        self.checked: set[int] = set()  # segments whose frozen items were checked on the target
        self.seen_done_snapshot = False
        self._prev: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def _violation(self, what: str) -> None:
        if what not in self._said:  # a false claim repeats in every sample: say it once
            self._said.add(what)
            self.violations.append(f"{time.strftime('%H:%M:%S')} {what}")

    def missing_frozen(self, segment: int) -> list[str]:
        """Frozen items of ``segment`` not on the target as the source has them."""
        keys = self.frozen.get(segment, [])
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 100):
            req: dict[str, Any] = {
                self.data.table: {"Keys": [{"pk": {"S": k}} for k in keys[i : i + 100]]}
            }
            while req:
                r = self.target.batch_get_item(RequestItems=req)
                for it in r["Responses"].get(self.data.table, []):
                    found[it["pk"]["S"]] = it
                req = r.get("UnprocessedKeys") or {}
        bad = []
        for k in keys:
            want = self.data.seed_item(int(k.split("#")[1]))
            if k not in found or normalize(found[k]) != normalize(want):
                bad.append(k)
        return bad

    def check(self, sp: dict[str, Any]) -> None:
        total = sp.get("totalSegments")
        done = set(sp.get("segmentsDone") or [])
        partial = {int(k) for k in (sp.get("segmentKeys") or {})}
        if sp.get("snapshotDone"):
            self.seen_done_snapshot = True
            if total is None or done != set(range(total)):
                self._violation(
                    f"snapshotDone with segments {sorted(done)} of {total} "
                    f"(missing {sorted(set(range(total or 0)) - done)})"
                )
        if done & partial:
            self._violation(f"segments both done and in progress: {sorted(done & partial)}")
        prev = self._prev
        if prev is not None:
            if prev.get("fingerprint") != sp.get("fingerprint"):
                self._violation("the savepoint changed identity mid-run")
            if lost := set(prev.get("segmentsDone") or []) - done:
                self._violation(f"segments no longer done: {sorted(lost)}")
            if prev.get("snapshotDone") and not sp.get("snapshotDone"):
                self._violation("snapshotDone went back to false")
            for sid, p in (prev.get("shards") or {}).items():
                now = (sp.get("shards") or {}).get(sid)
                if now is None:
                    self._violation(f"shard {sid} dropped from the savepoint")
                    continue
                a, b = _seq(p.get("sequenceNumber")), _seq(now.get("sequenceNumber"))
                if a is not None and (b is None or b < a):
                    self._violation(f"shard {sid} went back from {a} to {b}")
                if p.get("finished") and not now.get("finished"):
                    self._violation(f"shard {sid} no longer finished")
        for seg in sorted(done - self.checked):
            self.checked.add(seg)
            if bad := self.missing_frozen(seg):
                self._violation(
                    f"segment {seg} recorded done but {len(bad)} of its never-changed items "
                    f"are not on the target as on the source (e.g. {bad[:5]})"
                )
        self._prev = sp

    def sample(self) -> None:
        sp = read_savepoint(self.sp_dir)
        if sp:
            self.samples += 1
            self.check(sp)

    def run(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                self.sample()
        except BaseException as e:
            self.error = e

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        assert self.error is None, f"the savepoint monitor failed: {self.error!r}"
        self.sample()  # the last word: the savepoint the final run left


# --------------------------------------------------------------------------- targets


class NodeSet(Protocol):
    """A multi-node target: what ``ClusterTarget`` needs from a cluster stand-in."""

    @property
    def url(self) -> str: ...

    hosts: list[str]

    def take_down(self, i: int) -> None: ...

    def bring_back(self, i: int) -> None: ...

    def stop(self) -> None: ...


class RevivableCluster:
    """FakeCluster (forwarders on 127.0.0.1-3, one port, /localnodes) whose nodes come back:
    a lost node is re-created on its address and port. All nodes share one server and one
    clock, so it models node loss, not clock skew."""

    def __init__(self, upstream: str, nodes: int = 3) -> None:
        self.upstream = upstream
        self.fake = FakeCluster(upstream, nodes).start()
        self.hosts = self.fake.hosts

    @property
    def url(self) -> str:
        return self.fake.url

    def take_down(self, i: int) -> None:
        self.fake.kill(i)

    def bring_back(self, i: int) -> None:
        node = HttpForwarder(
            self.upstream,
            host=self.hosts[i],
            port=self.fake.port,
            localnodes=self.fake._localnodes,
        ).start()
        self.fake.nodes[i] = node
        self.fake.down.discard(i)

    def stop(self) -> None:
        self.fake.stop()


Action = Callable[[random.Random], tuple[float, Callable[[], None]]]


class ProxiedTarget:
    """dynalite behind a FaultProxy: every fault here is the target misbehaving for a while."""

    def __init__(self, dynalite_url: str, seed: int) -> None:
        self.proxy = FaultProxy(dynalite_url, seed=seed).start()
        self.delay = 0.0
        self.delayed = 0
        self.proxy.intercept = self._slow

    def _slow(self, op: str, body: bytes) -> dict[str, Any] | None:
        if self.delay > 0:
            self.delayed += 1
            time.sleep(self.delay)  # the target is slow to answer: this IS the fault
        return None

    @property
    def url(self) -> str:
        return self.proxy.url

    def config_extra(self) -> dict[str, Any]:
        return {}

    def actions(self) -> dict[str, Action]:
        """name -> (rng -> (how long it lasts, how to start it)); ``clear()`` ends every one."""

        def faults(**kw: float) -> Action:
            def draw(rng: random.Random) -> tuple[float, Callable[[], None]]:
                scaled = {k: round(v * rng.uniform(0.4, 1.0), 3) for k, v in kw.items()}
                return rng.uniform(2, 8), lambda: self.proxy.set_faults(**scaled)

            return draw

        def outage(rng: random.Random) -> tuple[float, Callable[[], None]]:
            secs = rng.uniform(2, 6)
            return secs, lambda: self.proxy.outage(secs)

        def slow(rng: random.Random) -> tuple[float, Callable[[], None]]:
            d = rng.uniform(0.2, 1.0)
            return rng.uniform(3, 8), lambda: setattr(self, "delay", d)

        return {
            "target_500": faults(error500=0.6),
            "target_throttle": faults(throttle=0.7),
            "target_resets": faults(reset=0.4),
            "target_mixed": faults(throttle=0.25, error500=0.2, reset=0.15),
            "target_outage": outage,
            "target_slow": slow,
        }

    def endpoint_down(self) -> bool:
        """Whether the node the config names is down (only a cluster loses nodes)."""
        return False

    def clear(self) -> None:
        self.proxy.set_faults()
        self.proxy.outage(0)
        self.delay = 0.0

    def injected(self) -> dict[str, int]:
        out = {k: v for k, v in self.proxy.injected.items() if k != "intercepted"}
        out["slowed"] = self.delayed
        return out

    def stop(self) -> None:
        self.proxy.stop()


class ClusterTarget(ProxiedTarget):
    """A multi-node Alternator in front of the faulty target: adds "a node is lost, then comes
    back" to the schedule. ``cluster_factory(upstream)`` builds the node set; the default is
    ``RevivableCluster``; a skewed-clock stand-in plugs in here."""

    def __init__(
        self,
        dynalite_url: str,
        seed: int,
        cluster_factory: Callable[[str], NodeSet] = RevivableCluster,
    ) -> None:
        super().__init__(dynalite_url, seed)
        self.cluster = cluster_factory(self.proxy.url)
        self.lost: set[int] = set()
        self.losses = 0

    @property
    def url(self) -> str:
        return self.cluster.url

    def config_extra(self) -> dict[str, Any]:
        # Fast refreshes so that a lost or returning node is noticed within the action.
        return {"type": "alternator", "alternator": {"activeRefreshIntervalMs": 200}}

    def actions(self) -> dict[str, Action]:
        def node_loss(rng: random.Random) -> tuple[float, Callable[[], None]]:
            i = rng.randrange(len(self.cluster.hosts))

            def lose() -> None:
                self.losses += 1
                self.lost.add(i)
                self.cluster.take_down(i)

            return rng.uniform(3, 10), lose

        return {**super().actions(), "node_loss": node_loss}

    def endpoint_down(self) -> bool:
        # The config's endpoint is the cluster's first node (``url``): the one the migrator
        # must reach to start at all.
        return 0 in self.lost

    def clear(self) -> None:
        super().clear()
        for i in sorted(self.lost):
            self.cluster.bring_back(i)
        self.lost.clear()

    def injected(self) -> dict[str, int]:
        out = {**super().injected(), "node_losses": self.losses}
        if hasattr(self.cluster, "lost"):  # a skewed-clock stand-in counts writes lost to skew
            out["writes_lost_to_skew"] = int(self.cluster.lost)
        return out

    def stop(self) -> None:
        self.cluster.stop()
        super().stop()


# --------------------------------------------------------------------------- the schedule

FINALE = 5.0  # seconds of the hot-items burst after the schedule

MIGRATOR_ACTIONS = ("kill9", "second_run", "sigstop", "sigterm_restart")


@dataclass
class Step:
    at: float  # seconds after the migrator's first start
    name: str
    lasts: float
    start: Callable[[], None] | None = None  # target actions only

    def __str__(self) -> str:
        return f"{self.at:6.1f}s {self.name} ({self.lasts:.1f}s)"


def draw_schedule(
    rng: random.Random, duration: float, target_actions: dict[str, Action]
) -> list[Step]:
    """Fault steps one after another until ``duration``: gaps of quiet between them so that the
    migrator makes progress, each fault kind about equally likely."""
    names = sorted([*MIGRATOR_ACTIONS, *target_actions])
    steps: list[Step] = []
    t = rng.uniform(0.3, 2.5)  # early kills hit the schema and stream steps
    while t < duration:
        name = rng.choice(names)
        if name == "kill9":
            step = Step(t, name, rng.uniform(0, 3))  # down this long, then restarted
        elif name == "sigstop":
            step = Step(t, name, rng.uniform(1, 6))
        elif name == "sigterm_restart":
            step = Step(t, name, rng.uniform(0, 2))
        elif name == "second_run":
            step = Step(t, name, 0)
        else:
            lasts, start = target_actions[name](rng)
            step = Step(t, name, lasts, start)
        steps.append(step)
        t += step.lasts + rng.uniform(1, 6)
    return steps


# --------------------------------------------------------------------------- one soak run


@dataclass
class SoakReport:
    seed: int
    steps: list[Step]
    writes: dict[str, int]
    injected: dict[str, int]
    exits: list[tuple[int, int, str]]
    samples: int
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        done = {}
        for s in self.steps:
            done[s.name] = done.get(s.name, 0) + 1
        return (
            f"seed {self.seed}: {len(self.steps)} faults {done}; writes {self.writes}; "
            f"target faults {self.injected}; migrator runs {len(self.exits)}; "
            f"savepoint samples {self.samples}"
        )


def run_soak(
    *,
    seed: int,
    duration: float,
    moto_url: str,
    src: Any,
    dst: Any,
    target: ProxiedTarget,
    table: str,
    tmp: Path,
    say: Callable[[str], None] = print,
) -> SoakReport:
    """One seeded soak: seed the source, run the migrator through the schedule while the
    writer mutates, stop it all, catch up, and check. Raises AssertionError on any failure,
    with the seed, the schedule, the violations and the migrator's logs."""
    rng = random.Random(seed)
    # Each part draws from its own generator, so that the schedule stays the same whatever the
    # writer does (it draws as long as it runs).
    data_rng, writer_rng, sched_rng = (random.Random(rng.getrandbits(64)) for _ in range(3))
    data = Dataset(table, cold=data_rng.randrange(900, 2000), pad=data_rng.randrange(100, 600))
    segments = data_rng.choice([4, 6, 8])
    data.seed(src)
    frozen = data.frozen_by_segment(src, segments)
    sp_dir = tmp / "sp"
    cfg = write_config(
        tmp / "soak.yaml",
        source_url=moto_url,
        source_table=table,
        target_url=target.url,
        target_table=table,
        savepoints=sp_dir,
        source_extra={"scanSegments": segments, "maxMapTasks": 2},
        # A slow enough copy (about 10-20 s) that faults land in the snapshot too.
        target_extra={
            "writeThroughput": data_rng.choice([100, 150, 200]),
            "throughputWritePercent": 1.0,
            **target.config_extra(),
        },
        top_extra={"savepoints": {"path": str(sp_dir), "intervalSeconds": 0.5}},
    )
    steps = draw_schedule(sched_rng, duration, target.actions())
    say(
        f"\nsoak seed {seed} (rerun: SOAK_SEED={seed}); {data.cold} seeded items, "
        f"{segments} segments; logs in {tmp}"
    )
    for s in steps:
        say(f"  {s}")

    writer = Writer(src, data, writer_rng, rate=writer_rng.uniform(15, 40))
    monitor = Monitor(sp_dir, dst, data, frozen)
    mig = Migrator(cfg, tmp)
    failures: list[str] = []
    report = SoakReport(seed, steps, writer.ops, {}, mig.exits, 0)
    try:
        writer.start()
        monitor.start()
        mig.start()
        t0 = time.monotonic()

        refused = [False]  # a run refused to start: its configured endpoint was down

        def check_run() -> None:
            """A run that ended by itself is a failure, noted, and restarted; except one that
            started while the config's endpoint node was lost and said so (exit 1 naming it
            unreachable is the right answer then): it is started again once the node is back."""
            if mig.reap_unexpected():
                said = mig.log().read_text(errors="replace")
                if target.endpoint_down() and "is unreachable" in said:
                    say(f"  run {mig.runs} refused to start: its endpoint node is down")
                    refused[0] = True
                else:
                    failures.append(f"migrator run {mig.runs} ended by itself")
                    mig.start()
            if refused[0] and not target.endpoint_down():
                refused[0] = False
                mig.start()

        def until(t: float) -> None:
            # The schedule's own clock; a run that ended by itself is noted and restarted.
            while (left := t0 + t - time.monotonic()) > 0:
                time.sleep(min(left, 0.2))
                assert writer.error is None, f"the source writer failed: {writer.error!r}"
                check_run()

        for step in steps:
            until(step.at)
            check_run()
            if step.name == "kill9":
                mig.kill9()
                until(step.at + step.lasts)
                mig.start()
            elif step.name == "sigstop":
                mig.pause()
                until(step.at + step.lasts)
                mig.resume()
            elif step.name == "second_run":
                # Once the run holds its lock (python starts in about a second), a second run
                # on the same savepoint must be refused and leave the first one undisturbed.
                until(max(step.at, mig.started + 4 - t0))
                second = cli("migrate", "--config", str(cfg), "--no-progress", timeout=120)
                if second.returncode == 0 or "another run holds" not in second.stderr:
                    failures.append(
                        f"a second run beside run {mig.runs} exited {second.returncode}: "
                        f"{second.stderr[-500:]}"
                    )
            elif step.name == "sigterm_restart":
                if (rc := mig.terminate()) != 0:
                    failures.append(f"SIGTERM: run {mig.runs} exited {rc}, not 0")
                until(step.at + step.lasts)
                mig.start()
            else:
                assert step.start is not None
                step.start()
                until(step.at + step.lasts)
                target.clear()
                check_run()
        until(duration)
        target.clear()

        # The end: a burst on the hot items, no more changes, the running migrator catches up
        # (status says so) and stops politely; a last run resumes at the savepoint's positions
        # and must find nothing left to apply.
        writer.hot_only = True
        until(duration + FINALE)
        writer.finish()
        if mig.reap_unexpected():
            failures.append(f"migrator run {mig.runs} ended by itself")
        else:
            eventually(lambda: caught_up(cfg), 300, 0.5, "status: the running migrator caught up")
            if (rc := mig.terminate()) != 0:
                failures.append(f"final SIGTERM: run {mig.runs} exited {rc}, not 0")
        mig.start("--stop-when-caught-up", "3")
        if (rc := mig.wait(600)) != 0:
            failures.append(f"the catch-up run {mig.runs} exited {rc}, not 0")
        elif applied := applied_records(mig.log().read_text(errors="replace")):
            failures.append(
                f"the last run applied {applied} records after a caught-up run had saved its "
                "positions (a restart must resume after the last applied record)"
            )
        monitor.finish()
        failures += final_checks(cfg, sp_dir, monitor, mig, segments)
        if failures or monitor.violations:
            diff = table_diff(src, table, dst, table, ("pk",))
            shown = [d if len(d) < 200 else d[:200] + "..." for d in diff[:10]]
            failures.append(f"source vs target: {len(diff)} differences: {shown}")
    finally:
        writer.stop.set()
        monitor.stop.set()
        mig.cleanup()
        report.injected = target.injected()
        report.samples = monitor.samples
        report.violations = monitor.violations
    say(report.summary())
    for run, rc, why in mig.exits:
        say(f"  run {run}: {why}, exit {rc}")
    problems = failures + [f"savepoint claimed: {v}" for v in monitor.violations]
    assert not problems, (
        f"soak seed {seed} failed (rerun: SOAK_SEED={seed}):\n  "
        + "\n  ".join(problems)
        + "\nschedule:\n  "
        + "\n  ".join(map(str, steps))
        + "\n"
        + mig.tails()
    )
    return report


def caught_up(cfg: Path) -> bool:
    """``status --json``: the savepoint's positions are at the end of every shard."""
    st = cli("status", "--config", str(cfg), "--json", timeout=120)
    return st.returncode == 0 and json.loads(st.stdout).get("caughtUp") is True


def applied_records(log_text: str) -> int:
    """Records counted in a run's tables of applied changes."""
    return sum(int(n) for n in re.findall(r"^\| \w+\s*\|\s*(\d+)\|$", log_text, re.M))


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alternator_migrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def final_checks(
    cfg: Path, sp_dir: Path, monitor: Monitor, mig: Migrator, segments: int
) -> list[str]:
    """After the catch-up run: what the savepoint, ``status`` and ``validate`` say, and what the
    logs said along the way."""
    out: list[str] = []
    sp = read_savepoint(sp_dir)
    if not sp.get("snapshotDone") or set(sp.get("segmentsDone") or []) != set(range(segments)):
        out.append(
            f"the end: snapshot not complete in the savepoint "
            f"(done {sp.get('snapshotDone')}, segments {sp.get('segmentsDone')} of {segments})"
        )
    missing_seg = [s for s in range(segments) if s not in monitor.checked]
    if missing_seg:
        out.append(f"segments never seen done by the monitor: {missing_seg}")
    st = cli("status", "--config", str(cfg), "--json")
    if st.returncode != 0:
        out.append(f"status exited {st.returncode}: {st.stderr[-500:]}")
    else:
        s = json.loads(st.stdout)
        seen = (s["phase"], s["caughtUp"], s["segmentsDone"], s["segmentsTotal"])
        # (snapshotComplete: where status says it apart from the segment count)
        if seen != ("replay", True, segments, segments) or s.get("snapshotComplete") is False:
            out.append(f"status after the catch-up: {s}")
    v = cli("validate", "--config", str(cfg))
    if v.returncode != 0:
        out.append(f"validate exited {v.returncode}: {(v.stdout + v.stderr)[-1500:]}")
    # What each run told the operator: the snapshot is called done only by a run after which
    # the savepoint really has every segment (checked above), and no run crashed.
    for r in range(1, mig.runs + 1):
        text = mig.log(r).read_text(errors="replace")
        if "Traceback" in text:
            out.append(f"run {r} logged a traceback")
    last = mig.log(mig.runs).read_text(errors="replace")
    if "Done transferring table snapshot" not in last and "Snapshot already done" not in last:
        out.append("the catch-up run never said the snapshot was done")
    return out
