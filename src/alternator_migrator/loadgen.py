"""Random puts, updates and deletes over a fixed key space at a given rate.

Used to rehearse a live migration: the Scylla Migrator's own test mutated 10,000 keys at
10-25 operations per second while the migration ran. Each second draws a rate from the range
and spreads that many operations evenly over the second; the schedule is absolute, so a slow
request delays the next ones but the long-run rate still holds.
"""

from __future__ import annotations

import base64
import logging
import random
import string
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from .aws.client import CredentialSource, DynamoClient, DynamoError, preflight
from .aws.retry import Backoff, wait
from .config import Credentials
from .errors import Interrupted, MigratorError

log = logging.getLogger(__name__)

Item = dict[str, Any]
OPS = ("put", "update", "delete")
DEFAULT_MIX = {"put": 40.0, "update": 30.0, "delete": 30.0}
LARGE_FRACTION = 0.02  # share of puts that carry a ~10-50 KB attribute


class LoadgenError(MigratorError):
    """Bad loadgen options or an unusable table."""


@dataclass(frozen=True)
class LoadgenOptions:
    endpoint: str
    table: str
    keys: int = 10_000
    rate: tuple[float, float] = (10.0, 25.0)
    duration: float | None = None  # None: until stopped
    seed: int | None = None
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    create: bool = False
    region: str = "us-east-1"
    access_key: str = "dummy"
    secret_key: str = "dummy"
    writers: int = 1
    large_fraction: float = LARGE_FRACTION


@dataclass
class LoadgenStats:
    counts: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    prepopulated: int = 0
    seconds: float = 0.0  # time spent applying load (after any prepopulation)
    targets: list[int] = field(default_factory=list)  # operations scheduled, per second

    @property
    def total(self) -> int:
        return sum(self.counts[op] for op in OPS)


def parse_rate(text: str) -> tuple[float, float]:
    """'10-25' or '20' -> (low, high) operations per second."""
    try:
        lo_s, _, hi_s = text.partition("-")
        lo = float(lo_s)
        hi = float(hi_s) if hi_s else lo
    except ValueError:
        raise LoadgenError(f"--rate {text!r}: write LOW-HIGH or N, e.g. 10-25") from None
    if lo < 0 or hi < lo:
        raise LoadgenError(f"--rate {text!r}: need 0 <= LOW <= HIGH")
    return lo, hi


def parse_mix(text: str) -> dict[str, float]:
    """'put=40,update=30,delete=30' -> weights (missing operations weigh 0)."""
    mix = dict.fromkeys(OPS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in mix:
            raise LoadgenError(f"--mix {text!r}: use put=N,update=N,delete=N")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise LoadgenError(f"--mix {text!r}: {weight!r} is not a number") from None
        if mix[name] < 0:
            raise LoadgenError(f"--mix {text!r}: weights must be >= 0")
    if sum(mix.values()) <= 0:
        raise LoadgenError(f"--mix {text!r}: at least one weight must be positive")
    return mix


# --------------------------------------------------------------------------- data


def _word(rng: random.Random, lo: int = 3, hi: int = 12) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(lo, hi)))


def _number(rng: random.Random) -> str:
    # Integers, decimals with trailing zeros and exponents: servers store these differently,
    # which is exactly what the validator must see through.
    kind = rng.randrange(4)
    if kind == 0:
        return str(rng.randint(-1_000_000, 1_000_000))
    if kind == 1:
        return f"{rng.randint(-99999, 99999)}.{rng.randint(0, 999):03d}"
    if kind == 2:
        return f"{rng.randint(1, 999)}E{rng.randint(-5, 5)}"
    return str(rng.randint(0, 10))


