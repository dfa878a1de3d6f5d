"""The GC threshold is raised while pages are parsed, and always put back."""

from __future__ import annotations

import gc

import pytest

from alternator_migrator.gcpause import GC_YOUNG_THRESHOLD, young_collections_rarer


def test_threshold_raised_inside_and_restored_after_even_on_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), young_collections_rarer():
        assert gc.get_threshold()[0] == max(before[0], GC_YOUNG_THRESHOLD)
        assert gc.get_threshold()[1:] == before[1:]
        raise RuntimeError("a failed page")
    assert gc.get_threshold() == before


def test_a_higher_threshold_set_by_the_caller_is_kept() -> None:
    before = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD * 2, *before[1:])
    try:
        with young_collections_rarer():
            assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)
