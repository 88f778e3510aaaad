"""numba kernels (private): background, threshold, label, refine, split, measure, annulus."""

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
