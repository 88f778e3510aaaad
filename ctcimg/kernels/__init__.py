"""numba kernels (private): background, threshold, label, refine, split, measure, annulus,
moments."""

from __future__ import annotations

import sys


def _dispatchers() -> list:
    from numba.core.registry import CPUDispatcher

    modules = [module for name, module in list(sys.modules.items())
               if name.startswith(f"{__name__}.") and module is not None]
    return [obj for module in modules for obj in vars(module).values()
            if isinstance(obj, CPUDispatcher)]


def compiled_count() -> int:
    """How many kernel specialisations this process has compiled rather than loaded from
    numba's cache (counted as each compilation starts)."""
    return sum(sum(d.stats.cache_misses.values()) for d in _dispatchers())


def specialisations() -> int:
    """How many kernel specialisations this process holds, compiled or loaded."""
    return sum(len(d.signatures) for d in _dispatchers())


def tune_numba() -> None:
    """Settings for processes ctcimg owns (the ``ctcimg`` command, batch workers, the
    compile helper), made before their first kernel is loaded or compiled: LLVM
    optimisation level 2 unless ``NUMBA_OPT`` says otherwise (the kernels run as fast as
    at numba's default 3 and compile 10 % faster; helper processes inherit it), and
    :func:`skip_numba_blas_probe`."""
    import os

    os.environ.setdefault("NUMBA_OPT", "2")  # numba rereads its environment to compile
    skip_numba_blas_probe()


def skip_numba_blas_probe() -> None:
    """Load numba's implementations without its probe for scipy's BLAS (see
    :func:`tune_numba`).

    Before it can load even a cached kernel, numba imports its NumPy implementations, and
    one of them imports ``scipy.linalg`` (0.17 s of a ~0.5 s start) only to learn whether
    ``np.correlate`` and ``np.convolve`` may call BLAS. The kernels use neither; with the
    probe answered "no", those two would use a plain loop in this process. Anything else
    (``np.dot`` …) still finds scipy when it is compiled, and ``scipy.linalg`` imports
    normally afterwards. Does nothing once numba has loaded them.
    """
    probe = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or probe in sys.modules:
        return
    sys.modules[probe] = None  # type: ignore[assignment]  # makes the import fail at once
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules[probe]
