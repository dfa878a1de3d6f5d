"""Change records as the replay keeps them: checked once, compact, no trees for the GC."""

from __future__ import annotations

import gc
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alternator_migrator.changes.records import Change, Decoder, KeyClock, newest_per_key
from alternator_migrator.errors import StreamRecordError
from alternator_migrator.pipeline.replay import collapse
from alternator_migrator.target.sink import Sink, key_id
from alternator_migrator.target.ttl import expiry_check


def rec(name: str, pk: str, seq: str = "100", **image: Any) -> dict[str, Any]:
    keys = {"pk": {"S": pk}, "sk": {"N": "1"}}
    d: dict[str, Any] = {"Keys": keys, "SequenceNumber": seq, "ApproximateCreationDateTime": 5}
    if name != "REMOVE":
        d["NewImage"] = {**keys, **image}
    return {"eventID": "e1", "eventName": name, "dynamodb": d}


class _NoClient:
    stop = None
    retry = None
    affinity = None  # one endpoint: no per-node split


def sink(renames: dict[str, str] | None = None) -> Sink:
    return Sink(_NoClient(), "T", ["pk", "sk"], renames=renames)  # type: ignore[arg-type]


def test_a_change_holds_the_key_identity_and_the_encoded_put() -> None:
    (c,) = Decoder({"old": "new"})([rec("INSERT", "a", old={"S": "x"})], "s1")
    assert c.name == "INSERT" and c.seq == "100" and c.time == 5.0
    # The same identity as sink.key_id (Kinesis savepoints keep it), whatever the names' order.
    assert c.key == key_id({"sk": {"N": "1"}, "pk": {"S": "a"}})
    assert orjson.loads(c.put or b"") == {
        "PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "new": {"S": "x"}}}
    }
    (r,) = Decoder()([rec("REMOVE", "a")], "s1")
    assert r.put is None


def test_nothing_behind_a_change_is_for_the_cyclic_gc_to_walk() -> None:
    expired = expiry_check("ttl", lambda: 0.0)
    records = [rec("MODIFY", f"k{i}", v={"S": "x" * 500}, ttl={"N": "9"}) for i in range(50)]
    changes = Decoder(expired=expired)(records, "s")
    gc.collect()
    assert not any(gc.is_tracked(field) for c in changes for field in c)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}}}, "no SequenceNumber"),
        (rec("INSERT", "a") | {"eventName": "UPSERT"}, "unknown eventName 'UPSERT'"),
        ({"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "1", "Keys": {}}}, "no Keys"),
        (
            {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "1", "Keys": {"k": {"S": "a"}}}},
            "no NewImage",
        ),
    ],
)
def test_a_record_that_cannot_be_applied_is_refused_by_name(
    record: dict[str, Any], problem: str
) -> None:
    with pytest.raises(StreamRecordError, match=problem) as e:
        Decoder()([rec("INSERT", "ok"), record], "shard-7")
    assert "shard-7" in str(e.value)


def test_collapse_keeps_the_last_change_per_key_and_deletes_expired_images() -> None:
    expired = expiry_check("ttl", lambda: 1000.0)
    decode = Decoder(expired=expired)
    changes = decode(
        [
            rec("INSERT", "a", v={"N": "1"}),
            rec("MODIFY", "a", v={"N": "2"}),
            rec("INSERT", "b", ttl={"N": "999"}),  # already expired: deleted, not written
            rec("INSERT", "c", ttl={"N": "1001"}),
            rec("INSERT", "d"),
            rec("REMOVE", "d"),
        ],
        "s",
    )
    assert all(isinstance(c, Change) for c in changes)
    out = [
        orjson.loads(e) if isinstance(e, bytes) else e for e in collapse(changes, sink(), expired)
    ]
    assert out == [
        {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "2"}}}},
        {"DeleteRequest": {"Key": {"pk": {"S": "b"}, "sk": {"N": "1"}}}},
        {"PutRequest": {"Item": {"pk": {"S": "c"}, "sk": {"N": "1"}, "ttl": {"N": "1001"}}}},
        {"DeleteRequest": {"Key": {"pk": {"S": "d"}, "sk": {"N": "1"}}}},
    ]


def test_a_delete_of_a_renamed_key_names_the_target_key() -> None:
    s = sink({"pk": "id"})
    (c,) = Decoder(s.renames)([rec("REMOVE", "a")], "s")
    assert orjson.loads(s.delete_element(c.key)) == {
        "DeleteRequest": {"Key": {"id": {"S": "a"}, "sk": {"N": "1"}}}
    }


