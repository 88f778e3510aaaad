"""Kernel warm-up before scoring: complete, and the first-run compile notice."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ctcimg.commands import score as score_command
from ctcimg.io.tiff import StoredFrame
from ctcimg.segment import segment_frame

DEMO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "SIM000001.1.1"

_CHILD = r"""
import json, sys
import numpy as np
from ctcimg import kernels
from ctcimg.commands.score import prepare_kernels
from ctcimg.kernels import warmup
from ctcimg.score import score_cartridge
dtype = np.dtype(sys.argv[1])
warmup.compile_own_half(dtype)
warmup.compile_helper_half(dtype)
halves = kernels.specialisations()
prepare_kernels(dtype)
warmed = kernels.specialisations()
score_cartridge(sys.argv[2]) if sys.argv[2] != "-" else None
print(json.dumps({"halves": halves, "warmed": warmed, "scored": kernels.specialisations()}))
"""


def _specialisations(dtype: str, cartridge: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, dtype, cartridge], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_warm_up_compiles_every_kernel_a_cartridge_uses():
    # a fresh process: the two compile halves hold every specialisation the synthetic
    # frame needs, and scoring the (uint8) demo cartridge needs no other
    counts = _specialisations("uint8", str(DEMO))
    assert counts["halves"] > 10
    assert counts["warmed"] == counts["halves"]
    assert counts["scored"] == counts["warmed"]


def test_warm_up_frame_takes_every_path_for_16_bit_pages():
    counts = _specialisations("uint16", "-")
    assert counts["warmed"] == counts["halves"]
    frame = score_command._warm_up_frame(np.dtype(np.uint16), StoredFrame)
    events = segment_frame(frame, 0.64)
    assert list(events["cluster_size"]) == [1, 2, 2]  # the touching pair was split
    assert np.isfinite(events["cd45_around_nucleus"][0])  # the annulus was measured


_POOL_CHILD = r"""
import json
from ctcimg import batch, kernels
from ctcimg.kernels import warmup

IN_WORKER = ("(__import__('ctcimg.kernels').kernels.specialisations(), "
             "__import__('ctcimg.kernels.threads').kernels.threads._pool is None, "
             "'tifffile' in __import__('sys').modules)")
with batch._pool(1, 1) as pool:
    worker, no_kernel_threads, tifffile = pool.submit(eval, IN_WORKER).result()
before = kernels.specialisations()
warmup.prepare_page_free_kernels()
page_free = kernels.specialisations()
for dtype in ("uint8", "uint16"):  # the dtypes the forkserver found in numba's cache
    if warmup._in_cache(warmup._HELPER_KERNELS + warmup._OWN_KERNELS, dtype):
        warmup.compile_own_half(dtype)
        warmup.compile_helper_half(dtype)
print(json.dumps({"worker": worker, "before": before, "page_free": page_free,
                  "cached": kernels.specialisations(), "no_kernel_threads": no_kernel_threads,
                  "tifffile": tifffile}))
"""


def test_batch_workers_fork_with_the_kernels_loaded():
    # a fresh process, so that its forkserver is started with ctcimg's preload; the demo
    # cartridge scored first, so that numba's cache holds the 8-bit kernels
    subprocess.run([sys.executable, "-c", "from ctcimg.score import score_cartridge; "
                    f"score_cartridge({str(DEMO)!r}, thumbnails=False)"], check=True)
    out = subprocess.run([sys.executable, "-c", _POOL_CHILD], check=True, capture_output=True,
                         text=True).stdout
    counts = json.loads(out)
    assert counts["before"] == 0 and counts["page_free"] > 5
    assert counts["cached"] > counts["page_free"]  # at least the 8-bit kernels
    assert counts["worker"] == counts["cached"]
    assert counts["no_kernel_threads"] and counts["tifffile"]


def _slow_segment(frame, pixel_size_um):
    time.sleep(0.3)
    return {}


def test_notice_while_kernels_compile(monkeypatch, capsys):
    monkeypatch.setattr("ctcimg.segment.segment_frame", _slow_segment)
    monkeypatch.setattr("ctcimg.kernels.compiled_count", lambda: 3)
    monkeypatch.setattr("ctcimg.kernels.warmup.start_helper", lambda dtype: None)
    score_command.prepare_kernels(np.uint8, notice=True)
    err = capsys.readouterr().err
    assert err.startswith("ctcimg: compiling the numba kernels")
    assert err.count("\n") == 1 and " done in 0." in err


def test_no_notice_when_loaded_from_cache_or_not_asked(monkeypatch, capsys):
    monkeypatch.setattr("ctcimg.segment.segment_frame", _slow_segment)
    monkeypatch.setattr("ctcimg.kernels.warmup.start_helper", lambda dtype: None)
    monkeypatch.setattr("ctcimg.kernels.compiled_count", lambda: 0)
    score_command.prepare_kernels(np.uint8, notice=True)
    monkeypatch.setattr("ctcimg.kernels.compiled_count", lambda: 3)
    score_command.prepare_kernels(np.uint8, notice=False)
    assert capsys.readouterr().err == ""


def test_notice_while_a_helper_compiles_even_when_this_process_compiles_nothing(
        monkeypatch, capsys):
    class Helper:
        def wait(self):
            time.sleep(0.3)

    monkeypatch.setattr("ctcimg.kernels.compiled_count", lambda: 0)
    monkeypatch.setattr("ctcimg.kernels.warmup.start_helper", lambda dtype: Helper())
    monkeypatch.setattr("ctcimg.kernels.warmup.compile_own_half", lambda dtype: None)
    monkeypatch.setattr("ctcimg.segment.segment_frame", lambda frame, pixel_size_um: {})
    score_command.prepare_kernels(np.uint8, notice=True)
    err = capsys.readouterr().err
    assert err.startswith("ctcimg: compiling the numba kernels") and " done in 0." in err


_BLAS_CHILD = r"""
import json, sys
import numpy as np
from numba import njit
from ctcimg import kernels
kernels.skip_numba_blas_probe()
loaded = "numba.np.arraymath" in sys.modules
linalg_before = "scipy.linalg" in sys.modules
dot = njit(lambda a, b: np.dot(a, b))(np.ones(3), np.ones(3))  # BLAS still found when used
import scipy.linalg
print(json.dumps({"loaded": loaded, "linalg_before": linalg_before, "dot": float(dot),
                  "det": float(scipy.linalg.det(np.eye(2)))}))
"""


def test_numba_loads_without_importing_scipy_linalg():
    out = subprocess.run([sys.executable, "-c", _BLAS_CHILD], check=True, capture_output=True,
                         text=True).stdout
    assert json.loads(out) == {"loaded": True, "linalg_before": False, "dot": 3.0, "det": 1.0}


def test_the_compile_helper_imports_this_ctcimg_from_any_working_folder(tmp_path,
                                                                       monkeypatch):
    """Started in a folder holding another ``ctcimg`` (a clone of the repository, where the
    README's commands run), the helper still imports the caller's package, so the kernels
    it compiles land in the cache the caller reads."""
    import ctcimg
    from ctcimg.kernels import warmup

    decoy = tmp_path / "ctcimg"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    code = "import ctcimg, pathlib; print(pathlib.Path(ctcimg.__file__).resolve())"
    imported = subprocess.run([sys.executable, "-c", code], **warmup.helper_python(),
                              capture_output=True, text=True, check=True).stdout.strip()
    assert imported == str(Path(ctcimg.__file__).resolve())
    # without it, the folder's own package wins
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env=warmup.helper_python()["env"]).stdout.strip()
    assert plain == str((decoy / "__init__.py").resolve())
