"""Replay on a wide stream: the migrator's own cost, with a source that cannot bottleneck it.

A scripted DynamoDB Streams endpoint (its own process) serves N lineages of shards: each a
closed parent and its open child, from pre-encoded GetRecords pages of ~1 KB NEW_IMAGE records
(INSERT/MODIFY/REMOVE, hot keys). Pages are joined from pre-encoded records of a few template
lineages (a lineage's keys differ by a placeholder replaced in the page bytes), all of them
before each run up to 2 GiB, so that the source's work does not share the two cores with the
migrator's while it is measured. Targets: ``null`` (its own process, answers every
BatchWriteItem from one pre-encoded answer) and ``dynalite`` (a real one; the final table is
checked against the stream's last state per key).

The migrator runs in a child process, either through the library (``migrate()`` with the local
engine, as the CLI wires it, timed and measured inside the child around the call) or through
the CLI (``python -m alternator_migrator migrate``; CPU and RSS from wait4, so they include
interpreter start-up). Reported: records/s, migrator CPU us/record, peak RSS; ``--profile``
adds a cProfile of the library run. Usage:

    PYTHONPATH=src .venv/bin/python bench/replay_wide.py [--shards 64] [--records 3000]
        [--modes lib,cli] [--targets null,dynalite] [--profile] [--json out.json]
        [--kinesis]

``BENCH_POOL=N`` in the environment sets the source's ``streamingPollingPoolSize`` (the read
pool's threads and the BatchWriteItem requests in flight; default 8), to see what it costs.

Regression floors (``--check``): on the null target, from the library, the run fails when
CPU per record is above ``--max-us``, RSS above ``--max-rss-mib`` or records/s below
``--min-rate``; on dynalite, when the table does not hold the stream's last state.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
TABLE = "wide"
PLACEHOLDER = b"@@@@"  # in keys only: replaced by the lineage's number in each page
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:000000000000:table/{TABLE}/stream/2026-01-01T00:00:00.000"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/wide"
TEMPLATES = 8
PREBUILT_BYTES = 2 << 30  # the scripted source's pages built before a run, at most


# --------------------------------------------------------------------------- the records


def lineage_records(
    t: int, records: int, keys: int, base_time: float
) -> tuple[list[bytes], dict[str, Any]]:
    """One template lineage's change records, encoded, and each key's last state (None:
    removed). Keys carry PLACEHOLDER where the lineage number goes."""
    rnd = random.Random(1000 + t)
    hot = [rnd.randrange(keys) for _ in range(20)]
    live: dict[str, Any] = {}
    out: list[bytes] = []
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for j in range(records):
        k = rnd.choice(hot) if rnd.random() < 0.3 else rnd.randrange(keys)
        pk = f"k{PLACEHOLDER.decode()}-{k:06d}"
        keyattr = {"pk": {"S": pk}}
        seq = f"{10**20 + j:021d}"
        d: dict[str, Any] = {
            "ApproximateCreationDateTime": round(base_time + j * 0.001, 3),
            "Keys": keyattr,
            "SequenceNumber": seq,
            "StreamViewType": "NEW_IMAGE",
        }
        if pk in live and rnd.random() < 0.15:
            name = "REMOVE"
            live.pop(pk)
        else:
            name = "MODIFY" if pk in live else "INSERT"
            image = {
                "pk": {"S": pk},
                "ver": {"N": str(j)},
                "name": {"S": " ".join(rnd.choices(words, k=4))},
                "email": {"S": f"user{k}@example.com"},
                "body": {"S": "".join(rnd.choices("abcdefghijklmnopqrstuvwxyz ", k=620))},
                "score": {"N": f"{rnd.random() * 1000:.4f}"},
                "tags": {"SS": sorted(set(rnd.choices(words, k=3)))},
                "attrs": {
                    "M": {
                        "color": {"S": rnd.choice(words)},
                        "size": {"N": str(rnd.randrange(100))},
                        "active": {"BOOL": rnd.random() < 0.5},
                        "parts": {"L": [{"N": str(rnd.randrange(10))} for _ in range(4)]},
                    }
                },
                "updated": {"N": str(int(base_time) + j)},
            }
            d["NewImage"] = image
            d["SizeBytes"] = 1000
            live[pk] = image
        out.append(
            orjson.dumps(
                {
                    "eventID": f"e{PLACEHOLDER.decode()}-{j}",
                    "eventName": name,
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": d,
                }
            )
        )
    return out, live


def shard_ids(lineage: int) -> tuple[str, str]:
    return (f"shardId-00000001-{lineage:08d}a", f"shardId-00000002-{lineage:08d}b")


# --------------------------------------------------------------------------- HTTP scaffold


def _serve(port_file: Path, handle: Any) -> None:
    """Thread per connection, keep-alive, just enough HTTP/1.1 for the migrator's client."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    port_file.write_text(str(ls.getsockname()[1]))

    def conn_loop(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(262144)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length, target = 0, b""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"x-amz-target":
                        target = value.strip()
                while len(buf) < length:
                    chunk = c.recv(max(262144, length - len(buf)))
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                status, answer = handle(target.rsplit(b".", 1)[-1].decode(), body)
                c.sendall(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    b"Content-Length: %d\r\n\r\n" % (status, len(answer)) + answer
                )
        except OSError:
            return
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=conn_loop, args=(c,), daemon=True).start()


