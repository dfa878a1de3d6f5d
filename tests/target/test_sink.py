"""The sink's first attempts from one thread (``Sink.write_first``) and what they leave
(``Sink.redo``), against a scripted target that answers each batch by the keys it holds."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from alternator_migrator.aws.client import CredentialSource, DynamoClient, RetryPolicy
from alternator_migrator.config import Credentials
from alternator_migrator.metrics import METRICS
from alternator_migrator.target.sink import Sink

from ..netfakes import ScriptedServer, http_response

CREDS = CredentialSource(Credentials(access_key="AKID", secret_key="secret"), None, None)


class Target:
    """BatchWriteItem / PutItem by key: ``unprocessed-*`` keys are left unprocessed once,
    a batch holding ``flaky-*`` answers 500 once, a batch holding ``bad-*`` is refused (400)
    and ``bad-refused`` is refused on its own too. Everything else is stored."""

    def __init__(self) -> None:
        self.stored: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()  # (op, first key) per request
        self.lock = threading.Lock()

    def __call__(self, i: int, head: bytes, body: bytes) -> bytes | None:
        op = next(
            line.split(b".")[-1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"x-amz-target")
        )
        req = orjson.loads(body)
        with self.lock:
            if op == "PutItem":
                key = req["Item"]["pk"]["S"]
                self.seen[f"PutItem {key}"] += 1
                if key == "bad-refused":
                    return _error(400, "ValidationException", "Item size has exceeded the limit")
                self.stored[key] += 1
                return http_response(b"{}")
            (elements,) = req["RequestItems"].values()
            keys = [e["PutRequest"]["Item"]["pk"]["S"] for e in elements]
            first = self.seen[f"BatchWriteItem {keys[0]}"] == 0
            self.seen[f"BatchWriteItem {keys[0]}"] += 1
            if any(k.startswith("bad-") for k in keys):
                return _error(
                    400, "ValidationException", "One or more parameter values were invalid"
                )
            if first and any(k.startswith("flaky-") for k in keys):
                return _error(500, "InternalServerError", "try again")
            left = [e for e, k in zip(elements, keys, strict=True) if first and "unprocessed" in k]
            for e, k in zip(elements, keys, strict=True):
                if e not in left:
                    self.stored[k] += 1
            return http_response(orjson.dumps({"UnprocessedItems": {"t": left} if left else {}}))


def _error(status: int, code: str, message: str) -> bytes:
    body = orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    return http_response(body, status=status)


@pytest.fixture
def target() -> Iterator[tuple[Target, ScriptedServer]]:
    t = Target()
    s = ScriptedServer(t).start()
    yield t, s
    s.stop()


def _sink(url: str) -> Sink:
    client = DynamoClient(url, "us-east-1", CREDS, retry=RetryPolicy(base=0.001, cap=0.01))
    return Sink(client, "t", ["pk"], max_batch=2)


def _puts(sink: Sink, *keys: str) -> list[bytes]:
    return [sink.put_raw(orjson.dumps({"pk": {"S": k}, "v": {"N": "1"}})) for k in keys]


def _first_key(pending: Any) -> str:
    element = pending[0]  # an encoded request as sent, or an unprocessed one as answered
    req = orjson.loads(element) if isinstance(element, bytes) else element
    return str(req["PutRequest"]["Item"]["pk"]["S"])


def test_first_attempts_leave_each_batch_failure_for_redo(
    target: tuple[Target, ScriptedServer],
) -> None:
    t, s = target
    sink = _sink(s.url)
    assert sink.multiplexed
    chunks = sink.split(
        _puts(sink, "ok-1", "ok-2", "flaky-1", "ok-3", "unprocessed-1", "ok-4", "bad-1", "ok-5")
    )
    before = METRICS.counter("items_written_total")
    left = sink.write_first(chunks, in_flight=3)
    # ok-1/ok-2 written; ok-4 written beside its unprocessed partner; the rest left.
    assert +t.stored == Counter({"ok-1": 1, "ok-2": 1, "ok-4": 1})
    assert METRICS.counter("items_written_total") - before == 3
    by_first = {_first_key(r.pending): r for r in left}
    assert sorted(by_first) == ["bad-1", "flaky-1", "unprocessed-1"]
    assert by_first["unprocessed-1"].error is None and len(by_first["unprocessed-1"].pending) == 1
    flaky, bad = by_first["flaky-1"].error, by_first["bad-1"].error
    assert flaky is not None and flaky.retryable and flaky.code == "InternalServerError"
    assert bad is not None and not bad.retryable and bad.code == "ValidationException"

    retries = METRICS.counter("retries_total", cause="server_error", endpoint="dynamodb")
    for r in left:
        sink.redo(r)
    # Each item stored once; the refused batch went item by item.
    assert +t.stored == Counter(
        {
            k: 1
            for k in ("ok-1", "ok-2", "ok-3", "ok-4", "ok-5", "flaky-1", "unprocessed-1", "bad-1")
        }
    )
    assert t.seen["PutItem bad-1"] == 1 and t.seen["PutItem ok-5"] == 1
    assert t.seen["BatchWriteItem flaky-1"] == 2  # the failed first attempt, then the redo
    # The redo's pause after the 500 is a counted retry, as in ``write``.
    assert METRICS.counter("retries_total", cause="server_error", endpoint="dynamodb") > retries


def test_a_refused_item_found_by_redo_is_named(target: tuple[Target, ScriptedServer]) -> None:
    t, s = target
    sink = _sink(s.url)
    (left,) = sink.write_first(sink.split(_puts(sink, "ok-1", "bad-refused")), in_flight=2)
    with pytest.raises(Exception, match=r"refused the put of the item with key .*bad-refused"):
        sink.redo(left)
    assert t.stored["ok-1"] == 1 and t.stored["bad-refused"] == 0


def test_write_first_stays_within_the_write_budget(target: tuple[Target, ScriptedServer]) -> None:
    t, s = target
    sink = _sink(s.url)
    charged: list[float] = []
    settled: list[float] = []

    class Budget:
        def acquire(self, units: float, stop: Any) -> None:
            charged.append(units)

        def settle(self, units: float) -> None:
            settled.append(units)

    sink.limiter = Budget()  # type: ignore[assignment]
    left = sink.write_first(sink.split(_puts(sink, "ok-1", "ok-2", "flaky-1", "ok-3")), 4)
    assert len(charged) == 2 and all(u >= 2 for u in charged)  # one charge per batch sent
    assert len(left) == 1 and t.stored == Counter({"ok-1": 1, "ok-2": 1})
    # The failed batch's charge is given back: it is charged again when redone.
    assert settled.count(-charged[1]) == 1


def test_write_distinct_writes_every_batch_once_whatever_its_first_attempt_met(
    target: tuple[Target, ScriptedServer],
) -> None:
    t, s = target
    sink = _sink(s.url)
    # Batches of two: flaky-1 first in its batch, which the target fails once.
    keys = [f"ok-{i}" for i in range(8)] + ["flaky-1", "ok-8", "unprocessed-1", "unprocessed-2"]
    assert sink.write_distinct(_puts(sink, *keys), in_flight=4) == len(keys)
    assert t.stored == Counter(dict.fromkeys(keys, 1))
    assert t.seen["BatchWriteItem flaky-1"] == 2
