"""Performance settings: keep freed memory (the allocator), and fused elementwise kernels (opt-in).

Keep freed memory instead of giving it back to the OS
-----------------------------------------------------

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

Fused elementwise kernels
-------------------------
The moment layers' rectified Gaussian and Clark's max are chains of some twenty
elementwise operations; eager PyTorch runs each as its own pass over memory.
:func:`fusable` marks such a pure tensor function; with fused kernels on
(:func:`use_fused_kernels`, or ``COMPANION_FUSED=1`` in the environment) it runs
compiled by ``torch.compile`` (inductor: one C++ loop for the whole chain, which
needs a C++ compiler at run time; the first call of each kernel compiles for a few
seconds, later processes reuse inductor's on-disk cache).  Off by default: eager is
the reference, and fused results agree with it to float round-off, not bit for bit
(the order of operations inside a fused loop differs).  Where compiling fails (no
compiler), a warning says why and the eager function runs instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import warnings

FUSED_ENV = "COMPANION_FUSED"
_fused = {"on": os.environ.get(FUSED_ENV, "") == "1", "broken": None}

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


def use_fused_kernels(on: bool = True) -> None:
    """Turn fused (compiled) elementwise kernels on or off for this process (see the module docstring)."""
    if not isinstance(on, bool):
        raise TypeError(f"on must be True or False, got {type(on).__name__}")
    _fused["on"] = on


def fused_kernels_enabled() -> bool:
    """True when :func:`fusable` functions run compiled (on, and compiling has not failed)."""
    return _fused["on"] and _fused["broken"] is None


def fused_kernels_failure() -> str | None:
    """Why compiling failed in this process (the error's type and first line), or None."""
    return _fused["broken"]


@contextlib.contextmanager
def fused_kernels(on: bool = True):
    """``with fused_kernels():`` — :func:`use_fused_kernels` for a block, restoring the previous setting."""
    previous = _fused["on"]
    use_fused_kernels(on)
    try:
        yield
    finally:
        _fused["on"] = previous


def fusable(function):
    """Decorator for a pure elementwise tensor function (no data-dependent Python control flow).

    Calls ``function`` eagerly, or, with fused kernels on, its ``torch.compile`` (compiled at
    the first such call, shapes symbolic so that batch sizes and strides do not recompile).
    """
    compiled = None

    @functools.wraps(function)
    def wrapper(*args):
        nonlocal compiled
        if not fused_kernels_enabled():
            return function(*args)
        if compiled is None:
            import torch

            compiled = torch.compile(function, dynamic=True, fullgraph=True)
        try:
            return compiled(*args)
        except Exception as error:
            if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            result = function(*args)  # an error of the function itself is raised here, as without fusion
            _fused["broken"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            warnings.warn(f"fused kernels are off: compiling {function.__qualname__} failed ({_fused['broken']}); "
                          "running the eager functions instead", RuntimeWarning, stacklevel=2)
            return result

    wrapper.eager = function
    return wrapper
