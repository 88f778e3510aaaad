"""Process-wide tuning of the C allocator for scoring processes (the CLI and batch workers).

Scoring allocates and frees a few frame-sized arrays per frame. glibc's malloc serves
blocks that large with ``mmap`` and unmaps them on ``free``; with numba's worker threads
running, each unmap flushes the other cores' TLBs, and the next frame maps fresh pages
again. Measured on a 175-frame cartridge: a fresh ``ctcimg score`` process took 4.3 s
with the default policy and 3.4 s with freed blocks kept for reuse. The process then
stays at its peak of a few frames instead of handing memory back between frames.

Only processes ctcimg owns call this; ``import ctcimg`` alone changes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap (glibc's ceiling on 64-bit: 32 MiB).
MMAP_THRESHOLD_BYTES = 32 << 20
#: Free memory at the top of the heap is returned to the OS only beyond this.
TRIM_THRESHOLD_BYTES = 256 << 20

_done = False


def keep_freed_memory() -> bool:
    """Let malloc reuse freed frame-sized blocks instead of unmapping them.

    Returns True when the setting took effect (glibc), False elsewhere (no-op). Calling it
    again does nothing.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _done
