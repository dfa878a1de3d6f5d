"""Fewer young collections of Python's cyclic garbage collector while pages of items are parsed.

Each Scan or GetRecords page is parsed into about ten dicts per item that die with the page, by
reference count. At Python's default threshold (700 allocations) the GC collects many times while
one page is being built: it walks the page's tree, promotes it to the older generations, and
their full collections walk it again. That was a quarter of validate's client CPU and more than
half of the replay's. With a young collection only every GC_YOUNG_THRESHOLD allocations, a page
dies before the collector looks at it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

GC_YOUNG_THRESHOLD = 200_000


@contextlib.contextmanager
def young_collections_rarer() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
