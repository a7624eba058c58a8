"""Keep freed memory in the process: the CPU allocator setting of distillation (``distill.keep_freed_memory``).

A distillation iteration on the CPU allocates and frees gigabytes of activations.  glibc's malloc
serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it
with ``munmap`` when freed, and it trims its heap back to the OS as well.  The next block is then
faulted in again, 4 KiB at a time, each page zeroed by the kernel: on 2 cores at width 128, N = 10,
one ``matching_loss`` took 3.7 million minor faults and 6.5 s of system time per iteration, in
8.9 s of wall time (docs/results.md).

:func:`keep_freed_memory` keeps freed blocks in the process for the next ones:

* glibc: ``mallopt(M_MMAP_MAX, 0)`` (no block by mmap; large ones come from the heap) and
  ``mallopt(M_TRIM_THRESHOLD, -1)`` (glibc reads the int -1 as the largest size: the heap is never
  trimmed);
* torch: ``THP_MEM_ALLOC_ENABLE=1``, its own switch that puts blocks of 2 MiB and more in
  transparent huge pages, 512 pages to a fault.  torch reads it at its first allocation, so it
  takes effect only when set before ``import torch``; a run that imports torch first gets the
  glibc part only, and the returned description says so.

The price: the process keeps its peak, and a fragmented heap makes that peak larger (the log and
docs/results.md give the figures).  Elsewhere than glibc there is nothing to set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

THP_ENV = "THP_MEM_ALLOC_ENABLE"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
NEVER_TRIM = -1  # mallopt takes an int; glibc converts it to size_t, SIZE_MAX


def _glibc():
    """glibc's C library, or None (another libc, another OS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> str:
    """Keep the memory that tensors free in this process for the next ones (module docstring);
    returns what was set, for the log."""
    done = []
    libc = _glibc()
    if libc is not None and libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1:
        done.append("glibc malloc keeps freed blocks (no mmap, no trim)")
    if "torch" in sys.modules and os.environ.get(THP_ENV) != "1":
        done.append(f"torch was imported before {THP_ENV} could be set: no transparent huge pages")
    else:
        os.environ.setdefault(THP_ENV, "1")
        if os.environ[THP_ENV] == "1":
            done.append("torch allocates large blocks in transparent huge pages")
    return "; ".join(done) or "nothing to set on this platform"
