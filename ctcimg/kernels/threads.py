"""Run a serial, GIL-free numba kernel in a few threads that take its work item by item.

The kernels are compiled serial (``nogil=True``, no ``parallel=True``): numba's parallel
compilation took two thirds of a first run's 30 s of compiling, and its OpenMP barrier
spins badly when the cores are shared. A kernel that splits over rows or objects takes a
*work counter* (:func:`new_work`) and claims the next item from it (:func:`claim`, one
atomic addition) until none is left; :func:`run_parts` calls it in every thread at once.
Whoever is running takes the next item, so a thread that the machine's other load keeps
off a core holds up nobody: the calling thread then does all the work itself, and only
waits for a helper that is in the middle of an item. Each item writes its own part of
the outputs, so the result is the same as one serial call, whichever thread did what.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()
_this_thread = threading.local()


def thread_count() -> int:
    """Threads a kernel may use: numba's thread setting (``numba.set_num_threads``, which
    batch workers cap, or ``NUMBA_NUM_THREADS``), read without starting numba's own pool;
    1 in a thread that :func:`kernels_in_this_thread_only` marked."""
    import numba
    from numba.np.ufunc import parallel

    if getattr(_this_thread, "alone", False):
        return 1
    if getattr(parallel, "_is_initialized", False):
        return int(numba.get_num_threads())
    return int(numba.config.NUMBA_NUM_THREADS)


def kernels_in_this_thread_only() -> None:
    """From now on, kernels called from the calling thread run in it alone: for the threads
    of a pool that are each one of the workers already (scoring frames side by side)."""
    _this_thread.alone = True


@contextmanager
def kernels_in_this_thread_for_now() -> Iterator[None]:
    """Within the block, kernels called from the calling thread run in it alone (as
    :func:`kernels_in_this_thread_only`); afterwards as before: for a process that must
    not start threads, such as the batch forkserver loading kernels before it forks."""
    before = getattr(_this_thread, "alone", False)
    _this_thread.alone = True
    try:
        yield
    finally:
        _this_thread.alone = before


@intrinsic
def _fetch_add(typingctx, counter, amount):
    """Atomically ``counter[0] += amount``; the value before (int64 array, int64)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, args[1], "seq_cst")

    return types.int64(counter, types.int64), codegen


@njit(cache=True, nogil=True)
def claim(work):
    """The next item of a work counter (:func:`new_work`), or ``work[1]`` (the item count)
    or more when every item is taken."""
    return _fetch_add(work, np.int64(1))


def new_work(n: int) -> np.ndarray:
    """A work counter for items ``0 .. n - 1``: int64 ``[next item, n]``."""
    return np.array([0, n], dtype=np.int64)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctcimg-kernel")
            _pool_pid = os.getpid()
        return _pool


def run_parts(kernel: Callable, n: int, *args) -> None:
    """Call ``kernel(work, *args)`` in ``thread_count()`` threads sharing one work counter
    of ``n`` items (the calling thread is one of them); return when every item is done.

    A helper that has not started when the calling thread runs out of items is cancelled
    rather than waited for.
    """
    work = new_work(n)
    threads = max(1, min(thread_count(), n))
    if threads == 1:
        kernel(work, *args)
        return
    pool = _executor(threads - 1)
    helpers = [pool.submit(kernel, work, *args) for _ in range(threads - 1)]
    kernel(work, *args)
    for helper in helpers:
        if not helper.cancel():  # started: it finishes the item it holds, then finds none
            helper.result()
