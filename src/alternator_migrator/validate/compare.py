"""The pure value comparison of validate: item against item in DynamoDB wire format, with
numbers compared by value (within ``floatingPointTolerance``), sets as sets, binary by bytes,
and a description of each difference. No I/O: tested without servers."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

Item = dict[str, Any]
KeyId = tuple[tuple[str, Any], ...]

MISSING = "missing"  # in the source, not in the target
EXTRA = "extra"  # only in the target
DIFFER = "differ"  # in both, some attribute differs
KIND_LABELS = {MISSING: "missing in target", EXTRA: "only in target", DIFFER: "attributes differ"}

SHORT = 120


# --------------------------------------------------------------------------- comparing values


def _num(text: str) -> Decimal | str:
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # not a number we can read: fall back to comparing the text


def _bytes(b64: str) -> bytes | str:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return b64


def _num_equal(a: str, b: str, tol: float) -> bool:
    x, y = _num(a), _num(b)
    if isinstance(x, str) or isinstance(y, str):
        return x == y
    if x == y:
        return True
    return tol > 0 and abs(x - y) <= Decimal(str(tol))


def _ns_equal(a: Sequence[str], b: Sequence[str], tol: float) -> bool:
    if len(a) != len(b):
        return False
    if tol <= 0:
        return {_num(x) for x in a} == {_num(y) for y in b}
    # Sorted pairing is exact for tolerances below half the gap between set members, which is
    # what a tolerance for float round-off is meant for.
    xs = sorted(a, key=lambda s: (isinstance(_num(s), str), _num(s)))
    ys = sorted(b, key=lambda s: (isinstance(_num(s), str), _num(s)))
    return all(_num_equal(x, y, tol) for x, y in zip(xs, ys, strict=True))


def _diff(a: Any, b: Any, tol: float, path: str, out: list[AttrDiff]) -> None:
    """Append where two wire-format values differ (nested paths for maps and lists)."""
    if not (isinstance(a, dict) and isinstance(b, dict) and len(a) == 1 and len(b) == 1):
        if a != b:
            out.append(AttrDiff(path, a, b))
        return
    (ta, va), (tb, vb) = next(iter(a.items())), next(iter(b.items()))
    if ta != tb:
        out.append(AttrDiff(path, a, b))
        return
    if ta == "M":
        for name in sorted(set(va) | set(vb)):
            sub = f"{path}.{name}"
            if name not in va or name not in vb:
                out.append(AttrDiff(sub, va.get(name), vb.get(name)))
            else:
                _diff(va[name], vb[name], tol, sub, out)
        return
    if ta == "L":
        if len(va) != len(vb):
            out.append(AttrDiff(path, a, b))
            return
        for i, (x, y) in enumerate(zip(va, vb, strict=True)):
            _diff(x, y, tol, f"{path}[{i}]", out)
        return
    if ta == "N":
        same = _num_equal(va, vb, tol)
    elif ta == "NS":
        same = _ns_equal(va, vb, tol)
    elif ta == "B":
        same = _bytes(va) == _bytes(vb)
    elif ta == "BS":
        same = {_bytes(x) for x in va} == {_bytes(y) for y in vb}
    elif ta == "SS":
        same = set(va) == set(vb)
    else:  # S, BOOL, NULL, and anything newer compare as they are
        same = va == vb
    if not same:
        out.append(AttrDiff(path, a, b))


def compare_items(source: Item, target: Item, tol: float = 0.0) -> list[AttrDiff]:
    """Differences between a (renamed) source item and a target item; empty when equal."""
    if source == target:  # the common case, checked at C speed
        return []
    out: list[AttrDiff] = []
    for name in sorted(set(source) | set(target)):
        if name not in source or name not in target:
            out.append(AttrDiff(name, source.get(name), target.get(name)))
        else:
            _diff(source[name], target[name], tol, name, out)
    return out


def _canon(value: Any) -> Any:
    """A hashable identity for a key value: numbers by value, binary by bytes."""
    t, v = next(iter(value.items()))
    if t == "N":
        return ("N", _num(v))
    if t == "B":
        return ("B", _bytes(v))
    return (t, v if isinstance(v, str) else orjson.dumps(v, option=orjson.OPT_SORT_KEYS))


def key_identity(item: Item, names: Sequence[str]) -> KeyId:
    return tuple((n, _canon(item[n])) for n in names if n in item)


def shorten(value: Any, limit: int = SHORT) -> str:
    if value is None:
        return "(absent)"
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AttrDiff:
    path: str
    source: Any  # wire value, or None when the attribute is absent
    target: Any


@dataclass(frozen=True)
class Difference:
    kind: str
    key: Item  # the key as the target names it (renames applied)
    attrs: tuple[AttrDiff, ...] = ()


def _canon_key_part(value: Any) -> str:
    """One key attribute as text, the same for equal values however a server spells them."""
    s: str | None = value.get("S")
    if s is not None:
        return "S" + s
    n = value.get("N")
    if n is not None:
        num = _num(n)
        return "N" + (str(num.normalize()) if isinstance(num, Decimal) else num)
    b = value.get("B")
    if b is not None:
        raw = _bytes(b)
        return "B" + (base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw)
    return "?" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def key_text(item: Item, names: Sequence[str]) -> str:
    """A key's identity as text (for hashing and matching the two sides): numbers by value,
    binary by bytes. Built from str, not orjson: a small ``orjson.dumps`` result kept alive
    holds ~4 KiB, and one of these is kept per item."""
    if len(names) == 1:
        value = item.get(names[0])
        return _canon_key_part(value) if value is not None else ""
    parts = [_canon_key_part(item[n]) if n in item else "" for n in names]
    # Length-prefixed so that no two keys join to the same text.
    return "".join(f"{len(p)}:{p}" for p in parts)