def test_a_body_joined_from_encoded_elements_is_the_same_request() -> None:
    s = sink()
    put = {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}}}
    dele = {"DeleteRequest": {"Key": {"pk": {"S": "b"}, "sk": {"N": "1"}}}}
    body = s._body([orjson.dumps(put), dele])
    assert orjson.loads(body) == {
        "RequestItems": {"T": [put, dele]},
        "ReturnConsumedCapacity": "TOTAL",
    }
    assert (
        s.describe(orjson.dumps(put)) == 'put of the item with key {"pk":{"S":"a"},"sk":{"N":"1"}}'
    )


def page(*records: dict[str, Any]) -> bytes:
    return orjson.dumps({"Records": list(records), "NextShardIterator": "next"})


def test_the_page_decoder_gives_the_changes_the_full_decoder_gives() -> None:
    pytest.importorskip("msgspec")
    from alternator_migrator.changes.records import page_decoder

    expired = expiry_check("ttl", lambda: 1000.0)
    for decoder in (Decoder(), Decoder({"v": "w"}, expired), Decoder(expired=lambda i: False)):
        fast = page_decoder(decoder)
        assert fast is not None
        records = [
            rec("INSERT", "a", v={"N": "1"}, ttl={"N": "5"}),
            rec("MODIFY", "a", v={"L": [{"S": "x"}, {"M": {"q": {"BOOL": True}}}]}),
            rec("REMOVE", "a"),
            # A time as a string, as some emulators send it: the full path reads it.
            rec("INSERT", "b") | {"dynamodb": rec("INSERT", "b")["dynamodb"] | {
                "ApproximateCreationDateTime": "2026-01-01T00:00:00Z"}},
        ]  # fmt: skip
        for recs in (records[:3], records):
            changes, nxt = fast(page(*recs), "s1")
            assert nxt == "next"
            want = decoder(orjson.loads(page(*recs))["Records"], "s1")
            assert [c._replace(put=orjson.loads(c.put or b"null")) for c in changes] == [
                c._replace(put=orjson.loads(c.put or b"null")) for c in want
            ]
        # A record the structs do not describe is refused by name, as by the full path.
        bad = rec("INSERT", "c")
        del bad["dynamodb"]["NewImage"]
        with pytest.raises(StreamRecordError, match="of shard s1 has no NewImage"):
            fast(page(records[0], bad), "s1")
        closed, nxt = fast(orjson.dumps({"Records": [], "NextShardIterator": None}), "s1")
        assert closed == [] and nxt is None


def test_a_kinesis_record_decoded_from_its_bytes_is_the_change_the_full_path_makes() -> None:
    pytest.importorskip("msgspec")
    import base64

    from alternator_migrator.changes.kinesis import _fast_decode, decode
    from alternator_migrator.changes.records import page_decoder

    decoder = Decoder()
    fast = page_decoder(decoder)
    assert fast is not None
    for name in ("INSERT", "REMOVE"):
        r = rec(name, "a", v={"N": "1"})
        r["dynamodb"]["ApproximateCreationDateTime"] = 1767225600123456  # microseconds
        del r["dynamodb"]["SequenceNumber"]
        raw = {
            "SequenceNumber": "4960",
            "Data": base64.b64encode(orjson.dumps(r | {"tableName": "T"})).decode(),
        }
        got = _fast_decode(fast, raw)
        assert got is not None and got[0] == "T"
        slow = decoder([decode(raw, "T", "s1") or {}], "s1")[0]
        assert got[1] == slow and slow.time == pytest.approx(1767225600.123456)
    # Data that is not a change record: left to the full path, which names the problem.
    assert (
        _fast_decode(fast, {"SequenceNumber": "1", "Data": base64.b64encode(b"[1]").decode()})
        is None
    )


def kinesis_page(*data: bytes, behind: int | None = 7) -> bytes:
    import base64

    records = [
        {"SequenceNumber": f"49{i:03d}", "Data": base64.b64encode(d).decode()}
        for i, d in enumerate(data)
    ]
    page: dict[str, Any] = {"Records": records, "NextShardIterator": "next"}
    if behind is not None:
        page["MillisBehindLatest"] = behind
    return orjson.dumps(page)


