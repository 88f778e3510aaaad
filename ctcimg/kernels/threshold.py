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
from numba import njit, prange

DAPI_BIT = 1
CK_BIT = 2
DETECT_BIT = 4

_ROW_BLOCK = 16


@njit(cache=True, inline="always")
def _smooth_row(img, y, h, w, colsum, out, smooth):
    if not smooth:
        for x in range(w):
            out[x] = img[y, x]
        return
    ym = max(y - 1, 0)
    yp = min(y + 1, h - 1)
    for x in range(w):
        colsum[x] = np.float64(img[ym, x]) + np.float64(img[y, x]) + np.float64(img[yp, x])
    if w == 1:
        out[0] = colsum[0] * 3.0 / 9.0
        return
    out[0] = (2.0 * colsum[0] + colsum[1]) / 9.0
    for x in range(1, w - 1):
        out[x] = (colsum[x - 1] + colsum[x] + colsum[x + 1]) / 9.0
    out[w - 1] = (colsum[w - 2] + 2.0 * colsum[w - 1]) / 9.0


@njit(cache=True, inline="always")
def _grid_row(grid, ry0, rwy, y, out):
    ny = grid.shape[0]
    i0 = ry0[y]
    i1 = min(i0 + 1, ny - 1)
    wy = rwy[y]
    for j in range(grid.shape[1]):
        out[j] = (1.0 - wy) * grid[i0, j] + wy * grid[i1, j]


@njit(cache=True, parallel=True)
def foreground_mask(dapi, ck, grid_dapi, grid_ck, ry0, rwy, cx0, cwx, thr_dapi, thr_ck, smooth):
    """DAPI/CK foreground bit mask of one frame.

    Parameters
    ----------
    dapi, ck : (H, W) float32 raw channels
    grid_dapi, grid_ck : (ny, nx) float64 background grids
    ry0, rwy, cx0, cwx : interpolation indices/weights (see ``interp_weights``)
    thr_dapi, thr_ck : float, thresholds above background
    smooth : bool, apply the 3 × 3 mean before thresholding

    Returns
    -------
    (H, W) uint8 mask, bit 0 = DAPI+, bit 1 = CK+, bit 2 = either
    """
    h, w = dapi.shape
    nx = grid_dapi.shape[1]
    mask = np.empty((h, w), dtype=np.uint8)
    nblocks = (h + _ROW_BLOCK - 1) // _ROW_BLOCK
    for b in prange(nblocks):
        colsum = np.empty(w, dtype=np.float64)
        sd = np.empty(w, dtype=np.float64)
        sc = np.empty(w, dtype=np.float64)
        gd = np.empty(nx, dtype=np.float64)
        gc = np.empty(nx, dtype=np.float64)
        for y in range(b * _ROW_BLOCK, min(h, (b + 1) * _ROW_BLOCK)):
            _smooth_row(dapi, y, h, w, colsum, sd, smooth)
            _smooth_row(ck, y, h, w, colsum, sc, smooth)
            _grid_row(grid_dapi, ry0, rwy, y, gd)
            _grid_row(grid_ck, ry0, rwy, y, gc)
            for x in range(w):
                j0 = cx0[x]
                j1 = min(j0 + 1, nx - 1)
                wx = cwx[x]
                bd = (1.0 - wx) * gd[j0] + wx * gd[j1]
                bc = (1.0 - wx) * gc[j0] + wx * gc[j1]
                v = 0
                if sd[x] - bd > thr_dapi:
                    v |= DAPI_BIT
                if sc[x] - bc > thr_ck:
                    v |= CK_BIT
                if v:
                    v |= DETECT_BIT
                mask[y, x] = v
    return mask
