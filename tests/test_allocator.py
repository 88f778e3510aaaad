"""keep_freed_memory: takes effect on glibc, is idempotent, and scoring still works after it."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_keep_freed_memory_in_a_fresh_process():
    code = ("from ctcimg.allocator import keep_freed_memory as k; "
            "import numpy as np; first = k(); second = k(); "
            "a = np.ones((1036, 1384), np.float32); del a; "
            "print(first, second)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    if not sys.platform.startswith("linux"):
        assert out == ["False", "False"]
        return
    import ctypes.util

    if "musl" in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc")
    assert out == ["True", "True"]
