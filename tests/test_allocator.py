"""gzmorph.allocator: a distill job keeps the memory it frees (each case in a fresh process, since
the setting lasts for the life of the process)."""

import json
import subprocess
import sys

import pytest

from gzmorph.allocator import THP_ENV, _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="gzmorph.allocator sets glibc's malloc; no glibc here")

PROBE = r"""
import json, os, resource, sys
from gzmorph.allocator import keep_freed_memory
said = keep_freed_memory() if sys.argv[1] == "keep" else ""
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # warm-up: the heap grows to its steady state (how far varies from run to run)
    torch.ones(16 * 2**20).sum()  # 64 MiB, above glibc's largest mmap threshold
before = faults()
for _ in range(10):
    torch.ones(16 * 2**20).sum()
print(json.dumps({"faults": faults() - before, "said": said, "thp": os.environ.get("%s")}))
""" % THP_ENV


def _probe(mode, **env):
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", **env}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_not_faulted_in_again():
    """Ten 64 MiB tensors, one after the other: glibc's own allocator maps and faults each one in
    afresh (16,384 pages each); kept memory serves them from the first one's pages."""
    own, kept = _probe("own"), _probe("keep")
    assert own["faults"] > 10 * 16 * 2**20 // 4096 // 2, own
    assert kept["faults"] < own["faults"] / 20, (kept, own)
    assert "glibc malloc keeps freed blocks" in kept["said"] and "huge pages" in kept["said"]
    assert kept["thp"] == "1" and own["thp"] is None



GLIBC_PROBE = r"""
import ctypes, json, resource, sys
from gzmorph.allocator import keep_freed_memory
said = keep_freed_memory() if sys.argv[1] == "keep" else ""
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def block():  # 64 MiB written and freed, with nothing allocated after it: it ends at the heap's top
    p = libc.malloc(64 * 2**20); libc.memset(p, 1, 64 * 2**20); libc.free(p)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block()
before = faults()
for _ in range(10):
    block()
print(json.dumps({"faults": faults() - before, "said": said}))
"""


def test_glibc_alone_keeps_the_heap():
    """glibc's part alone, on glibc's own malloc and free (no torch): a freed block at the top of the
    heap stays in the process.  The trim threshold is the largest size, not 0 (an int -1, which glibc
    widens; 2**62 passed as a size_t was read as 0 and trimmed the heap after every block: 163,520
    faults here, as many as glibc's own mmap).

    Through torch the same check depended on the heap's layout: a small tensor left beside a freed
    block kept it off the top, so a trim threshold of 0 went unseen in most runs, and even the right
    setting took 32,768 to 131,072 faults after one warm-up block while the heap grew, which once
    failed CI.  Plain malloc and free lay the heap out the same way every run."""
    out = [subprocess.run([sys.executable, "-c", GLIBC_PROBE, mode], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"}).stdout for mode in ("own", "keep")]
    own, kept = (json.loads(o.strip().splitlines()[-1]) for o in out)
    assert own["faults"] > 10 * 16 * 2**20 // 4096 // 2, own
    assert kept["faults"] < own["faults"] / 20, (kept, own)
    assert "glibc malloc keeps freed blocks" in kept["said"]


def test_torch_imported_first_gets_no_huge_pages_and_says_so():
    code = ("import json, os, torch\nfrom gzmorph.allocator import keep_freed_memory\n"
            f"print(json.dumps([keep_freed_memory(), os.environ.get('{THP_ENV}')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    said, thp = json.loads(out.stdout.strip().splitlines()[-1])
    assert "glibc malloc keeps freed blocks" in said and f"imported before {THP_ENV}" in said and thp is None
