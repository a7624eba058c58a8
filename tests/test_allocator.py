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



def test_glibc_alone_keeps_the_heap():
    """Without torch's huge pages (THP_MEM_ALLOC_ENABLE=0) glibc's part alone still serves the blocks
    from kept pages: its trim threshold is the largest size, not 0 (an int -1, which glibc widens;
    2**62 passed as a size_t read as 0 and trimmed the heap after every block)."""
    own, kept = _probe("own", **{THP_ENV: "0"}), _probe("keep", **{THP_ENV: "0"})
    assert kept["faults"] < own["faults"] / 2, (kept, own)
    assert "huge pages" not in kept["said"] and kept["thp"] == "0"


def test_torch_imported_first_gets_no_huge_pages_and_says_so():
    code = ("import json, os, torch\nfrom gzmorph.allocator import keep_freed_memory\n"
            f"print(json.dumps([keep_freed_memory(), os.environ.get('{THP_ENV}')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    said, thp = json.loads(out.stdout.strip().splitlines()[-1])
    assert "glibc malloc keeps freed blocks" in said and f"imported before {THP_ENV}" in said and thp is None
