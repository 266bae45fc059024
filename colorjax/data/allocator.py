"""Keep freed heap memory in data processes for reuse instead of returning it to the OS.

Each 256 px example makes a few arrays of 0.2-1 MB (decoded pixels, linear RGB planes,
Lab) and a batch is tens of MB. With glibc's defaults, arrays that large are mmap'ed and
unmapped on free, or trimmed off the heap top, so every image page-faults its memory in
again: in ``benchmarks/pipeline.py`` that is ~0.7 ms of the ~4.5 ms an image costs at
256 px. The same reason input pipelines elsewhere are run under tcmalloc or jemalloc;
here two ``mallopt`` settings suffice. The cost is that a data process keeps its peak
heap (a few batches) mapped.
"""

from __future__ import annotations

import ctypes
import sys

# glibc <malloc.h>: mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's upper bound for M_MMAP_THRESHOLD on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB):
# anything smaller than this comes from the reusable heap.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20

_applied: bool | None = None  # per process: None = not tried yet


def keep_freed_memory() -> bool:
    """Apply the settings once in this process (a no-op off glibc); True if in effect."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):  # musl and other libcs: keep their defaults
                pass
    return _applied
