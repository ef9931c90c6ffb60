"""Freed memory kept in the process for reuse (glibc), for jobs that allocate the same large
blocks at every step.

glibc serves each block above its mmap threshold (adaptive, but never past 32 MiB) with fresh
pages from the kernel and gives them back on ``free``. A training step allocates its batch's
pre-activations (4,096 tokens x n_latents float32: 32 MiB at 2,048 latents), the AuxK copy of
them and their gradients' buffers anew every step, so the kernel faults in and zeroes that memory
each time. `reuse_freed_memory` makes glibc serve every block from the heap (``M_MMAP_MAX`` 0)
and keep up to 1 GiB of free memory at its top (``M_TRIM_THRESHOLD``), so the blocks of one step
are reused by the next. It changes the calling process only, from then on, and no arithmetic;
a no-op where the C library is not glibc. `benchmarks/malloc_reuse.py` measures it.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
"""glibc's ``mallopt`` parameter numbers (malloc.h)."""


def is_glibc() -> bool:
    """Whether the running C library is glibc."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc ")
    except (AttributeError, ValueError, OSError):
        return False


def reuse_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Serve every allocation of this process from glibc's heap and keep up to
    ``trim_threshold`` bytes of freed memory at its top. Returns whether glibc took both."""
    if not is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
