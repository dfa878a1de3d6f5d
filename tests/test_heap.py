"""Freed page buffers stay in the process: the next page reuses them without page faults."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

# In a fresh interpreter, so that neither this process's settings nor its heap count: 16 pages
# of 1 MiB built and freed 20 times, the way a round's GetRecords pages come and go.
PAGES = """
import resource, sys
from alternator_migrator.heap import keep_freed_pages
if sys.argv[1] == "keep":
    assert keep_freed_pages() and keep_freed_pages()
def round_of_pages():
    pages = [bytearray(1 << 20) for _ in range(16)]
    del pages
round_of_pages()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_of_pages()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PAGES, mode], check=True, capture_output=True, text=True
    )
    return int(out.stdout)


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallopt"), reason="glibc's mallopt is not in this process"
)
def test_freed_pages_are_reused_without_faulting_them_in_again() -> None:
    pages_in_a_round = 16 * (1 << 20) // 4096
    assert faults("default") > pages_in_a_round  # glibc alone gives them back to the kernel
    assert faults("keep") < pages_in_a_round // 10
