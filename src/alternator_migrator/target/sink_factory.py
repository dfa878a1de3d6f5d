"""Building a Sink from the config: the one place migrate, validate and Spark tasks get theirs,
so none of them imports the orchestrator for it."""

from __future__ import annotations

from typing import Any

from ..aws.client import DynamoClient
from ..aws.throttle import RateLimiter, SharedCap, budget, table_capacity
from ..config import Config
from .schema import key_names
from .sink import Sink


def write_budget(cfg: Config, tgt: dict[str, Any]) -> float | None:
    """The target's write budget in WCU/s (None: unlimited)."""
    t = cfg.target
    wcu = table_capacity(tgt, "WriteCapacityUnits", t.type)
    return budget(t.write_throughput, t.throughput_write_percent, wcu)


def build_sink(cfg: Config, target: DynamoClient, keys: list[str], limiter: RateLimiter) -> Sink:
    """A sink from plain inputs (the Spark engine builds one per executor task)."""
    t = cfg.target
    return Sink(
        target,
        t.table,
        keys,
        max_batch=t.max_items_per_batch,
        limiter=limiter,
        consumed_capacity=not t.remove_consumed_capacity,
        renames=cfg.rename_map(),
    )


def make_sink(
    cfg: Config,
    target: DynamoClient,
    src: dict[str, Any],
    tgt: dict[str, Any],
    cap: RateLimiter | None = None,
) -> Sink:
    """The sink of one table; ``cap``: a budget shared with other tables (paid as well)."""
    own = RateLimiter(write_budget(cfg, tgt))
    return build_sink(cfg, target, key_names(src), own if cap is None else SharedCap(own, cap))
