"""Change records as the replay keeps them: checked once, and compact.

A GetRecords page is parsed into dicts (the wire JSON), and each record is turned at once into
a ``Change``: its name, sequence number, time, the key's identity and the ready-made
BatchWriteItem element of its new image. The dict trees are freed with the page, so what a
round holds is one small tuple of strings and bytes per record: no tree for Python's cyclic
garbage collector to walk, a fraction of the memory, and nothing to re-encode when the batch is
written.

The record rules both engines apply: the last change per key (``collapse``) and, for a source
that may duplicate and reorder (Kinesis), newest-wins per key (``KeyClock``, ``newest_per_key``).
"""

from __future__ import annotations

import datetime as dt
import types
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import count, islice, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any, NamedTuple

import orjson

from ..errors import StreamRecordError
from ..metrics import METRICS
from ..target.sink import Element, Sink, rename_item

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")


def record_time(record: dict[str, Any]) -> float | None:
    """ApproximateCreationDateTime as epoch seconds (a number on the wire; tolerate a string)."""
    v = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except ValueError:
        try:
            return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


def to_seconds(v: Any) -> float | None:
    """ApproximateCreationDateTime as epoch seconds: Kinesis records carry milliseconds or
    microseconds (the destination's precision setting), DynamoDB Streams seconds. The
    magnitude tells which: 1e11 seconds is the year 5138."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return None
    x = float(v)
    if x > 1e14:
        return x / 1e6
    if x > 1e11:
        return x / 1e3
    return x


def check_record(rec: dict[str, Any], shard: str | None = None) -> None:
    """Refuse a record we cannot apply exactly, naming it: skipping it would lose a change,
    and guessing (a put without its image, a delete without its key) would corrupt one."""
    d = rec.get("dynamodb")
    d = d if isinstance(d, dict) else {}
    name = rec.get("eventName")
    problem = None
    if name not in EVENT_NAMES:
        problem = f"has an unknown eventName {name!r} (expected INSERT, MODIFY or REMOVE)"
    elif not isinstance(d.get("SequenceNumber"), str):
        problem = "has no SequenceNumber"
    elif not isinstance(d.get("Keys"), dict) or not d["Keys"]:
        problem = "has no Keys"
    elif name != "REMOVE" and not isinstance(d.get("NewImage"), dict):
        problem = "has no NewImage (the stream's view type must be NEW_IMAGE or NEW_AND_OLD_IMAGES)"
    if problem is None:
        return
    where = f" of shard {shard}" if shard else ""
    raise StreamRecordError(
        f"stream record {rec.get('eventID', '?')} (sequence number "
        f"{d.get('SequenceNumber', '?')}){where} {problem}; stopped before applying it, and the "
        "savepoint stays before it"
    )


def key_bytes(keys: dict[str, Any]) -> bytes:
    """The key's identity: its JSON with sorted names (``sink.key_id``'s bytes), copied: orjson
    keeps ~4 KiB behind each small result it returns, and a round keeps one per record."""
    return bytes(memoryview(orjson.dumps(keys, option=orjson.OPT_SORT_KEYS)))


class Change(NamedTuple):
    """One checked stream record: atomic values only (the TTL value is a dict of strings, which
    the cyclic GC does not track)."""

    name: str  # INSERT, MODIFY or REMOVE
    seq: str  # the source's sequence number (Kinesis: the Kinesis one)
    time: float | None  # ApproximateCreationDateTime in seconds
    key: bytes  # Keys as JSON with sorted names: the key's identity and its delete's Key
    put: bytes | None  # the PutRequest element of the new image (renames applied); None: REMOVE
    # The image's TTL attribute value ({"N": ...}) when expiry is checked; with a predicate
    # that names no attribute, the whole image (slower, still exact).
    ttl: Any = None


# Per-record passes over a batch run as C-level maps over these getters: a Python loop or
# generator per record costs more than the rest of the record's handling on a wide stream.
_NAME, _TIME, _KEY, _PUT = itemgetter(0), itemgetter(2), itemgetter(3), itemgetter(4)
_KEY_PUT = itemgetter(3, 4)
_not_none = partial(is_not, None)


def batch_size(changes: Sequence[Change]) -> int:
    """The bytes ``changes`` hold: their keys and put elements."""
    return sum(map(len, map(_KEY, changes))) + sum(map(len, filter(None, map(_PUT, changes))))


def times_applied(changes: Sequence[Change], times: dict[bytes, float]) -> dict[bytes, float]:
    """``times`` (a round's newest applied time per key) for the keys ``changes`` hold."""
    return {k: times[k] for k in set(map(_KEY, changes)).intersection(times)} if times else {}


def batch_summary(changes: Sequence[Change]) -> tuple[dict[str, int], float | None]:
    """Records per event name, and the newest creation time (not the last: Kinesis records
    are not in time order)."""
    return dict(Counter(map(_NAME, changes))), max(
        filter(_not_none, map(_TIME, changes)), default=None
    )


class Decoder:
    """Turns a page of wire records into ``Change``s, checking each once.

    ``renames`` are applied to the images here (the put elements are final); ``expired`` is
    the replay's TTL predicate: the value it needs is kept, and it is asked at write time."""

    def __init__(
        self,
        renames: dict[str, str] | None = None,
        expired: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.renames = renames or {}
        self.watch = expired is not None
        # A predicate from ``ttl.expiry_check`` names its attribute: only that value is kept.
        self.ttl_attribute: str | None = getattr(expired, "attribute", None)

    def __call__(self, records: Iterable[dict[str, Any]], shard: str | None) -> list[Change]:
        out: list[Change] = []
        append = out.append
        renames, watch, attr = self.renames, self.watch, self.ttl_attribute
        for rec in records:
            # The common record, checked inline; anything unusual gets check_record's verdict.
            try:
                d = rec["dynamodb"]
                name = rec["eventName"]
                seq = d["SequenceNumber"]
                keys = d["Keys"]
                image = d["NewImage"] if name != "REMOVE" else None
                ok = (
                    type(seq) is str
                    and type(keys) is dict
                    and keys
                    and (type(image) is dict if image is not None else name == "REMOVE")
                    and name in EVENT_NAMES
                )
            except (KeyError, TypeError):
                ok = False
            if not ok:
                check_record(rec, shard)
                d = rec["dynamodb"]  # a subclass of dict passed the full check
                name, seq, keys = rec["eventName"], d["SequenceNumber"], d["Keys"]
                image = d.get("NewImage") if name != "REMOVE" else None
            t = d.get("ApproximateCreationDateTime")
            if type(t) is not float:
                t = record_time(rec)
            key = bytes(memoryview(orjson.dumps(keys, option=orjson.OPT_SORT_KEYS)))
            if image is None:
                append(Change(name, seq, t, key, None))
                continue
            ttl = None
            if watch:
                ttl = image if attr is None else image.get(attr)
            item = orjson.dumps(rename_item(image, renames) if renames else image)
            append(Change(name, seq, t, key, b'{"PutRequest":{"Item":' + item + b"}}", ttl))
        return out

    def changes(self, records: list[Any], shard: str | None) -> list[Change]:
        """``records`` as ``Change``s: a page a ``PageDecoder`` read is one already."""
        if records and isinstance(records[0], Change):
            return records
        return self(records, shard)


# --------------------------------------------------------------------------- from the bytes

try:  # optional: without it, pages are parsed whole with orjson and decoded as above
    import msgspec  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    msgspec = None  # type: ignore[assignment, unused-ignore]

_new = tuple.__new__
_PUT_HEAD = b'{"PutRequest":{"Item":'
_PUT_TAIL = b"}}"
_new_change = partial(_new, Change)
_encode_sorted = msgspec.json.Encoder(order="sorted").encode if msgspec is not None else None
_EVENT, _DYNAMODB = attrgetter("eventName"), attrgetter("dynamodb")
_KEYS, _IMAGE = attrgetter("Keys"), attrgetter("NewImage")
_SEQUENCE, _CREATED = attrgetter("SequenceNumber"), attrgetter("ApproximateCreationDateTime")
_EVENTS = frozenset(EVENT_NAMES)
_FIRST, _OPEN = itemgetter(len(_PUT_HEAD)), frozenset(b"{")


def _page_types() -> Any:
    """GetRecords' answer as GC-free structs; each image stays a span (``Raw``) of the page."""
    raw, struct = msgspec.Raw, msgspec.defstruct
    dyn = struct(
        "StreamRecord",
        [
            ("SequenceNumber", str),
            ("Keys", dict[str, dict[str, str]]),
            ("NewImage", raw, raw()),
            ("ApproximateCreationDateTime", float | None, None),
        ],
        gc=False,
    )
    rec = struct("Record", [("eventName", str), ("dynamodb", dyn)], gc=False)
    # Kinesis carries one record per Data blob, with its table's name and no SequenceNumber.
    kdyn = struct(
        "KinesisStreamRecord",
        [
            ("Keys", dict[str, dict[str, str]]),
            ("NewImage", raw, raw()),
            ("ApproximateCreationDateTime", float | None, None),
        ],
        gc=False,
    )
    krec = struct(
        "KinesisRecord",
        [("eventName", str), ("dynamodb", kdyn), ("tableName", str | None, None)],
        gc=False,
    )
    # Kinesis' GetRecords answer: each Data is base64, which msgspec decodes into bytes.
    envelope = struct("KinesisEnvelope", [("SequenceNumber", str), ("Data", bytes)], gc=False)
    kpage = struct(
        "KinesisPage",
        [
            ("Records", types.GenericAlias(list, (envelope,)), msgspec.field(default_factory=list)),
            ("NextShardIterator", str | None, None),
            ("MillisBehindLatest", int | None, None),
        ],
        gc=False,
    )
    return (
        krec,
        kpage,
        struct(
            "GetRecordsPage",
            [
                ("Records", types.GenericAlias(list, (rec,)), msgspec.field(default_factory=list)),
                ("NextShardIterator", str | None, None),
            ],
            gc=False,
        ),
    )


class KinesisPage(NamedTuple):
    """A Kinesis GetRecords answer as ``PageDecoder.kinesis`` decodes it."""

    changes: list[Change]
    other_tables: int  # records of other tables' changes (one stream may carry several)
    next_iterator: str | None
    behind: int  # MillisBehindLatest


class PageDecoder:
    """A GetRecords answer decoded from its bytes straight into ``Change``s: the images are
    never parsed (only the keys are), and each put element is the image's bytes framed.

    Anything the structs do not describe (a missing field, an unknown event, a string time)
    is decoded by the full path (``Decoder``), which accepts it or refuses it by name."""

    def __init__(self, decoder: Decoder) -> None:
        self.slow = decoder
        record_type, kinesis_page_type, page_type = _page_types()
        self._page = msgspec.json.Decoder(page_type)
        self._record = msgspec.json.Decoder(record_type)
        self._kinesis_page = msgspec.json.Decoder(kinesis_page_type)
        self._ttl: Any = None
        if decoder.ttl_attribute is not None:  # only that attribute of each image is parsed
            ttl = msgspec.defstruct(
                "Ttl", [("value", Any, None)], rename={"value": decoder.ttl_attribute}
            )
            self._ttl = msgspec.json.Decoder(ttl)

    def __call__(
        self, body: bytes | bytearray, shard: str | None
    ) -> tuple[list[Change], str | None]:
        try:
            page = self._page.decode(body)
        except msgspec.DecodeError:
            return self._slowly(body, shard)
        recs = page.Records
        if self.slow.renames:  # each image is parsed to rename it: one record at a time
            out: list[Change] = []
            for r in recs:
                d = r.dynamodb
                c = self._change(r, d.SequenceNumber, d.ApproximateCreationDateTime)
                if c is None:
                    return self._slowly(body, shard)
                out.append(c)
            return out, page.NextShardIterator
        changes = self._columns(recs)
        if changes is None:
            return self._slowly(body, shard)
        return changes, page.NextShardIterator

    def _columns(self, recs: list[Any]) -> list[Change] | None:
        """``_change`` for a whole page, field by field as C-level maps: on a wide stream the
        per-record Python of a loop costs as much as parsing the page. None: a record only the
        full path can judge."""
        names = list(map(_EVENT, recs))
        if not _EVENTS.issuperset(names):
            return None
        dyn = list(map(_DYNAMODB, recs))
        keys = list(map(_KEYS, dyn))
        if not all(keys):
            return None
        images = list(map(_IMAGE, dyn))
        puts: list[bytes | None] = list(
            map(b"".join, zip(repeat(_PUT_HEAD), images, repeat(_PUT_TAIL)))
        )
        if "REMOVE" in names:
            puts = [None if n == "REMOVE" else p for n, p in zip(names, puts, strict=True)]
        # Every image an object: its first byte follows the head (an absent one gives "}").
        if not _OPEN.issuperset(map(_FIRST, filter(None, puts))):
            return None
        ttls: list[Any] = [None] * len(names)
        if self.slow.watch:
            ttls = [
                None if p is None else self._ttl_value(i) for p, i in zip(puts, images, strict=True)
            ]
        return list(
            map(
                _new_change,
                zip(
                    names,
                    map(_SEQUENCE, dyn),
                    map(_CREATED, dyn),
                    map(_encode_sorted, keys),
                    puts,
                    ttls,
                    strict=True,
                ),
            )
        )

    def record(self, data: bytes, seq: str) -> tuple[str | None, Change] | None:
        """One Kinesis record's Data (decoded from base64): its table's name and the change
        (its time as on the wire); None when only the full path can judge it."""
        try:
            r = self._record.decode(data)
        except msgspec.DecodeError:
            return None
        c = self._change(r, seq, r.dynamodb.ApproximateCreationDateTime)
        return None if c is None else (r.tableName, c)

    def kinesis(self, body: bytes | bytearray, table: str) -> KinesisPage | None:
        """A Kinesis GetRecords answer decoded from its bytes: each Data from base64 straight
        into the record struct, its image never parsed, its time turned into seconds; records
        of other tables counted, not kept. None when only the full path can judge the page
        (it then decodes it record by record and names what it refuses)."""
        try:
            page = self._kinesis_page.decode(body)
        except msgspec.DecodeError:
            return None
        out: list[Change] = []
        append = out.append
        other = 0
        decode, change, join = self._record.decode, self._change, b"".join
        # Without renames or TTL, ``_change`` inline: a call per record costs ~5% of the page.
        plain = not self.slow.renames and not self.slow.watch
        for e in page.Records:
            try:
                r = decode(e.Data)
            except msgspec.DecodeError:
                return None
            if r.tableName is not None and r.tableName != table:
                other += 1  # as the full path: skipped before its record is checked
                continue
            d = r.dynamodb
            t = d.ApproximateCreationDateTime  # to_seconds, inline: once per record
            if t is not None and t > 1e11:
                t = t / 1e6 if t > 1e14 else t / 1e3
            name, keys = r.eventName, d.Keys
            if plain and keys and name in _EVENTS:
                if name == "REMOVE":
                    append(
                        _new(Change, (name, e.SequenceNumber, t, _encode_sorted(keys), None, None))
                    )
                    continue
                image = d.NewImage
                if image and memoryview(image)[0] == 0x7B:  # present, and an object
                    put = join((_PUT_HEAD, image, _PUT_TAIL))
                    append(
                        _new(Change, (name, e.SequenceNumber, t, _encode_sorted(keys), put, None))
                    )
                    continue
            c = change(r, e.SequenceNumber, t)
            if c is None:
                return None
            append(c)
        return KinesisPage(out, other, page.NextShardIterator, page.MillisBehindLatest or 0)

    def _ttl_value(self, image: Any) -> Any:
        """What the TTL predicate needs of an image: its attribute, or the whole image."""
        ttl = self._ttl
        return ttl.decode(image).value if ttl is not None else orjson.loads(memoryview(image))

    def _change(self, r: Any, seq: str, t: float | None) -> Change | None:
        d = r.dynamodb
        name = r.eventName
        keys = d.Keys
        if not keys or name not in EVENT_NAMES:
            return None
        # The keys are typed strings here, which msgspec encodes byte for byte as orjson
        # does (``key_bytes``), in under half the time and with no slack kept behind.
        key = _encode_sorted(keys)
        if name == "REMOVE":
            return _new(Change, (name, seq, t, key, None, None))
        image = memoryview(d.NewImage)
        if not image or image[0] != 0x7B:  # absent, or not an object
            return None
        slow = self.slow
        if slow.renames:
            item = orjson.dumps(rename_item(orjson.loads(image), slow.renames))
            put = _PUT_HEAD + item + _PUT_TAIL
        else:
            put = b"".join((_PUT_HEAD, image, _PUT_TAIL))
        value = self._ttl_value(image) if slow.watch else None
        # tuple.__new__: a NamedTuple's own __new__ is a Python function, called per record.
        return _new(Change, (name, seq, t, key, put, value))

    def _slowly(
        self, body: bytes | bytearray, shard: str | None
    ) -> tuple[list[Change], str | None]:
        r = orjson.loads(body)
        return self.slow(r.get("Records", []), shard), r.get("NextShardIterator")


def page_decoder(decoder: Decoder) -> PageDecoder | None:
    """The fast path when msgspec is installed; None otherwise."""
    return PageDecoder(decoder) if msgspec is not None else None


# --------------------------------------------------------------------------- the record rules


def collapse(
    records: Sequence[Change],
    sink: Sink,
    expired: Callable[[dict[str, Any]], bool] | None = None,
) -> list[Element]:
    """The last change per key, as BatchWriteItem elements (see ``collapse_keyed``)."""
    return list(collapse_keyed(records, sink, expired).values())


def collapse_keyed(
    records: Sequence[Change],
    sink: Sink,
    expired: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[bytes, Element]:
    """The last change per key (``Change.key``), as BatchWriteItem elements; order across keys
    is irrelevant.

    An image whose TTL has already passed (``expired``) is not written: the key is deleted
    instead, so an older live copy on the target does not outlive the source's. Records were
    checked when they were read (``Decoder``).
    """
    if expired is None:
        # The last change per key wins as the dict is built; only deletes need an element.
        last: dict[bytes, Any] = dict(map(_KEY_PUT, records))
        for k in [k for k, put in last.items() if put is None]:
            last[k] = sink.delete_element(k)
        return last
    attr: str | None = getattr(expired, "attribute", None)
    out: dict[bytes, Element] = {}
    # Each key's last change, then its fate: an image expired by then becomes a delete.
    for k, c in dict(zip(map(_KEY, records), records, strict=True)).items():
        if c.put is None:
            out[k] = sink.delete_element(k)
        elif c.ttl is not None and expired(c.ttl if attr is None else {attr: c.ttl}):
            METRICS.inc("stream_images_expired_total")
            out[k] = sink.delete_element(k)
        else:
            out[k] = c.put
    return out


class KeyClock:
    """Per key, the ApproximateCreationDateTime of the newest change applied: a record older
    than that is a late duplicate or a reordering and must not overwrite the newer state.

    Bounded: past ``capacity`` keys the least recently changed are forgotten, so protection
    spans the last ``capacity`` distinct keys changed (a reordering spans seconds)."""

    def __init__(self, capacity: int = 200_000, saved: int = 20_000) -> None:
        self.capacity = capacity
        self.saved = saved  # keys kept in the savepoint, the most recently changed
        self._newest: OrderedDict[bytes, float] = OrderedDict()

    def recent(self) -> dict[str, float]:
        """The most recently changed keys, for the savepoint (a restart loads them back)."""
        newest = self._newest
        # C-level passes: at each savepoint, up to ``saved`` keys.
        keys = list(islice(reversed(newest), self.saved))
        return dict(zip(map(bytes.decode, keys), map(newest.__getitem__, keys), strict=True))

    def load(self, saved: dict[str, float]) -> None:
        self.note_all({k.encode(): t for k, t in sorted(saved.items(), key=lambda kv: kv[1])})

    def get(self, key: bytes) -> float | None:
        return self._newest.get(key)

    def note(self, key: bytes, t: float) -> None:
        self.note_all({key: t})

    def note_all(self, times: dict[bytes, float]) -> None:
        """``note`` for each key of ``times``, in its order, then forget past ``capacity``: a
        round's keys in one pass."""
        newest = self._newest
        pop = newest.pop
        for k, t in times.items():  # moved to the end as it is noted again
            old = pop(k, None)
            newest[k] = t if old is None or old < t else old
        excess = len(newest) - self.capacity
        if excess > 0:
            for _ in range(excess):
                newest.popitem(last=False)
            METRICS.inc("replay_key_clock_evictions_total", excess)

    def __len__(self) -> int:
        return len(self._newest)


_UNSEEN: Any = object()  # a key not yet seen in the batch


def newest_per_key(
    records: Sequence[Change], clock: KeyClock
) -> tuple[list[Change], dict[bytes, float]]:
    """The records that carry each key's newest change, in read order, and those changes'
    times (noted in ``clock`` once written).

    Newest-wins by ApproximateCreationDateTime, within the batch and against what earlier
    batches applied. On equal times the record read later wins: a duplicate is the same
    change, and two changes within one tick keep their order in the shard."""
    # Two dicts and C-level column reads: this runs per record of every Kinesis round.
    best: dict[bytes, float | None] = {}
    at: dict[bytes, int] = {}
    seen, applied = best.get, clock._newest.get  # the dicts' own lookups, not a method call
    for i, k, t in zip(count(), map(_KEY, records), map(_TIME, records)):
        prev = seen(k, _UNSEEN)
        if prev is _UNSEEN:
            prev = applied(k)
        if t is None or prev is None or t >= prev:
            best[k], at[k] = t, i
    keep = sorted(at.values())
    dropped = len(records) - len(keep)
    if dropped:
        METRICS.inc("stream_records_superseded_total", dropped)
    times = {k: t for k, t in best.items() if t is not None}
    return list(map(records.__getitem__, keep)), times
