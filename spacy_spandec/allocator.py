"""glibc's malloc, pinned so that RSS stays flat while a corpus streams through.

glibc raises its mmap threshold each time a block above it is freed (up to
32 MiB on 64-bit). From then on, blocks of that size come from the heap, and
the heap keeps what is freed. Streaming docs through a transformer allocates
such blocks in ever different sizes (each batch pads to its own length), so
RSS grows without end although the memory in use stays flat: +286 MB after
20,000 short docs on the tests' tiny-BERT pipeline, ~14 KB a doc. Setting the
threshold explicitly turns the adjustment off; at glibc's own starting value,
128 KiB, the same stream grows RSS by 4 MB (tests/test_memory.py,
results/memory/).

`pin_mmap_threshold()` runs once when spacy_spandec is imported (spacy.load
does that through the entry points). It does nothing off glibc, when the
environment already sets a MALLOC_*_ tuning variable, or when
SPACY_SPANDEC_MALLOPT=0.
"""

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc malloc.h
MMAP_THRESHOLD = 128 * 1024
USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; returns whether it was set."""
    if not sys.platform.startswith("linux") or os.environ.get("SPACY_SPANDEC_MALLOPT", "1") == "0":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