def _blob(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _distinct(rng: random.Random, make: Any, n: int) -> list[Any]:
    out: dict[Any, None] = {}
    while len(out) < n:
        out[make()] = None
    return list(out)


def _number_set(rng: random.Random, n: int) -> list[str]:
    # Distinct by value (DynamoDB rejects 1 and 1.0 in one set).
    return [str(v) for v in rng.sample(range(-10_000, 10_000), n)]


def random_value(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"]
    if depth < 2:
        kinds += ["M", "L"]
    kind = rng.choice(kinds)
    if kind == "S":
        return {"S": _word(rng)}
    if kind == "N":
        return {"N": _number(rng)}
    if kind == "B":
        return {"B": _blob(rng, rng.randint(1, 32))}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": _distinct(rng, lambda: _word(rng), rng.randint(1, 4))}
    if kind == "NS":
        return {"NS": _number_set(rng, rng.randint(1, 4))}
    if kind == "BS":
        return {"BS": _distinct(rng, lambda: _blob(rng, 8), rng.randint(1, 4))}
    if kind == "M":
        return {"M": {_word(rng, 1, 6): random_value(rng, depth + 1) for _ in range(3)}}
    return {"L": [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]}


def random_item(rng: random.Random, key: Item, large_fraction: float = LARGE_FRACTION) -> Item:
    """An item with every attribute type, some optional attributes, rarely a large one."""
    item: Item = dict(key)
    item["s"] = {"S": _word(rng)}
    item["n"] = {"N": _number(rng)}
    item["b"] = {"B": _blob(rng, rng.randint(1, 64))}
    item["ss"] = {"SS": _distinct(rng, lambda: _word(rng), rng.randint(1, 5))}
    item["ns"] = {"NS": _number_set(rng, rng.randint(1, 5))}
    item["bs"] = {"BS": _distinct(rng, lambda: _blob(rng, 8), rng.randint(1, 3))}
    item["m"] = {
        "M": {
            "name": {"S": _word(rng)},
            "score": {"N": _number(rng)},
            "tags": {"L": [random_value(rng, 1) for _ in range(rng.randint(0, 3))]},
        }
    }
    item["l"] = {"L": [random_value(rng) for _ in range(rng.randint(0, 5))]}
    item["nul"] = {"NULL": True}
    item["flag"] = {"BOOL": rng.random() < 0.5}
    for i in range(rng.randint(0, 3)):
        item[f"extra{i}"] = random_value(rng)
    if rng.random() < large_fraction:
        size = rng.randint(10_000, 50_000)
        item["large"] = {"S": "x" * size} if rng.random() < 0.5 else {"B": _blob(rng, size)}
    return item


class KeySpace:
    """Key number -> key in wire format, following the table's key schema."""

    def __init__(self, desc: dict[str, Any], size: int) -> None:
        types = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
        ks = sorted(desc["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
        self.names = [k["AttributeName"] for k in ks]
        self.types = [types[n] for n in self.names]
        self.size = size

    def key(self, n: int) -> Item:
        out: Item = {}
        for i, (name, t) in enumerate(zip(self.names, self.types, strict=True)):
            v = n if i == 0 else 0  # a range key, if any, is fixed: one item per hash key
            if t == "S":
                out[name] = {"S": f"key-{v:07d}"}
            elif t == "N":
                out[name] = {"N": str(v)}
            else:
                out[name] = {"B": base64.b64encode(v.to_bytes(4, "big")).decode()}
        return out


def _update_value(rng: random.Random, attr: str) -> dict[str, Any]:
    if attr == "s":
        return {"S": _word(rng)}
    if attr == "n":
        return {"N": _number(rng)}
    if attr == "flag":
        return {"BOOL": rng.random() < 0.5}
    if attr == "ss":
        return {"SS": _distinct(rng, lambda: _word(rng), 2)}
    return random_value(rng)


def random_update(rng: random.Random, key: Item, table: str) -> dict[str, Any]:
    """An UpdateItem body: SET, ADD or REMOVE on a few attributes (creates missing items)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []
    adds: list[str] = []
    removes: list[str] = []
    for attr in rng.sample(["s", "n", "m", "l", "flag", "ss", "counter", "extra0"], 3):
        ph = f"#a{len(names)}"
        names[ph] = attr
        action = rng.randrange(4)
        if action == 0 and attr != "counter":
            removes.append(ph)
        elif attr == "counter":
            values[":inc"] = {"N": str(rng.randint(1, 5))}
            adds.append(f"{ph} :inc")
        elif attr == "ss" and action == 1:
            values[":ss"] = {"SS": [_word(rng)]}
            adds.append(f"{ph} :ss")
        else:
            vp = f":v{len(values)}"
            values[vp] = _update_value(rng, attr)
            sets.append(f"{ph} = {vp}")
    parts = []
    if sets:
        parts.append("SET " + ", ".join(sets))
    if adds:
        parts.append("ADD " + ", ".join(adds))
    if removes:
        parts.append("REMOVE " + ", ".join(removes))
    body: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": " ".join(parts),
        "ExpressionAttributeNames": names,
    }
    if values:
        body["ExpressionAttributeValues"] = values
    return body


# --------------------------------------------------------------------------- running


def make_client(opts: LoadgenOptions, stop: threading.Event | None = None) -> DynamoClient:
    creds = CredentialSource(Credentials(opts.access_key, opts.secret_key), None, opts.region)
    return DynamoClient(opts.endpoint, opts.region, creds, label="loadgen", stop=stop)


def ensure_table(client: DynamoClient, opts: LoadgenOptions, out: TextIO) -> dict[str, Any]:
    try:
        desc: dict[str, Any] = preflight(client, "DescribeTable", {"TableName": opts.table})[
            "Table"
        ]
        if opts.create:
            out.write(f"loadgen: table {opts.table!r} exists; reusing it\n")
        return desc
    except DynamoError as e:
        if e.code != "ResourceNotFoundException":
            raise
        if not opts.create:
            raise LoadgenError(
                f"table {opts.table!r} does not exist at {opts.endpoint}; pass --create"
            ) from None
    client.call(
        "CreateTable",
        {
            "TableName": opts.table,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    deadline = time.monotonic() + 60
    while True:
        desc = client.call("DescribeTable", {"TableName": opts.table})["Table"]
        if desc.get("TableStatus") == "ACTIVE":
            out.write(f"loadgen: created table {opts.table!r} (hash key pk, on demand)\n")
            return desc
        if time.monotonic() > deadline:
            raise LoadgenError(f"table {opts.table!r} did not become ACTIVE within 60s")
        wait(client.stop, 0.5, "waiting for the table to become ACTIVE")


def prepopulate(
    client: DynamoClient,
    opts: LoadgenOptions,
    space: KeySpace,
    rng: random.Random,
    stop: threading.Event,
    out: TextIO,
) -> int:
    written = 0
    started = time.monotonic()
    for lo in range(0, space.size, 25):
        if stop.is_set():
            break
        reqs: list[Any] = [
            {"PutRequest": {"Item": random_item(rng, space.key(n), opts.large_fraction)}}
            for n in range(lo, min(space.size, lo + 25))
        ]
        with Backoff(
            client.retry,
            stop=stop,
            endpoint=client.label,
            url=client.url,
            op="BatchWriteItem",
            unanswered=False,
        ) as backoff:
            while reqs:
                resp = client.call("BatchWriteItem", {"RequestItems": {opts.table: reqs}})
                reqs = resp.get("UnprocessedItems", {}).get(opts.table, [])
                if reqs and not backoff.retry(
                    "unprocessed_items", f"{len(reqs)} items unprocessed"
                ):
                    raise LoadgenError(
                        f"prepopulating {opts.table!r}: {len(reqs)} items stayed unprocessed after "
                        f"{backoff.attempt} retries; lower --keys or raise the table's capacity"
                    )
        written = min(space.size, lo + 25)
    out.write(f"loadgen: prepopulated {written:,} items in {time.monotonic() - started:.1f}s\n")
    out.flush()
    return written


class _Runner:
    def __init__(
        self, client: DynamoClient, opts: LoadgenOptions, space: KeySpace, rng: random.Random
    ) -> None:
        self.client = client
        self.opts = opts
        self.space = space
        self.rng = rng
        self.stats = LoadgenStats()
        self.lock = threading.Lock()
        weights = [max(0.0, opts.mix.get(op, 0.0)) for op in OPS]
        self.ops = [op for op, w in zip(OPS, weights, strict=True) if w > 0]
        self.weights = [w for w in weights if w > 0]

    def next_op(self) -> tuple[str, str, dict[str, Any]]:
        # Bodies are built on the scheduling thread so a seed gives the same sequence whatever
        # the number of writers.
        op = self.rng.choices(self.ops, self.weights)[0]
        key = self.space.key(self.rng.randrange(self.space.size))
        t = self.opts.table
        if op == "put":
            item = random_item(self.rng, key, self.opts.large_fraction)
            return op, "PutItem", {"TableName": t, "Item": item}
        if op == "update":
            return op, "UpdateItem", random_update(self.rng, key, t)
        return op, "DeleteItem", {"TableName": t, "Key": key}

    def apply(self, op: str, call: str, body: dict[str, Any]) -> None:
        try:
            self.client.call(call, body)
        except Interrupted:
            return  # stopped while retrying: the operation is simply not counted
        except DynamoError as e:
            with self.lock:
                self.stats.errors += 1
            if self.stats.errors <= 5:
                log.warning("loadgen %s failed: %s", call, e)
            if not e.retryable and e.code in ("ResourceNotFoundException",):
                raise
            return
        with self.lock:
            self.stats.counts[op] += 1


def run(
    opts: LoadgenOptions, stop: threading.Event | None = None, out: TextIO | None = None
) -> LoadgenStats:
    """Create/prepopulate if asked, then mutate until ``duration`` ends or ``stop`` is set."""
    out = out or sys.stdout
    stop = stop or threading.Event()
    if opts.keys < 1:
        raise LoadgenError("--keys must be at least 1")
    if opts.writers < 1:
        raise LoadgenError("--writers must be at least 1")
    rng = random.Random(opts.seed)
    client = make_client(opts, stop)
    try:
        desc = ensure_table(client, opts, out)
        space = KeySpace(desc, opts.keys)
        runner = _Runner(client, opts, space, rng)
        if opts.create:
            runner.stats.prepopulated = prepopulate(client, opts, space, rng, stop, out)
        _load(runner, opts, stop, out)
        return runner.stats
    finally:
        client.close()


def _load(runner: _Runner, opts: LoadgenOptions, stop: threading.Event, out: TextIO) -> None:
    stats = runner.stats
    if opts.duration is not None and opts.duration <= 0:
        return
    pool = ThreadPoolExecutor(opts.writers) if opts.writers > 1 else None
    pending: list[Future[None]] = []
    lo, hi = opts.rate
    out.write(
        f"loadgen: {opts.rate[0]:g}-{opts.rate[1]:g} ops/s on {opts.keys:,} keys of "
        f"{opts.table!r}, mix {', '.join(f'{k}={v:g}' for k, v in opts.mix.items())}, "
        f"{opts.writers} writer(s), "
        + (f"for {opts.duration:g}s" if opts.duration is not None else "until stopped")
        + "\n"
    )
    out.flush()
    start = time.monotonic()
    end = start + opts.duration if opts.duration is not None else None
    carry = 0.0
    second = 0
    before: Counter[str] = Counter()
    try:
        while not stop.is_set():
            window = start + second
            if end is not None and window >= end:
                break
            carry += runner.rng.uniform(lo, hi)
            n = int(carry)
            carry -= n
            stats.targets.append(n)
            for i in range(n):
                at = window + i / n
                if end is not None and at >= end:
                    break
                delay = at - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                op = runner.next_op()
                if pool is None:
                    runner.apply(*op)
                else:
                    pending = [f for f in pending if not f.done()]
                    # Bounded backlog: a slow server slows the schedule instead of queueing.
                    while len(pending) >= 4 * opts.writers:
                        pending[0].result()
                        pending = [f for f in pending if not f.done()]
                    pending.append(pool.submit(runner.apply, *op))
            second += 1
            next_window = start + second
            if end is not None:
                next_window = min(next_window, end)
            wait = next_window - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            with runner.lock:
                now = Counter(stats.counts)
                errors = stats.errors
            delta = now - before
            before = now
            out.write(
                f"loadgen {second:>5}s | {sum(delta.values()):>4} ops "
                f"(put {delta['put']}, update {delta['update']}, delete {delta['delete']}) "
                f"| total {sum(now.values()):,} | errors {errors}\n"
            )
            out.flush()
    finally:
        if pool is not None:
            for f in pending:
                f.result()
            pool.shutdown(wait=True)
        stats.seconds = time.monotonic() - start
    out.write(
        f"loadgen: done: {stats.total:,} operations in {stats.seconds:.1f}s "
        f"({stats.total / max(stats.seconds, 1e-9):.1f}/s): put {stats.counts['put']:,}, "
        f"update {stats.counts['update']:,}, delete {stats.counts['delete']:,}, "
        f"errors {stats.errors}\n"
    )
    out.flush()
