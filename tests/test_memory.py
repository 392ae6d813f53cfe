"""The allocator setting bertkit's commands make: large freed blocks stay in the heap for reuse.

What this saves (page faults of repeated batches) depends on the order of a workload's allocations,
so it is measured in the module's docstring, not asserted here; the test checks the setting itself.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

# Bytes glibc holds in mmap'd chunks (mallinfo2's hblkhd) grown by one 40 MiB tensor. glibc's
# default threshold never rises above 32 MiB, so without the setting the block is always mmap'd
# (and unmapped on free, to be faulted in again by the next batch).
MAPPED_BYTES_OF_A_LARGE_TENSOR = """
import ctypes, sys, torch
from bertkit.memory import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
tensor = torch.ones(40 << 18)
print(libc.mallinfo2().hblkhd - before)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")  # glibc 2.33 and later
    except OSError:
        return False


def _mapped_bytes(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", MAPPED_BYTES_OF_A_LARGE_TENSOR, mode], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    return int(run.stdout)


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc's mallopt and mallinfo2")
def test_large_blocks_come_from_the_heap_once_freed_memory_is_kept() -> None:
    assert _mapped_bytes("default") >= 40 << 20
    assert _mapped_bytes("keep") == 0
