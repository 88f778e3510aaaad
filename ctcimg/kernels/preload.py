"""Imported by the forkserver of ``ctcimg batch`` (``set_forkserver_preload``): loads the
kernels that every cartridge uses, whatever its pages' dtype, once, before the workers
fork, so that no worker sets numba up or loads them again (about 0.15 s of every
worker's start). On a first run it compiles them there, once, instead of in every
worker at the same time. The kernels of a page dtype are loaded by the first worker
task that meets it (a dtype the forkserver cannot know in advance).
"""

from __future__ import annotations

from . import tune_numba, warmup

tune_numba()
try:
    warmup.prepare_page_free_kernels()
except Exception:  # the workers then load them themselves, as without the preload
    pass
