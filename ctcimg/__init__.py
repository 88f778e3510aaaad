"""ctcimg: HER2 scoring of CellSearch circulating tumour cells, and cohort statistics.

The public API is imported lazily so ``import ctcimg`` and ``ctcimg --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_LAZY = {
    "read_cartridge": "ctcimg.io.cellsearch",
    "Cartridge": "ctcimg.io.cellsearch",
    "score_cartridge": "ctcimg.score",
    "CartridgeResult": "ctcimg.results",
    "ScoringConfig": "ctcimg.config",
    "load_config": "ctcimg.config",
    "batch_score": "ctcimg.batch",
    "simulate_cartridge": "ctcimg.simulate",
    "simulate_cohort": "ctcimg.simulate",
    "CtcimgError": "ctcimg.errors",
    "CartridgeError": "ctcimg.errors",
    "InputError": "ctcimg.errors",
}

__all__ = ["__version__", "stats", *_LAZY]


def __getattr__(name: str):
    if name == "stats":
        return importlib.import_module("ctcimg.stats")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctcimg' has no attribute {name!r}")