def test_a_kinesis_page_decoded_from_its_bytes_is_what_the_full_path_makes() -> None:
    pytest.importorskip("msgspec")
    from alternator_migrator.changes.kinesis import decode
    from alternator_migrator.changes.records import page_decoder

    expired = expiry_check("ttl", lambda: 1000.0)
    for decoder in (Decoder(), Decoder({"v": "w"}, expired)):
        fast = page_decoder(decoder)
        assert fast is not None
        data = []
        for name, pk, t in (("INSERT", "a", 1767225600123456), ("REMOVE", "a", 1767225600124)):
            r = rec(name, pk, v={"N": "1"}, ttl={"N": "5"})
            r["dynamodb"]["ApproximateCreationDateTime"] = t  # micro-, then milliseconds
            del r["dynamodb"]["SequenceNumber"]
            data.append(orjson.dumps(r | {"tableName": "T"}))
        other = rec("INSERT", "b", v={"N": "2"})
        data.insert(1, orjson.dumps(other | {"tableName": "U"}))  # another table's change
        body = kinesis_page(*data)
        got = fast.kinesis(body, "T")
        assert got is not None
        slow = [decode(r, "T", "s1") for r in orjson.loads(body)["Records"]]
        want = decoder([r for r in slow if r is not None], "s1")
        assert [c._replace(put=orjson.loads(c.put or b"null")) for c in got.changes] == [
            c._replace(put=orjson.loads(c.put or b"null")) for c in want
        ]
        assert [c.time for c in got.changes] == pytest.approx([1767225600.123456, 1767225600.124])
        assert (got.other_tables, got.next_iterator, got.behind) == (1, "next", 7)
    assert fast.kinesis(kinesis_page(behind=None), "T") == ([], 0, "next", 0)
    # Data that is not base64, or not a change record: the full path judges the page.
    assert fast.kinesis(body.replace(b'"Data":"', b'"Data":"*', 1), "T") is None
    assert fast.kinesis(kinesis_page(data[0], b"[1]"), "T") is None


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.sampled_from(["S", "N", "B"]).flatmap(lambda t: st.fixed_dictionaries({t: st.text()})),
        min_size=1,
        max_size=2,
    )
)
def test_a_key_decoded_from_the_bytes_has_the_identity_the_full_path_gives(
    keys: dict[str, Any],
) -> None:
    pytest.importorskip("msgspec")
    from alternator_migrator.changes.records import key_bytes, page_decoder

    fast = page_decoder(Decoder())
    assert fast is not None
    r = {"eventName": "REMOVE", "dynamodb": {"Keys": keys, "SequenceNumber": "1"}}
    changes, _ = fast(page(r), "s1")
    assert changes[0].key == key_bytes(keys) == key_id(keys)


_ODD: dict[str, Any] = {
    "image not an object": lambda r: r["dynamodb"].__setitem__("NewImage", "x"),
    "empty image": lambda r: r["dynamodb"].__setitem__("NewImage", {}),
    "no keys": lambda r: r["dynamodb"].__setitem__("Keys", {}),
    "unknown event": lambda r: r.__setitem__("eventName", "UPSERT"),
    "time as text": lambda r: r["dynamodb"].__setitem__("ApproximateCreationDateTime", "7"),
}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([None, 5, 2000]),  # the item's TTL: none, expired, live
            st.sampled_from([None, *_ODD]),
        ),
        max_size=12,
    ),
    st.sampled_from(["plain", "ttl attribute", "ttl predicate"]),
)
def test_a_page_decoded_a_field_at_a_time_is_what_the_full_path_makes(
    spec: list[tuple[str, str, int | None, str | None]], mode: str
) -> None:
    """The page decoder's column path against the record-at-a-time full path: the same
    changes, or the same refusal, whatever the mix of events, TTLs and odd records."""
    pytest.importorskip("msgspec")
    from alternator_migrator.changes.records import page_decoder

    expired = {
        "plain": None,
        "ttl attribute": expiry_check("ttl", lambda: 1000.0),
        "ttl predicate": lambda i: "ttl" in i,
    }[mode]
    decoder = Decoder(expired=expired)
    fast = page_decoder(decoder)
    assert fast is not None
    records = []
    for n, (name, pk, ttl, odd) in enumerate(spec):
        r = rec(name, pk, str(100 + n), **({"ttl": {"N": str(ttl)}} if ttl else {}))
        if odd is not None:
            _ODD[odd](r)
        records.append(r)
    body = page(*records)
    if all(odd is None for *_, odd in spec):  # nothing odd: no record needs the full path
        fast._slowly = lambda *_: pytest.fail("a plain page fell back to the full path")  # type: ignore[method-assign]
    try:
        want = decoder(orjson.loads(body)["Records"], "s1")
    except StreamRecordError as e:
        with pytest.raises(StreamRecordError) as got:
            fast(body, "s1")
        assert str(got.value) == str(e)
        return
    changes, nxt = fast(body, "s1")
    assert nxt == "next"
    assert changes == want


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([None, 5, 2000]),
            st.sampled_from([None, "T", "U"]),  # the record's table: absent, ours, another's
            st.sampled_from([None, *_ODD]),
        ),
        max_size=12,
    ),
    st.sampled_from(["plain", "renamed", "ttl attribute", "ttl predicate"]),
)
def test_a_kinesis_page_of_any_mix_is_what_the_full_path_makes(
    spec: list[tuple[str, str, int | None, str | None, str | None]], mode: str
) -> None:
    """The Kinesis page decoder (its inline path for plain replays, ``_change`` otherwise)
    against the full path: the same changes, or the page left to the full path, which then
    refuses by name."""
    pytest.importorskip("msgspec")
    from alternator_migrator.changes.kinesis import decode
    from alternator_migrator.changes.records import page_decoder

    renames = {"v": "w"} if mode == "renamed" else None
    expired = {
        "plain": None,
        "renamed": None,
        "ttl attribute": expiry_check("ttl", lambda: 1000.0),
        "ttl predicate": lambda i: "ttl" in i,
    }[mode]
    decoder = Decoder(renames, expired)
    fast = page_decoder(decoder)
    assert fast is not None
    data = []
    for n, (name, pk, ttl, table, odd) in enumerate(spec):
        r = rec(name, pk, "100", v={"N": str(n)}, **({"ttl": {"N": str(ttl)}} if ttl else {}))
        r["dynamodb"]["ApproximateCreationDateTime"] = 1767225600000000 + n  # microseconds
        del r["dynamodb"]["SequenceNumber"]
        if odd is not None:
            _ODD[odd](r)
        data.append(orjson.dumps(r if table is None else r | {"tableName": table}))
    body = kinesis_page(*data)
    got = fast.kinesis(body, "T")
    try:
        full = [decode(r, "T", "s1") for r in orjson.loads(body)["Records"]]
        want = decoder([r for r in full if r is not None], "s1")
    except StreamRecordError:
        assert got is None  # only the full path may refuse, and name the record
        return
    if got is None:  # the one odd record the full path accepts: a time as text
        assert "time as text" in [odd for *_, odd in spec]
        return
    assert [c._replace(put=orjson.loads(c.put or b"null")) for c in got.changes] == [
        c._replace(put=orjson.loads(c.put or b"null")) for c in want
    ]
    assert got.other_tables == sum(table == "U" for *_, table, _ in spec)


