"""Keep freed page buffers in the process instead of giving them back to the kernel.

A Scan or GetRecords page is read into one ~1 MB buffer that lives until its items are decoded
or written. glibc's malloc serves a block that size from mmap, or from the top of its heap once
its dynamic threshold has grown; freed, the block goes back to the kernel (munmap, or the heap
top is trimmed past twice that threshold), and the next page faults every 4 KiB of it in again,
zeroed by the kernel. On the wide-stream bench that was ~70,000 page faults per 192,000 records
and a third of the replay's system time. With the mmap threshold at glibc's maximum and the trim
threshold above the pages in flight, freed pages are reused from the heap: ~25,000 faults, about
the process's own size, for 10-25 MiB more peak RSS (the large blocks now share the heap).

This is process-wide and glibc's settings cannot be read back, so it is set once and kept; a
process that runs the migrator's commands is the migrator. Without glibc it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

M_TRIM_THRESHOLD = -1  # glibc's mallopt() parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for it on 64-bit
TRIM_THRESHOLD = 64 << 20

_lock = threading.Lock()
_done = False


def keep_freed_pages() -> bool:
    """Set malloc's thresholds once for the process; True when glibc took them."""
    global _done
    with _lock:
        if _done:
            return True
        mallopt = None
        with contextlib.suppress(OSError, AttributeError):
            mallopt = ctypes.CDLL(None).mallopt
        if mallopt is None:
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        # mallopt answers 1 on success.
        _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
        return _done
