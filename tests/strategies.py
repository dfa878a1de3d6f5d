"""Hypothesis strategies for DynamoDB attribute values, in boto3's low-level (wire) form."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

text = st.text(max_size=40)  # includes "" and any non-surrogate unicode
nonempty_text = st.text(min_size=1, max_size=20)
binary = st.binary(max_size=40)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """Any DynamoDB number: up to 38 significant digits, magnitude 1E-130 .. 9.99..E+125."""
    if draw(st.integers(0, 20)) == 0:
        return "0"
    digits = draw(st.integers(1, 38))
    mantissa = draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    adjusted = draw(st.integers(-130, 125))  # exponent of the leading digit
    exp = adjusted - (digits - 1)
    sign = draw(st.sampled_from([0, 1]))
    d = Decimal((sign, tuple(int(c) for c in str(mantissa)), exp))
    return str(d)


def _distinct_numbers(values: list[str]) -> list[str]:
    seen: dict[Decimal, str] = {}
    for v in values:
        seen.setdefault(Decimal(v).normalize(), v)
    return list(seen.values())


# dynalite (the JavaScript target used in tests) mishandles attribute names that are
# properties of JavaScript's Object.prototype; DynamoDB and Alternator accept them.
_JS_PROTOTYPE_NAMES = {
    "__proto__",
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
}

attribute_name = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="#:"),
    min_size=1,
    max_size=12,
).filter(lambda n: n != "pk" and n not in _JS_PROTOTYPE_NAMES)

map_key = nonempty_text.filter(lambda n: n not in _JS_PROTOTYPE_NAMES)


scalar = st.one_of(
    text.map(lambda s: {"S": s}),
    numbers().map(lambda n: {"N": n}),
    binary.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(nonempty_text, min_size=1, max_size=5).map(lambda s: {"SS": sorted(s)}),
    st.lists(numbers(), min_size=1, max_size=5).map(lambda ns: {"NS": _distinct_numbers(ns)}),
    st.sets(st.binary(min_size=1, max_size=10), min_size=1, max_size=4).map(
        lambda s: {"BS": sorted(s)}
    ),
)

attribute_value: st.SearchStrategy[dict[str, Any]] = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.dictionaries(map_key, children, max_size=4).map(lambda m: {"M": m}),
        st.lists(children, max_size=4).map(lambda xs: {"L": xs}),
    ),
    max_leaves=12,
)


def items(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda k, attrs: {"pk": {"S": k}, **attrs},
        keys,
        st.dictionaries(attribute_name, attribute_value, max_size=6),
    )
