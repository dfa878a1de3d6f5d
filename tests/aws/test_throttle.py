"""Budgets: a token bucket that holds even when the server reports no consumed capacity."""

from __future__ import annotations

from typing import Any

import pytest

from alternator_migrator.aws import throttle
from alternator_migrator.aws.throttle import RateLimiter, budget, charge_read


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept += s
        self.now += s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(throttle.time, "monotonic", c.monotonic)
    monkeypatch.setattr(throttle.time, "sleep", c.sleep)
    return c


def test_budget_defaults_to_half_of_provisioned() -> None:
    assert budget(None, None, 1000) == 500
    assert budget(400, 0.8, 1000) == 320
    assert budget(None, 1.5, 100) == 150
    assert budget(None, None, None) is None


def test_rate_is_held_over_time(clock: FakeClock) -> None:
    lim = RateLimiter(100.0)  # units per second, one second of burst
    for _ in range(50):
        lim.acquire(25)  # 1,250 units in all
    # The first 100 units ride the burst; the other 1,150 take 11.5 s at 100/s.
    assert clock.slept == pytest.approx(11.5)


def test_settle_refunds_and_charges(clock: FakeClock) -> None:
    lim = RateLimiter(10.0)
    lim.acquire(10)  # the burst
    lim.settle(-5)  # the server said it cost less
    lim.acquire(5)
    assert clock.slept == pytest.approx(0.0)
    lim.settle(20)  # ... or more: the debt is paid by the next caller
    lim.acquire(1)
    assert clock.slept == pytest.approx(2.1)


def test_unlimited_never_waits(clock: FakeClock) -> None:
    lim = RateLimiter(None)
    lim.acquire(1e9)
    assert clock.slept == 0.0


def test_reads_without_consumed_capacity_are_charged_by_size(clock: FakeClock) -> None:
    """Alternator returns no ConsumedCapacity: the bytes read decide what a page costs."""
    lim = RateLimiter(1.0)
    items: list[dict[str, Any]] = [{"pk": {"S": "x" * 4000}} for _ in range(40)]  # ~160 KB
    charge_read(lim, {"Items": items}, items, consistent=False)
    # ~160 KB / 4 KB x 0.5 = ~20 units at 1 unit/s, minus the 1-unit burst.
    assert 18 < clock.slept < 21
    before = clock.slept
    charge_read(lim, {"ConsumedCapacity": {"CapacityUnits": 3.0}}, items, consistent=False)
    assert clock.slept - before == pytest.approx(3.0)  # the server's figure wins when given


class _NoCapacityTarget:
    """Answers BatchWriteItem like Alternator: everything written, no ConsumedCapacity."""

    retry = None

    label, url, stop = "target", "http://fake", None  # what the sink names in errors
    affinity = None  # one endpoint: no per-node split

    def __init__(self) -> None:
        self.items = 0

    def call_raw(self, op: str, payload: bytes, **kw: Any) -> dict[str, Any]:
        import orjson

        body = orjson.loads(payload)
        assert "ReturnConsumedCapacity" not in body  # removeConsumedCapacity honoured
        self.items += sum(len(v) for v in body["RequestItems"].values())
        return {"UnprocessedItems": {}}


def test_writes_are_limited_without_consumed_capacity(clock: FakeClock) -> None:
    from alternator_migrator.aws.client import RetryPolicy
    from alternator_migrator.target.sink import Sink

    target = _NoCapacityTarget()
    sink = Sink(
        target,  # type: ignore[arg-type]
        "t",
        ["pk"],
        max_batch=25,
        limiter=RateLimiter(50.0),
        consumed_capacity=False,
        retry=RetryPolicy(),
    )
    sink.put_items([{"pk": {"S": f"k{i}"}, "v": {"S": "x" * 1000}} for i in range(200)])
    assert target.items == 200
    # ~1 WCU per item of ~1 KB: 200 units at 50/s, 50 of them from the burst: ~3 s.
    assert 2.5 < clock.slept < 4.5


def test_table_capacity_defaults() -> None:
    from alternator_migrator.aws.throttle import table_capacity

    provisioned = {"ProvisionedThroughput": {"ReadCapacityUnits": 50, "WriteCapacityUnits": 7}}
    on_demand = {"ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}}
    assert table_capacity(provisioned, "WriteCapacityUnits", "dynamodb") == 7
    assert table_capacity(on_demand, "WriteCapacityUnits", "dynamodb") == 40000
    # Alternator accepts and ignores provisioning: a table created with 7 WCU is not slow.
    assert table_capacity(provisioned, "WriteCapacityUnits", "alternator") == 40000


def test_shared_cap_holds_the_sum_of_several_tables(clock: FakeClock) -> None:
    # Two tables at 100 units/s each under a 100 units/s cap: together they get 100/s, not 200.
    from alternator_migrator.aws.throttle import SharedCap

    cap = RateLimiter(100.0)
    a, b = SharedCap(RateLimiter(100.0), cap), SharedCap(RateLimiter(100.0), cap)
    for _ in range(20):
        a.acquire(10)
        b.acquire(10)
    # 400 units; the cap's 100-unit burst is free: 300 units at 100/s.
    assert clock.slept == pytest.approx(3.0, abs=0.2)
    assert not a.unlimited and SharedCap(RateLimiter(None), RateLimiter(None)).unlimited
