"""Replay latency: mutations written to the source at a fixed rate, timed until visible in the target.

*Mutators* (one spawned process per writer, disjoint keys) put ~1 KB items on the source on a
fixed schedule and note when each put was acknowledged. When several puts are due at once (high
rates, or a writer that fell behind) they go out as one BatchWriteItem, so the schedule holds as
far as the source allows; the achieved rate is reported, not assumed. A *checker* in the calling
process polls the target with BatchGetItem (keys only) for every acknowledged key and notes when
it first appears. Latency = first seen in target - acknowledged by source; its resolution is
the poll interval plus one BatchGetItem round trip.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import orjson
from loader import lean_client

PAD = "x" * 960  # with the key and timestamp: about 1 KB per mutation


def mutation_key(prefix: str, writer: int, seq: int) -> str:
    return f"{prefix}-w{writer}-{seq:08d}"


def _mutator(
    url: str,
    table: str,
    prefix: str,
    writer: int,
    rate: float,
    start_at: float,
    duration: float,
    total: int | None,
    acked: Synchronized,  # type: ignore[type-arg]
    out_path: str,
) -> None:
    """Put items on schedule (``rate``/s from ``start_at`` for ``duration`` s, or ``total``)."""
    client = lean_client(url, pool_size=2, label="mutator")
    acks: list[float] = []
    end = start_at + duration
    seq = 0
    while time.monotonic() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.monotonic())))
    while True:
        now = time.monotonic()
        if total is not None:
            due = total
        else:
            if now >= end:
                break
            due = int((now - start_at) * rate) + 1
        if seq >= due:
            if total is not None:
                break
            time.sleep(max(0.0, start_at + seq / rate - now))
            continue
        n = min(25, due - seq)
        items = [
            {
                "pk": {"S": mutation_key(prefix, writer, seq + i)},
                "ts": {"N": f"{time.time():.6f}"},
                "pad": {"S": PAD},
            }
            for i in range(n)
        ]
        if n == 1:
            client.call("PutItem", {"TableName": table, "Item": items[0]})
        else:
            reqs: list[Any] = [{"PutRequest": {"Item": it}} for it in items]
            while reqs:
                r = client.call_raw("BatchWriteItem", orjson.dumps({"RequestItems": {table: reqs}}))
                reqs = r.get("UnprocessedItems", {}).get(table, [])
        t = time.monotonic()
        acks.extend([t] * n)
        seq += n
        acked.value = seq
    Path(out_path).write_text(json.dumps({"acks": acks, "first_at": start_at}))


@dataclass
class PhaseResult:
    target_rate: float
    writers: int
    written: int = 0
    visible: int = 0
    write_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_ack: float = 0.0
    last_visible: float = 0.0
    poll_interval: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.written / self.write_seconds if self.write_seconds else 0.0

    @property
    def applied_rate(self) -> float:
        span = self.last_visible - self.first_ack
        return self.visible / span if span > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


class Checker:
    """Polls the target for acknowledged keys, in write order per writer."""

    def __init__(self, url: str, table: str, prefix: str, writers: int, interval: float) -> None:
        self.client = lean_client(url, pool_size=4, label="checker")
        self.table = table
        self.prefix = prefix
        self.interval = interval
        self.next = [0] * writers  # per writer: every key below this is visible
        self.seen: list[dict[int, float]] = [{} for _ in range(writers)]

    def _get(self, keys: list[str]) -> set[str]:
        r = self.client.call(
            "BatchGetItem",
            {
                "RequestItems": {
                    self.table: {
                        "Keys": [{"pk": {"S": k}} for k in keys],
                        "ProjectionExpression": "pk",
                    }
                }
            },
        )
        return {it["pk"]["S"] for it in r.get("Responses", {}).get(self.table, [])}

    def poll(self, acked: list[int]) -> None:
        for w, upto in enumerate(acked):
            seen = self.seen[w]
            while self.next[w] < upto:
                want: list[int] = []
                s = self.next[w]  # not yet seen: the loop below stops on the first unseen
                while s < upto and len(want) < 100:
                    if s not in seen:
                        want.append(s)
                    s += 1
                found = self._get([mutation_key(self.prefix, w, s) for s in want])
                now = time.monotonic()
                missing = False
                for s in want:
                    if mutation_key(self.prefix, w, s) in found:
                        seen[s] = now
                    else:
                        missing = True
                while self.next[w] in seen:
                    self.next[w] += 1
                if missing:
                    break  # later keys are (almost always) not there yet either

    def done(self, acked: list[int]) -> bool:
        return all(self.next[w] >= n for w, n in enumerate(acked))


def run_phase(
    source_url: str,
    target_url: str,
    table: str,
    prefix: str,
    rate: float,
    duration: float,
    writers: int,
    work: Path,
    *,
    total: int | None = None,
    poll_interval: float = 0.02,
    settle_timeout: float = 60.0,
    after_written: Any = None,
) -> PhaseResult:
    """One phase: ``writers`` mutators at ``rate``/s in all for ``duration`` s (or ``total``
    items each, as fast as they go). ``after_written`` is called once every put is acknowledged
    (the backlog test resumes the migrator there); returns the latencies."""
    ctx = mp.get_context("spawn")
    counters = [ctx.Value("q", 0) for _ in range(writers)]
    start_at = time.monotonic() + 1.5  # spawned interpreters need a moment to start
    outs = [work / f"{prefix}-w{w}.json" for w in range(writers)]
    procs = [
        ctx.Process(
            target=_mutator,
            args=(
                source_url,
                table,
                prefix,
                w,
                rate / writers,
                start_at,
                duration,
                total,
                counters[w],
                str(outs[w]),
            ),
            daemon=True,
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    checker = Checker(target_url, table, prefix, writers, poll_interval)
    deadline: float | None = None
    resumed = False
    while True:
        acked = [int(c.value) for c in counters]
        alive = any(p.is_alive() for p in procs)
        if not alive and not resumed and after_written is not None:
            after_written()
            resumed = True
        checker.poll(acked)
        if not alive:
            deadline = deadline or time.monotonic() + settle_timeout
            if checker.done(acked) or time.monotonic() > deadline:
                break
        time.sleep(poll_interval)
    for p in procs:
        p.join()
    res = PhaseResult(rate, writers, poll_interval=poll_interval)
    first_ack = float("inf")
    last_ack = 0.0
    for w, out in enumerate(outs):
        if not out.exists():
            raise RuntimeError(f"mutator {w} of phase {prefix} wrote no results (crashed?)")
        acks = json.loads(out.read_text())["acks"]
        res.written += len(acks)
        if acks:
            first_ack = min(first_ack, acks[0])
            last_ack = max(last_ack, acks[-1])
        for s, t in enumerate(acks):
            v = checker.seen[w].get(s)
            if v is not None:
                res.visible += 1
                res.latencies.append(max(0.0, v - t))
                res.last_visible = max(res.last_visible, v)
    res.first_ack = first_ack if res.written else 0.0
    res.write_seconds = (last_ack - start_at) if res.written else 0.0
    return res


def read_stream_ceiling(url: str, table: str) -> dict[str, float]:
    """Read the source table's whole stream from TRIM_HORIZON with one plain reader (lean
    client, Limit 1000): the rate the source can hand out records, to compare the replay with."""
    client = lean_client(url, label="stream-reader")
    arn = client.call("DescribeTable", {"TableName": table})["Table"]["LatestStreamArn"]
    shards = client.call("DescribeStream", {"StreamArn": arn}, streams=True)["StreamDescription"][
        "Shards"
    ]
    records = 0
    calls = 0
    seconds = 0.0
    for shard in shards:
        it = client.call(
            "GetShardIterator",
            {"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
            streams=True,
        ).get("ShardIterator")
        while it:
            t0 = time.monotonic()
            r = client.call("GetRecords", {"ShardIterator": it, "Limit": 1000}, streams=True)
            seconds += time.monotonic() - t0
            calls += 1
            n = len(r.get("Records", []))
            records += n
            it = r.get("NextShardIterator") if n else None
    return {
        "records": records,
        "calls": calls,
        "seconds": seconds,
        "records_per_s": records / seconds if seconds else 0.0,
    }
