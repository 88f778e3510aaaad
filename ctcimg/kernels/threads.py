"""Run a serial, GIL-free numba kernel over parts of its work in a few threads.

The kernels are compiled serial (``nogil=True``, no ``parallel=True``): numba's parallel
compilation took two thirds of a first run's 30 s of compiling, and its OpenMP barrier
spins badly when the cores are shared. A kernel that splits over rows or objects takes
the range ``lo .. hi`` it handles; :func:`run_parts` calls it once per thread on disjoint
ranges, so the result is the same as one serial call over the whole range.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def thread_count() -> int:
    """Threads a kernel may use: numba's thread setting (``numba.set_num_threads``, which
    batch workers cap, or ``NUMBA_NUM_THREADS``), read without starting numba's own pool."""
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", False):
        return int(numba.get_num_threads())
    return int(numba.config.NUMBA_NUM_THREADS)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctcimg-kernel")
            _pool_pid = os.getpid()
        return _pool


def run_parts(kernel: Callable, n: int, *args, interleave: bool = False) -> None:
    """Call ``kernel(lo, hi, step, *args)`` on ``thread_count()`` parts of ``range(n)``.

    Contiguous parts ``lo .. hi`` (``step`` 1) by default; with ``interleave`` every
    thread takes every ``k``-th item from its own start (``lo = i``, ``hi = n``,
    ``step = k``), which balances work that is uneven along the range (objects of
    very different sizes). The calling thread runs the first part itself.
    """
    parts = max(1, min(thread_count(), n))
    if parts == 1:
        kernel(0, n, 1, *args)
        return
    if interleave:
        ranges = [(i, n, parts) for i in range(parts)]
    else:
        edges = [n * i // parts for i in range(parts + 1)]
        ranges = [(edges[i], edges[i + 1], 1) for i in range(parts)]
    pool = _executor(parts - 1)
    futures = [pool.submit(kernel, *r, *args) for r in ranges[1:]]
    kernel(*ranges[0], *args)
    for future in futures:
        future.result()
