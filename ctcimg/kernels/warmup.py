"""Compile the kernels of one page dtype in two processes at once, on a first run.

numba compiles one function at a time per process (a global compiler lock), so a first
run on two cores compiles half of the kernels in a helper process while the calling
process compiles the other half; both write numba's cache, and the caller then loads
the helper's half from it. Each half is reached by calling the kernels on tiny inputs
of exactly the types :func:`ctcimg.segment.segment_frame` passes (a test checks that a
warmed-up process compiles nothing more when it scores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import (
    annulus,
    background,
    label,
    measure,
    moments,
    refine,
    split,
    text,
    threshold,
    thumbnails,
)

_SIDE = 24  # pixels of the tiny frame


def _inputs(dtype: np.dtype) -> dict:
    pages = tuple(np.full((_SIDE, _SIDE), 3, dtype=dtype) for _ in range(4))
    affine = np.zeros((3, 4), dtype=np.float32)
    affine[0] = 1.0
    affine[2] = -np.inf
    edges = background.tile_edges(_SIDE, 48)
    ry0, rwy = background.interp_weights(_SIDE, edges)
    labels = np.zeros((_SIDE, _SIDE), dtype=np.int32)
    labels[4:10, 4:10] = 1
    mask = np.zeros((_SIDE, _SIDE), dtype=np.uint8)
    mask[4:10, 4:10] = threshold.DAPI_BIT | threshold.CK_BIT | threshold.DETECT_BIT
    win = np.array([[0, 0, 0, 0], [4, 4, 10, 10]], dtype=np.int64)
    grid = np.zeros((len(edges) - 1, len(edges) - 1), dtype=np.float64)
    return {"pages": pages, "affine": affine, "edges": edges, "ry0": ry0, "rwy": rwy,
            "labels": labels, "mask": mask, "win": win, "grid": grid}


def compile_helper_half(dtype: np.dtype) -> None:
    """The helper's half: refinement, measurement, the CD45 annulus and the focus moments'
    weights (about half of the compile time, the helper's start included)."""
    v = _inputs(np.dtype(dtype))
    page, pmap = v["pages"][0], np.ascontiguousarray(v["affine"][:, 0])
    colgrids = threshold.column_grid(np.zeros((4, *v["grid"].shape)), v["ry0"], v["rwy"],
                                     np.float64)
    refine.refine_channel(page, pmap, threshold.DAPI_BIT, v["labels"], v["mask"].copy(),
                          v["win"], v["grid"], v["ry0"], v["rwy"], v["ry0"], v["rwy"], 40.0,
                          0.4, 4, True, True)
    measure.measure_objects(v["pages"], v["affine"], v["labels"], v["mask"], v["win"], colgrids,
                            v["ry0"], v["rwy"], 3, 4095.0, measure.PERIMETER_WEIGHTS, 20000)
    annulus.nucleus_annulus_quantile(page, pmap, v["labels"], v["mask"], v["win"],
                                     np.array([1], dtype=np.int64), colgrids[2], v["ry0"],
                                     v["rwy"], 2, 0.25, 6, 0.9)
    offsets = np.zeros(1, dtype=np.int64)
    one = np.array([_SIDE // 2], dtype=np.int64)
    moments.window_weights(page, pmap, v["labels"], one, one, one, offsets, offsets, offsets,
                           offsets, 0.5, 0.5, np.zeros((1, 1), dtype=np.float32))


def compile_own_half(dtype: np.dtype) -> None:
    """The caller's half: background, detection, thumbnails, labelling, splitting,
    trimming, and the result table's text."""
    v = _inputs(np.dtype(dtype))
    pages, edges, ry0, rwy = v["pages"], v["edges"], v["ry0"], v["rwy"]
    background.tile_stats(pages, v["affine"], edges, edges, 8, 0.3, 2, 2)
    pmap = np.ascontiguousarray(v["affine"][:, 0])
    colgrid = np.zeros((v["grid"].shape[0], _SIDE), dtype=np.float32)
    threshold.foreground_mask(pages[0], pages[1], pmap, pmap, colgrid, colgrid, ry0, rwy, 40.0,
                              40.0, True)
    corner = np.zeros(1, dtype=np.int64)
    thumbnails.inside_thumbnails(pages, v["affine"], corner, corner, 8,
                                 np.ones(4, dtype=np.float32),
                                 np.zeros((1, 4, 8, 8), dtype=np.uint8))
    prepare_page_free_kernels()


def prepare_page_free_kernels() -> None:
    """Load (compiling when not cached) the kernels whose types do not depend on the pages'
    dtype: the column grid, labelling, the measurement of huge objects, splitting, trimming,
    the cartridge-edge profiles and the result table's text.
    The first kernel a process loads also sets numba itself up (its typing and lowering
    registries: about as long as loading all the others), which is why the batch
    forkserver does this once before its workers fork (:mod:`.preload`). None of these
    kernels starts a thread."""
    v = _inputs(np.dtype(np.uint8))
    threshold.column_grid(np.zeros((2, *v["grid"].shape)), v["ry0"], v["rwy"])
    runs = np.zeros(_SIDE + 1, dtype=np.int64)
    runs[5:11] = 1  # rows 4-9 of the mask: one run each
    label_runs = label.label_mask(v["mask"], runs, return_runs=True)[4]
    measure.measure_unmeasured(label_runs, v["mask"], v["win"], np.array([1], dtype=np.int64),
                               np.zeros((2, measure.NRAW)))
    split.count_nuclei(v["labels"], v["mask"], v["win"], 1, 12)
    split.objects_with_bit(v["labels"], v["mask"], v["win"], np.array([1], dtype=np.int64),
                           threshold.CK_BIT)
    split.split_objects(v["labels"].copy(), v["mask"], v["win"], np.array([1], dtype=np.int64),
                        np.array([2], dtype=np.int64), 12)
    refine.trim_objects(v["labels"].copy(), v["mask"], v["win"])
    background.row_medians(np.zeros((2, 3), dtype=np.float32))  # cartridge-edge profiles
    _compile_text()


def _compile_text() -> None:
    """The kernels that write events.csv (:func:`ctcimg.results._csv_bytes`), with its types."""
    fields = np.zeros((2, text.INTEGER_WIDTH), dtype=np.uint8)
    lengths = np.zeros(2, dtype=np.int64)
    text.format_general(np.array([1.5, np.nan]), text.EXACT_POWERS, fields, lengths,
                        np.zeros(2, dtype=bool))
    text.format_integers(np.array([1, -2], dtype=np.int64), fields, lengths)
    text.place_fields(np.zeros(64, dtype=np.uint8), np.array([0, 32], dtype=np.int64), fields,
                      lengths, ord(","))


def start_helper(dtype: np.dtype) -> subprocess.Popen | None:
    """Start compiling the helper's half for ``dtype`` in another process, if it is not in
    numba's cache and a second core is free; None otherwise."""
    from .threads import thread_count

    if thread_count() < 2 or _helper_half_cached(np.dtype(dtype)):
        return None
    code = ("from ctcimg import kernels; kernels.tune_numba(); "
            f"from ctcimg.kernels import warmup; warmup.compile_helper_half({str(dtype)!r})")
    return subprocess.Popen([sys.executable, "-c", code], **helper_python(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def helper_python() -> dict:
    """``env`` and ``cwd`` for a ``python -c`` helper that imports this very ctcimg: this
    process's ``sys.path`` as its PYTHONPATH, started in the folder that holds this ctcimg
    package. ``python -c`` puts its working folder first on its path, so started in a clone
    of the repository (as the README's commands are) it would import the clone's sources
    instead of the installed package, and write numba's cache where this process never
    looks (a first run then compiled everything twice: 31 s instead of 19 s)."""
    package_parent = Path(__file__).resolve().parents[2]
    return {"env": dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
            "cwd": str(package_parent)}


def _helper_half_cached(dtype: np.dtype) -> bool:
    """Whether numba's cache index holds the helper's kernels for pages of ``dtype``
    (when it cannot be read, say yes: no helper, compile in this process only)."""
    return _in_cache(_HELPER_KERNELS, dtype) is not False


def load_cached_page_kernels() -> list[np.dtype]:
    """Load the kernels of the CellTracks page dtypes (uint8, uint16) that numba's cache
    holds, for the batch forkserver (:mod:`.preload`): every worker would otherwise load
    them again on its first task (0.05-0.1 s each). A dtype not cached is left to the
    workers (a first run compiles only the dtype its pages have). Returns those loaded."""
    from .threads import kernels_in_this_thread_for_now

    loaded = []
    with kernels_in_this_thread_for_now():  # a process about to fork starts no threads
        for dtype in (np.dtype(np.uint8), np.dtype(np.uint16)):
            if _in_cache(_HELPER_KERNELS + _OWN_KERNELS, dtype):
                compile_own_half(dtype)
                compile_helper_half(dtype)
                loaded.append(dtype)
    return loaded


#: The kernels of each half whose types depend on the pages' dtype.
_HELPER_KERNELS = (refine.refine_channel, measure._measure_range,
                   annulus.nucleus_annulus_quantile, moments.window_weights)
_OWN_KERNELS = (background._tile_rows, threshold._foreground_blocks,
                thumbnails.inside_thumbnails)


def _in_cache(dispatchers: tuple, dtype: np.dtype) -> bool | None:
    """Whether numba's cache index holds ``dispatchers`` for pages of ``dtype`` (read
    through numba internals; None when they cannot be read)."""
    wanted = f"Array({np.dtype(dtype)}, 2"
    try:
        for dispatcher in dispatchers:
            index = dispatcher._cache._cache_file._load_index()
            if not any(wanted in str(key[0]) for key in index):
                return False
    except Exception:  # numba internals changed
        return None
    return True
