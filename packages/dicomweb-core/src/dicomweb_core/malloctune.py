"""glibc allocator settings for the serving processes.

A STOW body arrives in socket reads of up to a few hundred KiB, each a new ``bytes`` object.
With glibc's defaults a buffer that size may be served by ``mmap`` (threshold 128 KiB until
it adapts) and the heap top is returned to the kernel above 128 KiB free, so the same memory
is unmapped and faulted in again, zeroed page by page, for every chunk. Raising both
thresholds keeps those buffers in the heap for reuse: measured with
``benchmarks/bench_stow_cpu.py`` and the side-by-side run, fewer page faults per stored
instance (see benchmarks/RESULTS.md). At most ``TRIM_THRESHOLD`` bytes of freed memory stay
with the process. Nothing changes where the C library is not glibc, or when the operator set
the ``MALLOC_*`` variables themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("dicomweb.malloc")

#: mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 8 << 20


def tune_allocator() -> bool:
    """Set the glibc thresholds once per process; True when they were set."""
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("allocator thresholds %s", "set" if ok else "left at the defaults")
    return ok
