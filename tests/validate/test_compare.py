"""The pure value comparison (validate/compare.py), without servers."""

from __future__ import annotations

import copy

from alternator_migrator.validate.compare import compare_items, key_text

# --------------------------------------------------------------------------- value semantics


def test_numbers_compare_by_value_sets_as_sets_binary_by_bytes() -> None:
    src = {
        "n": {"N": "1"},
        "ns": {"NS": ["1", "2.50", "3E2"]},
        "ss": {"SS": ["b", "a"]},
        "b": {"B": "AQI="},
        "l": {"L": [{"N": "10"}, {"M": {"x": {"N": "0.1"}}}]},
    }
    tgt = {
        "n": {"N": "1.000"},
        "ns": {"NS": ["300", "2.5", "1.0"]},
        "ss": {"SS": ["a", "b"]},
        "b": {"B": "AQI="},
        "l": {"L": [{"N": "1E1"}, {"M": {"x": {"N": ".10"}}}]},
    }
    assert compare_items(src, tgt) == []


def test_nested_difference_names_its_path_and_both_values() -> None:
    src = {"m": {"M": {"a": {"L": [{"N": "1"}, {"S": "x"}]}, "b": {"S": "keep"}}}}
    tgt = copy.deepcopy(src)
    tgt["m"]["M"]["a"]["L"][1] = {"S": "y"}
    tgt["extra"] = {"BOOL": False}
    diffs = compare_items(src, tgt)
    assert [(d.path, d.source, d.target) for d in diffs] == [
        ("extra", None, {"BOOL": False}),
        ("m.a[1]", {"S": "x"}, {"S": "y"}),
    ]


def test_type_changes_and_set_contents_differ() -> None:
    assert compare_items({"a": {"N": "1"}}, {"a": {"S": "1"}})
    assert compare_items({"a": {"SS": ["x"]}}, {"a": {"SS": ["x", "y"]}})
    assert compare_items({"a": {"B": "AQI="}}, {"a": {"B": "AQM="}})
    assert compare_items({"a": {"L": [{"N": "1"}]}}, {"a": {"L": [{"N": "1"}, {"N": "1"}]}})


def test_floating_point_tolerance() -> None:
    src, tgt = {"f": {"N": "0.30000000000000004"}}, {"f": {"N": "0.3"}}
    assert compare_items(src, tgt)
    assert compare_items(src, tgt, tol=1e-9) == []
    assert compare_items({"f": {"NS": ["1.0001", "5"]}}, {"f": {"NS": ["5", "1"]}}, 0.001) == []
    assert compare_items({"f": {"N": "1.1"}}, {"f": {"N": "1"}}, 0.001)


def test_key_text_match_equal_values_however_spelled() -> None:
    names = ["pk"]
    assert key_text({"pk": {"N": "1.000"}}, names) == key_text({"pk": {"N": "1"}}, names)
    assert key_text({"pk": {"N": "1E2"}}, names) == key_text({"pk": {"N": "100"}}, names)
    assert key_text({"pk": {"N": "1"}}, names) != key_text({"pk": {"S": "1"}}, names)
    assert key_text({"pk": {"B": "AQI="}}, names) == key_text({"pk": {"B": "AQI="}}, names)
    assert key_text({"pk": {"B": "AQI="}}, names) != key_text({"pk": {"B": "AQM="}}, names)


def test_key_text_of_two_attributes_never_join_alike() -> None:
    names = ["h", "r"]
    a = key_text({"h": {"S": "ab"}, "r": {"S": "c"}}, names)
    b = key_text({"h": {"S": "a"}, "r": {"S": "bc"}}, names)
    assert a != b
    assert key_text({"r": {"S": "c"}, "h": {"S": "ab"}}, names) == a
