"""Fused smoothing + background subtraction + thresholding of the DAPI and CK channels.

One pass over the two full-resolution channels writes a ``uint8`` mask whose bit 0
(value 1) marks DAPI-positive and bit 1 (value 2) CK-positive pixels, and bit 2
(value 4) every detected pixel (kept when :mod:`~ctcimg.kernels.refine` later clears
the channel bits of an object's blur halo). A pixel is positive
in a channel when ``smoothed(p) − background(p) > threshold``, where ``smoothed`` is the
3 × 3 mean with edge replication (or the raw value when smoothing is off) and
``background`` the bilinear tile grid of :mod:`ctcimg.kernels.background`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .restore import restored
from .threads import claim, run_parts

DAPI_BIT = 1
CK_BIT = 2
DETECT_BIT = 4

_ROW_BLOCK = 16


@njit(cache=True)
def _restore_row(img, pmap, y, out):
    """Row ``y`` of a stored channel on the 12-bit scale (``pmap`` = scale, offset, floor)."""
    scale = pmap[0]
    offset = pmap[1]
    floor = pmap[2]
    src = img[y]
    for x in range(out.shape[0]):
        out[x] = restored(src[x], scale, offset, floor)


@njit(cache=True, nogil=True)
def _column_grid(grid, cx0, cwx, out):
    """``out[i, x] = (1 - cwx[x]) · grid[i, j0] + cwx[x] · grid[i, j0 + 1]`` with
    ``j0 = cx0[x]``, taken span by span of equal ``j0`` (the two grid values are then
    scalars) over unsigned columns (numba cannot wrap those around, so LLVM vectorises
    the loop): 6 × faster than a gather per pixel, the same values."""
    nx = grid.shape[1]
    w = cx0.shape[0]
    start = 0
    while start < w:
        j0 = cx0[start]
        end = start + 1
        while end < w and cx0[end] == j0:
            end += 1
        j1 = min(j0 + 1, nx - 1)
        for i in range(grid.shape[0]):
            g0 = grid[i, j0]
            g1 = grid[i, j1]
            for x in range(np.uint64(start), np.uint64(end)):
                out[i, x] = (1.0 - cwx[x]) * g0 + cwx[x] * g1
        start = end


def column_grid(grid: np.ndarray, cx0: np.ndarray, cwx: np.ndarray,
                dtype=np.float32) -> np.ndarray:
    """Grid rows interpolated to full width, ``(..., ny, W)``: the background at (y, x) is then
    ``(1 - rwy[y]) · g[ry0[y], x] + rwy[y] · g[ry0[y] + 1, x]`` — two loads per pixel."""
    flat = np.ascontiguousarray(grid, dtype=np.float64).reshape(-1, grid.shape[-1])
    out = np.empty((flat.shape[0], cx0.shape[0]), dtype=np.float64)
    # one specialisation: rounding its float64 to float32 afterwards is what storing into a
    # float32 array inside the kernel did
    _column_grid(flat, cx0, cwx, out)
    return out.reshape(*grid.shape[:-1], cx0.shape[0]).astype(dtype, copy=False)


def foreground_mask(dapi, ck, dapi_map, ck_map, colgrid_dapi, colgrid_ck, ry0, rwy, thr_dapi,
                    thr_ck, smooth):
    """DAPI/CK foreground bit mask of one frame.

    The test ``mean3x3(p) − background(p) > thr`` is evaluated as
    ``sum3x3(p) > 9 · (background(p) + thr)`` in float32 (SIMD-friendly; exact sums for
    integer 12-bit data). Blocks of rows run in parallel threads (:mod:`.threads`).

    Parameters
    ----------
    dapi, ck : (H, W) stored channels (any real dtype)
    dapi_map, ck_map : (3,) float32 maps of the stored channels to the 12-bit scale
        (scale, offset, floor; see :mod:`~ctcimg.kernels.restore`)
    colgrid_dapi, colgrid_ck : (ny, W) float32 background grids interpolated along x
        (:func:`column_grid`)
    ry0, rwy : row interpolation indices / weights (see ``interp_weights``)
    thr_dapi, thr_ck : float, thresholds above background
    smooth : bool, apply the 3 × 3 mean before thresholding

    Returns
    -------
    mask : (H, W) uint8, bit 0 = DAPI+, bit 1 = CK+, bit 2 = either
    run_counts : (H + 1,) int64, ``run_counts[y + 1]`` = foreground runs in row ``y``
        (for :func:`ctcimg.kernels.label.label_mask`)
    """
    h, w = dapi.shape
    mask = np.empty((h, w), dtype=np.uint8)
    counts = np.zeros(h + 1, dtype=np.int64)
    run_parts(_foreground_blocks, (h + _ROW_BLOCK - 1) // _ROW_BLOCK, dapi, ck, dapi_map,
              ck_map, colgrid_dapi, colgrid_ck, ry0, rwy, float(thr_dapi), float(thr_ck),
              bool(smooth), mask, counts)
    return mask, counts


@njit(cache=True, nogil=True)
def _foreground_blocks(work, dapi, ck, dapi_map, ck_map, colgrid_dapi, colgrid_ck, ry0, rwy,
                       thr_dapi, thr_ck, smooth, mask, counts):
    """The row blocks of :func:`foreground_mask` claimed from ``work``, into ``mask`` and
    ``counts``.

    Restored rows live in a ring of three (row ``r`` in slot ``(r - first + 1) % 3``, each
    row of a block restored once); a row's column sums are stored with one replicated
    column at either end, so the 3 × 3 box sum of every column is the same three adds.
    """
    h, w = dapi.shape
    ny = colgrid_dapi.shape[0]
    scale = np.float32(9.0 if smooth else 1.0)
    td = np.float32(thr_dapi)
    tc = np.float32(thr_ck)
    bd = np.uint8(DAPI_BIT | DETECT_BIT)
    bc = np.uint8(CK_BIT | DETECT_BIT)
    rows_d = np.empty((3, w), dtype=np.float32)
    rows_c = np.empty((3, w), dtype=np.float32)
    sums_d = np.empty(w + 2, dtype=np.float32)
    sums_c = np.empty(w + 2, dtype=np.float32)
    box_d = np.empty(w, dtype=np.float32)
    box_c = np.empty(w, dtype=np.float32)
    while True:
        b = claim(work)
        if b >= work[1]:
            break
        first = b * _ROW_BLOCK
        if smooth:  # the rows above and at the block's first row
            for r in (max(first - 1, 0), first):
                _restore_row(dapi, dapi_map, r, rows_d[(r - first + 1) % 3])
                _restore_row(ck, ck_map, r, rows_c[(r - first + 1) % 3])
        for y in range(first, min(h, first + _ROW_BLOCK)):
            if smooth:
                above = (max(y - 1, 0) - first + 1) % 3
                centre = (y - first + 1) % 3
                below = min(y + 1, h - 1)
                if below != y:
                    _restore_row(dapi, dapi_map, below, rows_d[(below - first + 1) % 3])
                    _restore_row(ck, ck_map, below, rows_c[(below - first + 1) % 3])
                below = (below - first + 1) % 3
                _box_sums(rows_d[above], rows_d[centre], rows_d[below], sums_d, box_d)
                _box_sums(rows_c[above], rows_c[centre], rows_c[below], sums_c, box_c)
            else:
                _restore_row(dapi, dapi_map, y, box_d)
                _restore_row(ck, ck_map, y, box_c)
            i0 = ry0[y]
            i1 = min(i0 + 1, ny - 1)
            wy = np.float32(rwy[y])
            wy0 = np.float32(1.0) - wy
            gd0 = colgrid_dapi[i0]
            gd1 = colgrid_dapi[i1]
            gc0 = colgrid_ck[i0]
            gc1 = colgrid_ck[i1]
            row = mask[y]
            for x in range(w):  # the limits are computed in the loop, not stored (15 % faster)
                limit_d = scale * (wy0 * gd0[x] + wy * gd1[x] + td)
                limit_c = scale * (wy0 * gc0[x] + wy * gc1[x] + tc)
                row[x] = np.uint8(box_d[x] > limit_d) * bd | np.uint8(box_c[x] > limit_c) * bc
            runs = np.int64(row[0] != 0)
            for x in range(1, w):
                runs += (row[x] != 0) & (row[x - 1] == 0)
            counts[y + 1] = runs


@njit(cache=True, nogil=True)
def _box_sums(above, centre, below, sums, box):
    """The 3 × 3 box sums of a row (edge replicated) from its restored neighbour rows, in
    float32: column sums ``(above + centre) + below``, then ``(left + middle) + right``."""
    w = box.shape[0]
    for x in range(w):
        sums[x + 1] = above[x] + centre[x] + below[x]
    sums[0] = sums[1]
    sums[w + 1] = sums[w]
    for x in range(w):
        box[x] = sums[x] + sums[x + 1] + sums[x + 2]