def _error(code: str, msg: str) -> tuple[int, bytes]:
    return 400, orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": msg})


def _table_desc(table_id: str, stream: bool, account: str = "000000000000") -> dict[str, Any]:
    d: dict[str, Any] = {
        "TableName": TABLE,
        "TableStatus": "ACTIVE",
        "TableArn": f"arn:aws:dynamodb:us-east-1:{account}:table/{TABLE}",
        "TableId": table_id,
        "CreationDateTime": 1767225600.0,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        "ItemCount": 0,
        "TableSizeBytes": 0,
    }
    if stream:
        d["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        d["LatestStreamArn"] = STREAM_ARN
    return d


# --------------------------------------------------------------------------- Streams server


class StreamsServer:
    """DescribeTable/UpdateTable/DescribeTimeToLive (for the pipeline), DescribeStream,
    GetShardIterator, GetRecords; Kinesis ListShards/GetShardIterator/GetRecords with --kinesis.
    Iterators are '<lineage>/<generation>/<record index>'."""

    def __init__(self, shards: int, records: int, keys: int, kinesis: bool) -> None:
        self.lineages = shards
        self.kinesis = kinesis
        base_time = time.time() - 30
        half = records // 2
        self.gens: list[list[list[bytes]]] = []  # template -> generation -> records
        for t in range(min(TEMPLATES, shards)):
            recs, _ = lineage_records(t, records, keys, base_time)
            if kinesis:
                recs = [self._kinesis_record(r, i) for i, r in enumerate(recs)]
            self.gens.append([recs[:half], recs[half:]])
        # Kinesis: each record split around its Data (the record's JSON, not yet base64), so a
        # page is joined from bytes and the Data base64-encoded, with no JSON round trip.
        self.kparts = [
            [[self._split_data(r) for r in g] for g in t] for t in (self.gens if kinesis else [])
        ]
        self.stream_on = False
        self.reset()

    @staticmethod
    def _kinesis_record(rec: bytes, i: int) -> bytes:
        r = orjson.loads(rec)
        d = r["dynamodb"]
        d["ApproximateCreationDateTime"] = int(d["ApproximateCreationDateTime"] * 1e6)
        del d["SequenceNumber"]
        r["tableName"] = TABLE
        r["recordFormat"] = "application/json"
        # Data is base64 of the record: the placeholder must survive encoding, so the lineage
        # number is substituted before encoding, per page (see _records_page).
        return orjson.dumps(
            {
                "SequenceNumber": f"{10**20 + i:021d}",
                "ApproximateArrivalTimestamp": 1767225600.0,
                "PartitionKey": "p",
                "Data": orjson.dumps(r).decode(),  # base64-encoded when served
            }
        )

    @staticmethod
    def _split_data(rec: bytes) -> tuple[bytes, bytes, bytes]:
        head, _, tail = rec.rpartition(b',"Data":')
        assert tail.startswith(b'"') and tail.endswith(b'"}'), rec[-40:]  # Data comes last
        return head + b',"Data":"', orjson.loads(rec)["Data"].encode(), b'"}'

    def reset(self) -> None:
        self.stream_on = False
        self.first_get: float | None = None
        self.last_get: float | None = None
        self.served = 0
        self.calls: dict[str, int] = {}
        # Every page a reader asking for 1,000 records meets, built before the run (up to
        # PREBUILT_BYTES): serving one is then a send, and the source's own work during the
        # run does not compete with the migrator's for the machine's two cores.
        self.prebuilt: dict[tuple[int, int, int, int], bytes] = {}
        size = 0
        for n in range(self.lineages):
            for g, recs in enumerate(self.gens[n % len(self.gens)]):
                for idx in range(0, len(recs), 1000):
                    body = self._page(n, g, idx, 1000)
                    size += len(body)
                    if size > PREBUILT_BYTES:
                        return  # the rest is built when asked for
                    self.prebuilt[(n, g, idx, 1000)] = body

    def _shards(self) -> list[dict[str, Any]]:
        out = []
        for n in range(self.lineages):
            parent, child = shard_ids(n)
            g = self.gens[n % len(self.gens)]
            first, last = g[0][0], g[0][-1]
            out.append(
                {
                    "ShardId": parent,
                    "SequenceNumberRange": {
                        "StartingSequenceNumber": self._seq(first),
                        "EndingSequenceNumber": self._seq(last),
                    },
                }
            )
            out.append(
                {
                    "ShardId": child,
                    "ParentShardId": parent,
                    "SequenceNumberRange": {"StartingSequenceNumber": self._seq(g[1][0])},
                }
            )
        return out

    def _seq(self, rec: bytes) -> str:
        r = orjson.loads(rec)
        return str(r["SequenceNumber"] if self.kinesis else r["dynamodb"]["SequenceNumber"])

    def _where(self, shard_id: str) -> tuple[int, int]:
        n = int(shard_id[-9:-1])
        return n, 0 if shard_id.endswith("a") else 1

    def handle(self, op: str, body: bytes) -> tuple[int, bytes]:
        self.calls[op] = self.calls.get(op, 0) + 1
        req = orjson.loads(body) if body else {}
        if op == "GetRecords":
            return self._get_records(req)
        if op == "BenchStats":
            return 200, orjson.dumps(
                {
                    "first_get": self.first_get,
                    "last_get": self.last_get,
                    "served": self.served,
                    "calls": self.calls,
                }
            )
        if op == "BenchReset":
            self.reset()
            return 200, b"{}"
        if op == "DescribeTable":
            return 200, orjson.dumps({"Table": _table_desc("source-id", self.stream_on)})
        if op == "DescribeTimeToLive":
            return 200, b'{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}'
        if op == "UpdateTable":
            self.stream_on = True
            return 200, orjson.dumps({"TableDescription": _table_desc("source-id", True)})
        if op == "DescribeKinesisStreamingDestination":
            return 200, orjson.dumps(
                {
                    "TableName": TABLE,
                    "KinesisDataStreamDestinations": [
                        {"StreamArn": KINESIS_ARN, "DestinationStatus": "ACTIVE"}
                    ],
                }
            )
        if op in ("DescribeStream", "ListShards"):
            shards = self._shards()
            start = req.get("ExclusiveStartShardId") or req.get("NextToken")
            i = 0
            if start:
                i = next(j for j, s in enumerate(shards) if s["ShardId"] == start) + 1
            page = shards[i : i + 100]
            more = i + 100 < len(shards)
            if op == "ListShards":
                ans: dict[str, Any] = {"Shards": page}
                if more:
                    ans["NextToken"] = page[-1]["ShardId"]
                return 200, orjson.dumps(ans)
            desc: dict[str, Any] = {
                "StreamArn": STREAM_ARN,
                "StreamStatus": "ENABLED",
                "StreamViewType": "NEW_IMAGE",
                "CreationRequestDateTime": time.time(),
                "TableName": TABLE,
                "Shards": page if "Limit" not in req else page[: req["Limit"]],
            }
            if more and "Limit" not in req:
                desc["LastEvaluatedShardId"] = page[-1]["ShardId"]
            return 200, orjson.dumps({"StreamDescription": desc})
        if op == "GetShardIterator":
            n, g = self._where(req["ShardId"])
            recs = self.gens[n % len(self.gens)][g]
            idx = 0
            after = req.get("SequenceNumber") or req.get("StartingSequenceNumber")
            if req.get("ShardIteratorType") == "AFTER_SEQUENCE_NUMBER":
                idx = sum(1 for r in recs if int(self._seq(r)) <= int(after))
            return 200, orjson.dumps({"ShardIterator": f"{n}/{g}/{idx}"})
        return _error("UnknownOperationException", op)

    def _get_records(self, req: dict[str, Any]) -> tuple[int, bytes]:
        now = time.monotonic()
        if self.first_get is None:
            self.first_get = now
        n, g, idx = (int(x) for x in req["ShardIterator"].split("/"))
        limit = int(req.get("Limit") or 1000)
        body = self.prebuilt.pop((n, g, idx, limit), None) or self._page(n, g, idx, limit)
        count = len(self.gens[n % len(self.gens)][g][idx : idx + limit])
        if count:
            self.served += count
            self.last_get = now
        return 200, body

    def _page(self, n: int, g: int, idx: int, limit: int) -> bytes:
        """Lineage ``n``'s generation ``g`` (0: the parent shard, 1: the child) from record
        ``idx``: a GetRecords answer of up to ``limit`` records."""
        recs = self.gens[n % len(self.gens)][g]
        page = recs[idx : idx + limit]
        nxt = idx + len(page)
        closed = g == 0 and nxt >= len(recs)
        lineage = b"%04d" % n
        if self.kinesis:
            b64 = base64.b64encode
            joined = b",".join(
                h + b64(d.replace(PLACEHOLDER, lineage)) + t
                for h, d, t in self.kparts[n % len(self.gens)][g][idx : idx + limit]
            )
        else:
            joined = b",".join(page).replace(PLACEHOLDER, lineage)
        nxt_it = b"null" if closed else b'"%d/%d/%d"' % (n, g, nxt)
        extra = b',"MillisBehindLatest":0' if self.kinesis else b""
        return b'{"Records":[' + joined + b'],"NextShardIterator":' + nxt_it + extra + b"}"


# --------------------------------------------------------------------------- null target


class NullTarget:
    """Acknowledges every BatchWriteItem from one pre-encoded answer; counts the requests."""

    ANSWER = b'{"UnprocessedItems":{}}'

    def __init__(self) -> None:
        # A thread per connection: without it, two batches counted at once could lose one.
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self.puts = 0
        self.deletes = 0
        self.last_write: float | None = None

    def handle(self, op: str, body: bytes) -> tuple[int, bytes]:
        if op == "BatchWriteItem":
            puts, deletes = body.count(b'"PutRequest"'), body.count(b'"DeleteRequest"')
            with self._lock:
                self.batches += 1
                self.puts += puts
                self.deletes += deletes
                self.last_write = time.monotonic()
            return 200, self.ANSWER
        if op == "DescribeTable":
            return 200, orjson.dumps({"Table": _table_desc("target-id", False, "111111111111")})
        if op == "Scan":
            return 200, b'{"Items":[],"Count":0,"ScannedCount":0}'
        if op == "BenchStats":
            return 200, orjson.dumps(
                {
                    "batches": self.batches,
                    "puts": self.puts,
                    "deletes": self.deletes,
                    "last_write": self.last_write,
                }
            )
        if op == "BenchReset":
            self.reset()
            return 200, b"{}"
        return _error("UnknownOperationException", op)


# --------------------------------------------------------------------------- driver


class Proc:
    """A scripted endpoint in its own process: ``script`` (this file unless named) run with
    ``args`` and ``--port-file``; ready once it has written the port it listens on."""

    def __init__(self, args: list[str], work: Path, name: str, script: str = __file__) -> None:
        port_file = work / f"{name}.port"
        port_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, script, *args, "--port-file", str(port_file)],
            env=env,
            stdout=open(work / f"{name}.log", "wb"),  # noqa: SIM115  # lives with the server
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {work / (name + '.log')}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, op: str) -> dict[str, Any]:
        import urllib.request

        r = urllib.request.Request(
            self.url, data=b"{}", headers={"X-Amz-Target": f"Bench.{op}"}, method="POST"
        )
        with urllib.request.urlopen(r, timeout=10) as f:
            return dict(orjson.loads(f.read()))

    def cpu(self) -> float:
        return proc_stat(self.proc.pid)[1]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def write_config(
    path: Path, source_port: int, target_port: int, target_table: str, kinesis: bool
) -> None:
    def side(port: int, table: str) -> dict[str, Any]:
        return {
            "type": "dynamodb",
            "table": table,
            "region": "us-east-1",
            "endpoint": {"host": "http://127.0.0.1", "port": port},
            "credentials": {"accessKey": "bench", "secretKey": "bench"},
        }

    stream: Any = True
    if kinesis:
        stream = {"type": "kinesis", "streamArn": KINESIS_ARN}
    cfg = {
        "source": {
            **side(source_port, TABLE),
            **(
                {"streamingPollingPoolSize": int(os.environ["BENCH_POOL"])}
                if os.environ.get("BENCH_POOL")
                else {}
            ),
        },
        "target": {
            **side(target_port, target_table),
            "streamChanges": stream,
            "skipInitialSnapshotTransfer": True,
            # The bench measures the migrator, not a write budget.
            "writeThroughput": 10_000_000,
            "throughputWritePercent": 1.0,
        },
        "savepoints": {
            "path": str(path.parent / "savepoints" / target_table),
            "intervalSeconds": 5,
        },
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def child_lib(config: str, profile: str | None) -> None:
    """In the child: the library run, measured around migrate() only."""
    from alternator_migrator.config import load

    try:
        from alternator_migrator.pipeline.migrate import migrate
    except ImportError:  # an older tree (``--src``), from before the layout in packages
        from alternator_migrator.migrate import migrate

    cfg = load(Path(config))
    gc_time = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(on_gc)
    prof = None
    thread_profs: list[Any] = []
    if profile:
        import cProfile

        prof = cProfile.Profile(time.thread_time)  # CPU, not waits for the GIL or I/O

        def in_thread(*_: Any) -> None:  # every thread the run starts gets its own profile
            p = cProfile.Profile(time.thread_time)
            thread_profs.append(p)
            p.enable()

        threading.setprofile(in_thread)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    with open(os.devnull, "w") as devnull:
        res = migrate(cfg, stop_when_caught_up=0.0, out=devnull, show_progress=False)
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    if prof and profile:
        import pstats

        st = pstats.Stats(prof)
        for p in thread_profs:
            with contextlib.suppress(TypeError):  # a thread that never ran any code
                st.add(p)
        st.dump_stats(profile)
    stats = res.replay
    print_result(r0, r1, wall, stats.records if stats else 0, gc_time[0])


def print_result(r0: Any, r1: Any, wall: float, records: int, gc_s: float) -> None:
    """A child's measurements, between two getrusage() readings, for ``run_one``."""
    print(
        "RESULT "
        + json.dumps(
            {
                "wall_s": wall,
                "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                "sys_s": r1.ru_stime - r0.ru_stime,
                "ctx_switches": (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw),
                "minor_faults": r1.ru_minflt - r0.ru_minflt,
                "maxrss_mib": r1.ru_maxrss / 1024,
                "records": records,
                "gc_s": gc_s,
                "gc_collections": [s["collections"] for s in gc.get_stats()],
                "page_decoder": "msgspec" if "msgspec" in sys.modules else "orjson",
            }
        ),
        flush=True,
    )


def child_read(config: str) -> None:
    """In the child: every shard read to its end with the migrator's own client, shard reader
    and page decoder, one after the other, and nothing written. The floor under the replay's
    cost per record: what reading and decoding alone take."""
    from alternator_migrator.aws.client import kinesis_client, source_client
    from alternator_migrator.changes.alternator import change_source
    from alternator_migrator.changes.kinesis import KinesisSource
    from alternator_migrator.changes.records import Decoder, page_decoder
    from alternator_migrator.config import load
    from alternator_migrator.gcpause import young_collections_rarer
    from alternator_migrator.heap import keep_freed_pages

    cfg = load(Path(config))
    keep_freed_pages()  # as migrate() does, and the replay's garbage-collector setting below
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    n = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(young_collections_rarer())
        client = stack.enter_context(source_client(cfg.source))
        if cfg.target.kinesis is not None:
            kinesis = stack.enter_context(kinesis_client(cfg.source))
            changes: Any = KinesisSource(kinesis, KINESIS_ARN, cfg.source.table)
        else:
            changes = change_source(cfg, client, STREAM_ARN)
        decoder = Decoder()
        pages = page_decoder(decoder)
        for shard in changes.list_shards():
            reader = changes.reader(shard, None)
            reader.pages = pages
            reader.min_interval = 0.0  # nothing else reads this shard
            while not (reader.closed or reader.drained):
                n += len(decoder.changes(reader.read(), shard.shard_id))
    wall = time.perf_counter() - t0
    print_result(r0, resource.getrusage(resource.RUSAGE_SELF), wall, n, 0.0)


def proc_stat(pid: int) -> tuple[int, float]:
    """A process's parent and the CPU seconds (user + system) it has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[1]), (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _all_cores() -> list[int]:
    """Clock ticks of every core since boot, by state (/proc/stat's first line): user, nice,
    system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot."""
    vals = _all_cores()
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals) - idle) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of every core since boot. Steal is time the hypervisor ran
    another guest on our virtual CPUs: a sign of a busy host. Its absence does not prove a
    quiet one (neighbours on the sibling hyperthreads and the shared cache do not show as
    steal)."""
    vals = _all_cores()
    return (vals[7] if len(vals) > 7 else 0), sum(vals)


class WorkerCpu:
    """CPU of the Spark Python processes (pyspark's daemon and the workers it forks) that
    descend from ``root``, read from /proc every 50 ms while the run lasts: the executors'
    own Python cost, apart from the JVM's. A process's last 50 ms before it exits can be
    missed; the workers live until the JVM ends, after the last write."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _descends(self, pid: int) -> bool:
        for _ in range(16):
            if pid == self.root:
                return True
            if pid <= 1:
                return False
            pid = proc_stat(pid)[0]
        return False

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"pyspark.daemon" not in f.read():
                            continue
                    if pid in self.seen or self._descends(pid):
                        self.seen[pid] = max(self.seen.get(pid, 0.0), proc_stat(pid)[1])
                except OSError:  # gone meanwhile
                    continue

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


def run_one(
    mode: str,
    target_kind: str,
    streams: Proc,
    null: Proc | None,
    work: Path,
    total: int,
    kinesis: bool,
    profile: bool,
    run_no: int,
    src: Path,
) -> dict[str, Any]:
    from alternator_migrator.localservers import start_dynalite

    dyn = None
    streams.call("BenchReset")
    if target_kind == "null":
        assert null is not None
        null.call("BenchReset")
        target_port = null.port
    else:
        dyn = start_dynalite(work / "logs")
        target_port = dyn.port
    table = f"wide{run_no}"
    cfg = work / f"{table}.yaml"
    write_config(cfg, streams.port, target_port, table, kinesis)
    # The code under test first; the caller's path after it (msgspec may be installed there).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    prof_file = work / f"{table}.prof"
    if mode == "lib":
        cmd = [sys.executable, __file__, "child", "--config", str(cfg)]
        if profile:
            cmd += ["--profile", str(prof_file)]
    elif mode == "read":
        cmd = [sys.executable, __file__, "read", "--config", str(cfg)]
    else:
        cmd = [
            sys.executable, "-m", "alternator_migrator", "migrate", "--config", str(cfg),
            "--stop-when-caught-up", "0",
        ]  # fmt: skip
        if mode.startswith("spark"):
            # spark:N: the Spark engine on local[N]. wait4 then counts the JVM and its Python
            # workers too (the JVM is our child and reaps them): the whole engine's cost.
            cmd += ["--engine", "spark", "--master", f"local[{mode.partition(':')[2] or 2}]"]
    s_cpu0 = streams.cpu()
    n_cpu0 = null.cpu() if null is not None else 0.0
    busy0 = machine_busy()
    steal0, ticks0 = machine_ticks()
    t0 = time.monotonic()
    with open(work / f"{table}.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log)
        workers = WorkerCpu(proc.pid) if mode.startswith("spark") else None
        out_b = proc.stdout.read() if proc.stdout else b""
        _, status, ru = os.wait4(proc.pid, 0)
        worker_cpu = workers.stop() if workers is not None else None
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    steal1, ticks1 = machine_ticks()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed ({proc.returncode}); see {work / (table + '.log')}")
    s = streams.call("BenchStats")
    r: dict[str, Any] = {
        "mode": mode,
        "target": target_kind,
        "records": s["served"],
        "source_cpu_s": streams.cpu() - s_cpu0,
        # The share of the machine's CPU time the hypervisor took while the run lasted.
        "steal": (steal1 - steal0) / max(1, ticks1 - ticks0),
    }
    if s["served"] != total:
        raise RuntimeError(f"served {s['served']} records, expected {total}")
    inner = None
    for line in out_b.decode().splitlines():
        if line.startswith("RESULT "):
            inner = json.loads(line[7:])
    if inner is not None:  # the library run measured itself
        r.update(
            wall_s=inner["wall_s"],
            cpu_s=inner["cpu_s"],
            sys_s=inner.get("sys_s"),
            ctx_switches=inner.get("ctx_switches"),
            minor_faults=inner.get("minor_faults"),
            maxrss_mib=inner["maxrss_mib"],
            gc_s=inner["gc_s"],
            gc_collections=inner["gc_collections"],
            page_decoder=inner["page_decoder"],
        )
        if inner["records"] != total:
            raise RuntimeError(f"applied {inner['records']} records, expected {total}")
    else:  # the CLI: the whole process, start-up included
        r.update(
            wall_s=wall,
            cpu_s=ru.ru_utime + ru.ru_stime,
            maxrss_mib=ru.ru_maxrss / 1024,
        )
        if mode.startswith("spark"):
            # The JVM and its Python workers are not reaped by our child, so wait4 sees the
            # driver alone: count the whole machine's busy CPU over the run instead, less the
            # scripted servers' (on an otherwise idle machine, that is the engine's).
            servers = streams.cpu() - s_cpu0 + (null.cpu() - n_cpu0 if null is not None else 0.0)
            r["driver_cpu_s"] = r["cpu_s"]
            r["cpu_s"] = max(0.0, machine_busy() - busy0 - servers)
            r["cpu_from"] = "machine"
            r["worker_python_cpu_s"] = worker_cpu
            r["worker_processes"] = len(workers.seen) if workers is not None else 0
    if null is not None and target_kind == "null":
        ns = null.call("BenchStats")
        r["writes"] = ns["puts"] + ns["deletes"]
        r["batches"] = ns["batches"]
        if s["first_get"] is not None and ns["last_write"] is not None:
            r["stream_s"] = ns["last_write"] - s["first_get"]
    else:
        r["stream_s"] = r["wall_s"]
    r["records_per_s"] = total / r.get("stream_s", r["wall_s"])
    r["us_per_record"] = r["cpu_s"] / total * 1e6
    if dyn is not None:
        try:
            r["target_items"] = count_items(dyn.url, table)
        finally:
            dyn.stop()
    if profile and mode == "lib" and prof_file.exists():
        r["profile"] = str(prof_file)
    return r


def count_items(url: str, table: str) -> int:
    from alternator_migrator.aws.client import CredentialSource, DynamoClient
    from alternator_migrator.config.model import Credentials

    with DynamoClient(url, "us-east-1", CredentialSource(Credentials("a", "b"), None, None)) as c:
        n, body = 0, {"TableName": table, "Select": "COUNT"}
        while True:
            r = c.call("Scan", body)
            n += int(r.get("Count", 0))
            if not r.get("LastEvaluatedKey"):
                return n
            body["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def expected_items(shards: int, records: int, keys: int) -> int:
    """Items the target holds at the end: each lineage's keys still alive."""
    live = [len(lineage_records(t, records, keys, 0.0)[1]) for t in range(min(shards, TEMPLATES))]
    return sum(live[n % len(live)] for n in range(shards))


def show_profile(path: str, top: int) -> str:
    import io
    import pstats

    buf = io.StringIO()
    st = pstats.Stats(path, stream=buf)
    st.sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    return "\n".join(lines[start : start + top + 1])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "role", nargs="?", default="bench", choices=["bench", "streams", "null", "child", "read"]
    )
    ap.add_argument(
        "--shards", type=int, default=64, help="lineages: each a closed parent and an open child"
    )
    ap.add_argument(
        "--records", type=int, default=3000, help="records per lineage (half in each shard)"
    )
    ap.add_argument("--keys", type=int, default=2000, help="distinct keys per lineage")
    ap.add_argument(
        "--modes",
        default="lib,cli",
        help="lib, cli, spark:N (the CLI on Spark local[N]), read (read and decode only)",
    )
    ap.add_argument("--targets", default="null,dynalite")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--kinesis", action="store_true", help="serve a Kinesis stream instead")
    ap.add_argument("--profile", nargs="?", const="", default=None)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--check", action="store_true", help="fail above the floors below")
    # Regression floors, not the goal (10 us): set so that a loaded 2-core machine passes.
    ap.add_argument("--max-us", type=float, default=40.0)
    ap.add_argument("--max-rss-mib", type=float, default=300.0)
    ap.add_argument("--min-rate", type=float, default=15_000.0, help="records/s")
    ap.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="the migrator's code the runs use (e.g. an export of an older commit's src/)",
    )
    ap.add_argument("--config")
    ap.add_argument("--port-file", type=Path)
    a = ap.parse_args()
    if "read" in a.modes.split(",") and a.targets != "null":
        ap.error(
            "--modes read writes nothing, so it has nothing to check on dynalite: --targets null"
        )

    if a.role == "streams":
        srv = StreamsServer(a.shards, a.records, a.keys, a.kinesis)
        _serve(a.port_file, srv.handle)
        return 0
    if a.role == "null":
        _serve(a.port_file, NullTarget().handle)
        return 0
    if a.role == "child":
        child_lib(a.config, a.profile or None)
        return 0
    if a.role == "read":
        child_read(a.config)
        return 0

    work = Path(tempfile.mkdtemp(prefix="replay-wide-"))
    (work / "logs").mkdir()
    total = a.shards * a.records
    common = ["--shards", str(a.shards), "--records", str(a.records), "--keys", str(a.keys)]
    streams = Proc(["streams", *common, *(["--kinesis"] if a.kinesis else [])], work, "streams")
    null = Proc(["null"], work, "null") if "null" in a.targets else None
    results = []
    failed: list[str] = []
    want_items = expected_items(a.shards, a.records, a.keys) if "dynalite" in a.targets else 0
    try:
        print(
            f"replay_wide: {a.shards} lineages x {a.records} records (~1 KB images) = {total:,} "
            f"records, {2 * a.shards} shards, {'Kinesis' if a.kinesis else 'DynamoDB Streams'}; "
            f"code {a.src}; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        run_no = 0
        for _ in range(a.repeat):
            for target in a.targets.split(","):
                for mode in a.modes.split(","):
                    run_no += 1
                    r = run_one(
                        mode, target, streams, null, work, total, a.kinesis,
                        a.profile is not None, run_no, a.src.resolve(),
                    )  # fmt: skip
                    r["load"] = os.getloadavg()[0]
                    results.append(r)
                    extra = ""
                    if "target_items" in r:
                        extra = f"  target items {r['target_items']:,} (expected {want_items:,})"
                        if r["target_items"] != want_items:
                            failed.append(f"{mode} -> dynalite holds {r['target_items']} items")
                    if "gc_s" in r:
                        extra += f"  gc {r['gc_s']:.2f}s {r['gc_collections']}"
                        extra += f"  pages: {r['page_decoder']}"
                    if r.get("worker_python_cpu_s") is not None:
                        extra += (
                            f"  Spark Python workers {r['worker_python_cpu_s']:.2f}s CPU "
                            f"({r['worker_processes']} processes, "
                            f"{r['worker_python_cpu_s'] / total * 1e6:.1f} us/record)"
                        )
                    if r.get("sys_s") is not None:
                        extra += f"  sys {r['sys_s']:.2f}s  switches {r['ctx_switches']:,}"
                        if r.get("minor_faults") is not None:
                            extra += f"  faults {r['minor_faults']:,}"
                    print(
                        f"{mode:>4} -> {target:<8} {r['records_per_s']:>9,.0f} records/s  "
                        f"{r['us_per_record']:6.1f} us/record  RSS {r['maxrss_mib']:6.0f} MiB  "
                        f"source cpu {r['source_cpu_s']:.1f}s  load {r['load']:.2f}  "
                        f"steal {r['steal']:.0%}{extra}",
                        flush=True,
                    )
                    if "profile" in r:
                        print(show_profile(r["profile"], a.top), flush=True)
                    if a.check and mode == "lib" and target == "null":
                        if r["us_per_record"] > a.max_us:
                            failed.append(f"CPU {r['us_per_record']:.1f} us/record > {a.max_us}")
                        if r["maxrss_mib"] > a.max_rss_mib:
                            failed.append(f"RSS {r['maxrss_mib']:.0f} MiB > {a.max_rss_mib}")
                        if r["records_per_s"] < a.min_rate:
                            failed.append(
                                f"{r['records_per_s']:,.0f} records/s < {a.min_rate:,.0f}"
                            )
    finally:
        streams.stop()
        if null is not None:
            null.stop()
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    for f in failed:
        print("FLOOR BROKEN:", f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
