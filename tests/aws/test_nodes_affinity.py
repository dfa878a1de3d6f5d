"""Key affinity without servers: rendezvous hashing of partition keys over node names, and the
clock-skew guard that holds a key which moved to another node."""

from __future__ import annotations

import math
from collections import Counter

import orjson

from alternator_migrator.aws.nodes import KeyAffinity

NODES = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
KEYS = [orjson.dumps({"S": f"user-{i:06d}"}) for i in range(6000)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def affinity(nodes: list[str], guard: float = 1.0, clock: Clock | None = None) -> KeyAffinity[str]:
    a: KeyAffinity[str] = KeyAffinity(guard, clock=clock or Clock())
    a.set_nodes(nodes)
    return a


def owners(a: KeyAffinity[str]) -> list[str]:
    return [a.owner(k) for k in KEYS]


def test_a_key_has_one_node_whatever_the_order_of_the_list() -> None:
    first = owners(affinity(NODES))
    assert first == owners(affinity(list(reversed(NODES))))
    assert first == owners(affinity(NODES))


def test_keys_spread_over_every_node() -> None:
    share = Counter(owners(affinity(NODES)))
    print(f"\nshares: { {n: round(c / len(KEYS), 3) for n, c in share.items()} }")
    assert set(share) == set(NODES)
    assert all(c / len(KEYS) >= 0.15 for c in share.values()), share
    numbers = [orjson.dumps({"N": str(i)}) for i in range(3000)]
    a = affinity(NODES)
    by_number = Counter(a.owner(k) for k in numbers)
    assert all(c / len(numbers) >= 0.15 for c in by_number.values()), by_number


def test_a_node_leaving_moves_only_its_keys() -> None:
    before = owners(affinity(NODES))
    after = owners(affinity(NODES[:2]))
    moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert all(before[i] == NODES[2] for i in moved)
    assert len(moved) == before.count(NODES[2])


def test_a_node_joining_takes_about_its_share_from_every_node() -> None:
    before = owners(affinity(NODES))
    after = owners(affinity([*NODES, "10.0.0.4:8000"]))
    moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert all(after[i] == "10.0.0.4:8000" for i in moved)
    assert 0.15 <= len(moved) / len(KEYS) <= 0.35, len(moved)
    assert len({before[i] for i in moved}) == 3  # taken from each old node


def test_route_groups_keys_by_node_without_hold_while_stable() -> None:
    a = affinity(NODES)
    routes = a.route(KEYS[:300])
    assert sorted(i for r in routes for i in r.indices) == list(range(300))
    for r in routes:
        assert r.hold_until == 0.0
        assert {a.owner(KEYS[i]) for i in r.indices} == {r.node}


def _one_route(a: KeyAffinity[str], key: bytes) -> tuple[str, float]:
    (r,) = a.route([key])
    return r.node, r.hold_until


def test_the_guard_holds_a_key_that_moved_until_its_old_node_is_quiet() -> None:
    clock = Clock()
    a = affinity(NODES, guard=1.0, clock=clock)
    key = next(k for k in KEYS if a.owner(k) == NODES[2])
    stay = next(k for k in KEYS if a.owner(k) == NODES[0])
    (r,) = a.route([key])
    assert a.begin(r)
    clock.now = 100.5
    a.set_nodes(NODES[:2])  # the owner leaves while the write is in flight
    assert not a.begin(r)  # routed under the old node set: route again
    node, hold = _one_route(a, key)
    assert node != NODES[2] and hold == math.inf  # the old node may still stamp it
    clock.now = 100.7
    a.end(r)  # answered (or failed) now: the old node's stamp is at most this late
    node, hold = _one_route(a, key)
    assert hold == 101.7
    assert _one_route(a, stay) == (NODES[0], 0.0)  # a key that did not move never waits
    clock.now = 101.8
    node, hold = _one_route(a, key)
    assert hold == 0.0 and node in NODES[:2]


def test_a_node_coming_back_holds_the_keys_it_takes_back() -> None:
    clock = Clock()
    a = affinity(NODES, guard=1.0, clock=clock)
    key = next(k for k in KEYS if a.owner(k) == NODES[1])
    a.set_nodes([NODES[0], NODES[2]])  # node 2 lost: its keys go to the others
    (r,) = a.route([key])
    interim = r.node
    assert a.begin(r)
    clock.now = 101.0
    a.end(r)
    a.set_nodes(NODES)  # node 2 back: the key goes home, after its interim node is quiet
    node, hold = _one_route(a, key)
    assert node == NODES[1] and interim != NODES[1]
    assert hold == 102.0


def test_old_node_sets_are_forgotten_once_quiet() -> None:
    clock = Clock()
    a = affinity(NODES, guard=1.0, clock=clock)
    (r,) = a.route([KEYS[0]])
    assert a.begin(r)
    a.end(r)
    a.set_nodes(NODES[:2])
    a.route(KEYS[:1])
    assert len(a._old) == 1
    clock.now = 102.0
    a.route(KEYS[:1])
    assert a._old == []
    assert not a.set_nodes(list(reversed(NODES[:2])))  # same set: no new epoch
