"""protsae.malloc: after `reuse_freed_memory` a large block comes from glibc's heap, not a fresh
mmap, and freeing it keeps it for the next one."""

import subprocess
import sys

import pytest

from protsae import malloc

PROBE = """
import sys, torch
from protsae.malloc import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def heap_mb():
    line = next(line for line in open("/proc/self/maps") if "[heap]" in line)
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    return (hi - lo) >> 20
t = torch.empty(75_000_000); t.fill_(1.0)  # 300 MB
during = heap_mb()
del t
print(during, heap_mb())
"""


@pytest.mark.skipif(not malloc.is_glibc(), reason="glibc only")
def test_a_large_block_comes_from_the_heap_and_stays_there_for_reuse():
    def heap(mode):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
        return [int(x) for x in out.split()]

    during, after = heap("default")
    assert during < 300  # glibc's default: a fresh mmap for a 300 MB block
    during, after = heap("reuse")
    assert during >= 300 and after >= 300  # from the heap, and kept (under the 1 GiB trim threshold)


def test_off_glibc_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(malloc.os, "confstr", lambda name: "musl 1.2")
    assert not malloc.is_glibc() and malloc.reuse_freed_memory() is False