def _newest_one_by_one(
    records: list[Change], applied: dict[bytes, float]
) -> tuple[list[Change], dict[bytes, float]]:
    """newest_per_key's rule, record by record: a change applies when it is at least as new
    as the newest one seen for its key (in this batch, or applied before)."""
    best: dict[bytes, tuple[float, int]] = {}
    for i, c in enumerate(records):
        assert c.time is not None
        prev = best[c.key][0] if c.key in best else applied.get(c.key)
        if prev is None or c.time >= prev:
            best[c.key] = (c.time, i)
    keep = sorted(i for _, i in best.values())
    return [records[i] for i in keep], {k: t for k, (t, _) in best.items()}


_batches = st.lists(
    st.tuples(st.sampled_from("abcde"), st.integers(0, 6), st.integers(0, 9)), max_size=40
)


@given(_batches, st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 6)))
def test_newest_per_key_keeps_what_a_record_by_record_judge_keeps(
    batch: list[tuple[str, int, int]], before: dict[str, int]
) -> None:
    # Few keys and few distinct times: duplicates, reorderings and ties in every batch.
    records = [
        Change("MODIFY", str(n), float(t), key_id({"pk": {"S": k}}), b"%d" % n) for k, t, n in batch
    ]
    clock = KeyClock()
    applied = {key_id({"pk": {"S": k}}): float(t) for k, t in before.items()}
    clock.note_all(applied)
    keep, times = newest_per_key(records, clock)
    assert (keep, times) == _newest_one_by_one(records, applied)


@given(st.lists(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 9)), max_size=6))
def test_a_round_noted_at_once_is_the_same_clock_as_noted_key_by_key(
    rounds: list[dict[str, int]],
) -> None:
    one, each = KeyClock(capacity=5), KeyClock(capacity=5)
    for r in rounds:
        times = {k.encode(): float(t) for k, t in r.items()}
        one.note_all(times)
        for k, t in times.items():
            old = each._newest.pop(k, None)
            each._newest[k] = t if old is None else max(old, t)
        # Forgotten once the round is noted: a key noted again in it is not lost meanwhile.
        while len(each._newest) > each.capacity:
            each._newest.popitem(last=False)
    assert list(one._newest.items()) == list(each._newest.items())


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 9)), max_size=30))
def test_the_clock_saves_its_most_recently_changed_keys_newest_first(
    notes: list[tuple[str, int]],
) -> None:
    clock = KeyClock(capacity=6, saved=3)
    order: list[str] = []  # keys by their last note, oldest first
    for k, t in notes:
        clock.note(k.encode(), float(t))
        order = [o for o in order if o != k] + [k]
    kept = order[-6:]
    want = list(reversed(kept))[:3]
    got = clock.recent()
    assert list(got) == want
    assert got == {k: clock.get(k.encode()) for k in want}
