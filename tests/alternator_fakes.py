"""A scripted Alternator Streams endpoint: the fake DynamoDB Streams (``FakeStreams``) with what
ScyllaDB does differently (its docs/alternator/compatibility.md and streams implementation):

- shards come in generations: a topology change closes every shard of the current one and
  opens a whole new set sharing one StartingSequenceNumber; each new shard names one old
  shard as parent, and a key's shard changes with the generation (so its earlier changes may
  sit in an old shard that is not the named parent);
- a new generation may be listed only a while after it took writes (``reveal``);
- a record is shown by GetRecords only ``delay`` seconds after the write (the
  `alternator_streams_time_window_s` window);
- every write is a MODIFY (INSERT not told apart), a PutItem may be a REMOVE then a MODIFY,
  a TTL expiration is a REMOVE with a `Service` userIdentity; eventSource is
  `scylladb:alternator`.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from .fakes import FakeShard, FakeStreams, _Fault, seq_str


class AlternatorStreams(FakeStreams):
    def __init__(self, table: str = "alt-table", *, delay: float = 0.0, **kw: Any) -> None:
        super().__init__(table, **kw)
        self.delay = delay
        self.generation: list[str] = []  # shard ids of the current generation
        self.hidden: dict[str, FakeShard] = {}  # opened but not listed yet
        self._gen_count = 0

    # ------------------------------------------------------------------ scripting
    def new_generation(self, n: int, *, hidden: bool = False) -> list[str]:
        """Close every open shard and open ``n`` new ones (one start for all of them)."""
        with self._lock:
            old = list(self.generation)
            for sid in old:
                s = self._shard_obj(sid)
                s.end = int(s.records[-1]["dynamodb"]["SequenceNumber"]) if s.records else s.start
            start = next(self._seq)
            self._gen_count += 1
            ids = []
            for i in range(n):
                sid = f"H{self._gen_count:04x}:{i:032x}"
                parent = old[i % len(old)] if old else None
                shard = FakeShard(sid, parent, start)
                (self.hidden if hidden else self.shards)[sid] = shard
                ids.append(sid)
            self.generation = ids
            return ids

    def reveal(self) -> None:
        with self._lock:
            self.shards.update(self.hidden)
            self.hidden.clear()

    def shard_of(self, pk: str) -> str:
        return self.generation[zlib.crc32(pk.encode()) % len(self.generation)]

    def _shard_obj(self, sid: str) -> FakeShard:
        return self.shards.get(sid) or self.hidden[sid]

    def write(
        self, pk: str, value: Any = None, *, ttl: bool = False, as_remove_modify: bool = False
    ) -> None:
        """A write as Alternator streams it: puts are MODIFY, deletes REMOVE."""
        with self._lock:
            if as_remove_modify:
                self._append(pk, None)
            self._append(pk, value, ttl=ttl)

    def _append(self, pk: str, value: Any, *, ttl: bool = False) -> None:
        sid = self.shard_of(pk)
        s = self._shard_obj(sid)
        n = next(self._seq)
        keys = {self.hash_key: {"S": pk}}
        d: dict[str, Any] = {
            "ApproximateCreationDateTime": int(time.time()),
            "Keys": keys,
            "SequenceNumber": seq_str(n),
            "StreamViewType": "NEW_IMAGE",
        }
        rec: dict[str, Any] = {
            "awsRegion": "datacenter1",
            "eventID": f"E{sid}:{n}",
            "eventSource": "scylladb:alternator",
            "eventVersion": "1.1",
            "eventName": "REMOVE" if value is None else "MODIFY",
            "dynamodb": d,
            "_visible_at": time.monotonic() + self.delay,
        }
        if value is not None:
            v = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
            d["NewImage"] = {**keys, "v": v}
        if ttl:
            rec["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
        s.records.append(rec)

    # ------------------------------------------------------------------ protocol
    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body["ShardIterator"]
        found = self._iterators.get(token)
        if found is None:
            raise _Fault("ValidationException", "invalid ShardIterator")
        sid, after, _ = found
        s = self._shard(sid)
        now = time.monotonic()
        pending = [r for r in s.records if int(r["dynamodb"]["SequenceNumber"]) > after]
        visible = []
        for r in pending:  # records appear in order, each once its window has passed
            if r["_visible_at"] > now:
                break
            visible.append(r)
        out = visible[: min(int(body.get("Limit") or 1000), self.records_per_call)]
        resp: dict[str, Any] = {
            "Records": [{k: v for k, v in r.items() if k != "_visible_at"} for r in out]
        }
        last = int(out[-1]["dynamodb"]["SequenceNumber"]) if out else after
        if s.end is None or len(pending) > len(out):
            resp["NextShardIterator"] = self._iterator(sid, last)
        return resp
