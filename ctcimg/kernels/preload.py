"""Imported by the forkserver of ``ctcimg batch`` (``set_forkserver_preload``): loads the
kernels that every cartridge uses, whatever its pages' dtype, once, before the workers
fork, so that no worker sets numba up or loads them again (about 0.15 s of every
worker's start). On a first run it compiles them there, once, instead of in every
worker at the same time. The kernels of the 8- and 16-bit page dtypes are loaded too
when numba's cache holds them (0.1 s more of every worker's first task otherwise); an
uncached dtype is compiled by the first worker task that meets it, so that a first run
compiles only the dtype its pages have.
"""

from __future__ import annotations

from . import tune_numba, warmup

tune_numba()
try:
    warmup.prepare_page_free_kernels()
    warmup.load_cached_page_kernels()
except Exception:  # the workers then load them themselves, as without the preload
    pass
