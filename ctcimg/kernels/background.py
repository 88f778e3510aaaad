"""Coarse-grid background and noise estimation, and bilinear evaluation of the grid.

Algorithm (one definition, shared by the kernels and the NumPy reference in the tests):

1. The frame is cut into ``ny × nx`` tiles, ``ny = max(1, round(H / tile))``; tile ``i``
   spans rows ``floor(i·H/ny) … floor((i+1)·H/ny) − 1`` (columns likewise).
2. Each tile is subsampled on a regular lattice of step ``stride`` starting at
   ``stride // 2`` from the tile's first row/column. The tile's background is the
   order statistic ``k = int(q · (n − 1))`` of its ``n`` samples (``q = 0.5``: the lower
   median). Its noise is ``1.4826 · MAD``, the median absolute deviation from the median
   (both ordinary medians: the mean of the two middle values for even ``n``), computed
   on every second tile in each direction; the frame's noise is the median over those.
3. The background at a pixel is the bilinear interpolation between tile centres
   (centre of tile ``i`` = ``(first + last) / 2``), linearly *extrapolated* beyond the
   outermost centres, so a bright cartridge-edge band that rises towards the frame
   border is followed to the border rather than clamped at half a tile inside it.

Cells are sparse, so a tile median is hardly moved by them (a cell covering 30 % of a
tile shifts the median by about half a noise sigma, whatever its brightness).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, types
from numba.extending import overload

from .restore import restored

MAD_TO_SIGMA = 1.4826


def tile_edges(n: int, tile: int) -> np.ndarray:
    """Tile boundaries along one axis of length ``n``: ``edges[i] … edges[i+1]-1`` is tile i."""
    count = max(1, int(round(n / tile)))
    return (np.arange(count + 1, dtype=np.int64) * n) // count


def interp_weights(n: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate lower tile index and weight of the upper tile for bilinear interpolation.

    ``value(p) = (1 - w[p]) · g[i0[p]] + w[p] · g[min(i0[p] + 1, ntiles - 1)]``; ``w`` is
    outside [0, 1] beyond the outermost tile centres (linear extrapolation).
    """
    centres = (edges[:-1] + edges[1:] - 1) / 2.0
    p = np.arange(n, dtype=np.float64)
    if len(centres) == 1:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float64)
    i0 = np.searchsorted(centres, p, side="right") - 1
    i0 = np.clip(i0, 0, len(centres) - 2).astype(np.int64)
    w = (p - centres[i0]) / (centres[i0 + 1] - centres[i0])
    return i0, w


@lru_cache(maxsize=8)
def grid_axis(n: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`tile_edges` and :func:`interp_weights` of an axis of length ``n``, computed
    once per (n, tile): every frame of a cartridge has the same. The arrays are shared
    between calls; the kernels only read them."""
    edges = tile_edges(n, tile)
    return (edges, *interp_weights(n, edges))


@njit(cache=True)
def _select(a, n, k):
    """k-th smallest of ``a[:n]`` (0-based), partially reordering ``a``.

    Quickselect with a branch-free Lomuto partition (the comparison result is added to
    the store index instead of branching on it): tiles hold a few dozen samples, where
    mispredicted branches, not comparisons, are the cost.
    """
    lo = 0
    hi = n - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        pivot = a[mid]
        a[mid] = a[hi]
        a[hi] = pivot
        store = lo
        for i in range(lo, hi):
            v = a[i]
            a[i] = a[store]
            a[store] = v
            store += v < pivot
        a[hi] = a[store]
        a[store] = pivot
        if k == store:
            return pivot
        if k < store:
            hi = store - 1
        else:
            lo = store + 1
    return a[k]


@njit(cache=True, nogil=True)
def select_among_ties(a, n, k):
    """k-th smallest of ``a[:n]`` (0-based), partially reordering ``a`` so that every value
    right of position ``k`` is at least it.

    Quickselect as :func:`_select` (branch-free Lomuto), with a second pass that gathers
    the values equal to the pivot beside it whenever ``k`` lies right of the pivot: for
    restored pixels (a few hundred of a few dozen stored levels: a focus window's ring,
    a cartridge-edge profile line), with only the first pass each round would drop
    little more than the pivot (quadratic time).
    """
    lo = 0
    hi = n - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        pivot = a[mid]
        a[mid] = a[hi]
        a[hi] = pivot
        store = lo
        for i in range(lo, hi):
            v = a[i]
            a[i] = a[store]
            a[store] = v
            store += v < pivot
        a[hi] = a[store]
        a[store] = pivot
        if k <= store:
            if k == store:
                return pivot
            hi = store - 1
            continue
        equal = store + 1  # a[store + 1 .. hi] are >= pivot: the equal ones next
        for i in range(store + 1, hi + 1):
            v = a[i]
            a[i] = a[equal]
            a[equal] = v
            equal += v <= pivot
        if k < equal:
            return pivot
        lo = equal
    return a[k]


@njit(cache=True, nogil=True)
def row_medians(block):
    """``np.median(block, axis=1)`` of a C-contiguous 2-D float array without NaN: each
    row's middle value, or the mean of its two middle values computed in the block's
    dtype (NumPy's ``(lo + hi) / 2``) when the rows are even."""
    m, n = block.shape
    out = np.empty(m, dtype=block.dtype)
    scratch = np.empty(n, dtype=block.dtype)
    k = (n - 1) // 2
    for i in range(m):
        for j in range(n):
            scratch[j] = block[i, j]
        lo = select_among_ties(scratch, n, k)
        if n % 2:
            out[i] = lo
            continue
        hi = scratch[k + 1]  # after selection everything right of k is >= scratch[k]
        for j in range(k + 2, n):
            if scratch[j] < hi:
                hi = scratch[j]
        out[i] = (lo + hi) / 2  # the sum rounded to the dtype, halved exactly
    return out


@njit(cache=True)
def _median(a, n):
    """Median of ``a[:n]`` (mean of the two middle values when n is even); reorders ``a``."""
    k = (n - 1) // 2
    lo = _select(a, n, k)
    if n % 2:
        return lo
    hi = a[k + 1]  # after selection everything right of k is >= a[k]
    for i in range(k + 2, n):
        if a[i] < hi:
            hi = a[i]
    return 0.5 * (lo + hi)


def tile_stats(pages, affine, redges, cedges, stride, q, n_sigma, sigma_every=1):
    """Per-tile background order statistic of every channel, and MAD noise of the first ones.

    Parameters
    ----------
    pages : tuple of C (H, W) stored channels (see :class:`ctcimg.io.tiff.StoredFrame`)
    affine : (3, C) float32 map of the pages to the 12-bit scale (scale, offset, floor)
    redges, cedges : int64 arrays of tile boundaries (see :func:`tile_edges`)
    stride : int, subsampling step inside a tile
    q : float, quantile of the background statistic (0.5 = lower median)
    n_sigma : int, compute the MAD noise of channels ``0 .. n_sigma - 1`` (others: 0)
    sigma_every : int, noise only on tiles with ``ty % k == tx % k == 0`` (NaN elsewhere):
        the noise is used as one frame-level median, which a subset estimates as well,
        and each MAD costs two selections

    Returns
    -------
    bg, sigma : (C, ny, nx) float64 arrays
    """
    nch = len(pages)
    ny = redges.shape[0] - 1
    nx = cedges.shape[0] - 1
    bg = np.zeros((nch, ny, nx), dtype=np.float64)
    sg = np.zeros((nch, ny, nx), dtype=np.float64)
    if pages[0].dtype == np.uint8 and not (np.asarray(affine)[0] >= 0).all():
        # 8-bit pages are counted, which needs a monotone restoration (a scale >= 0, as
        # every CellTracks page has); others are restored first, as restored() does
        maps = np.asarray(affine, np.float32)
        values = [page.astype(np.float32) * maps[0, c] + maps[1, c]
                  for c, page in enumerate(pages)]
        pages = tuple(np.where(v < maps[2, c], maps[2, c], v) for c, v in enumerate(values))
        affine = np.zeros((3, nch), dtype=np.float32)
        affine[0] = 1.0
        affine[2] = -np.inf
    # serial: ~1 ms a frame, less than waking a second thread costs on a shared machine
    _tile_rows(0, ny, 1, pages, affine, redges, cedges, int(stride), float(q), int(n_sigma),
               int(sigma_every), bg, sg)
    return bg, sg


@njit(cache=True, nogil=True)
def _tile_rows(t0, t1, step, pages, affine, redges, cedges, stride, q, n_sigma, sigma_every, bg,
               sg):
    """Tile rows ``t0, t0 + step, … < t1`` of :func:`tile_stats`, into ``bg`` and ``sg``."""
    nch = len(pages)
    nx = cedges.shape[0] - 1
    ny = redges.shape[0] - 1
    off = stride // 2
    maxr = 0
    maxc = 0
    for t in range(ny):
        maxr = max(maxr, redges[t + 1] - redges[t])
    for t in range(nx):
        maxc = max(maxc, cedges[t + 1] - cedges[t])
    cap = ((maxr + stride - 1) // stride + 1) * ((maxc + stride - 1) // stride + 1)
    s = np.empty(cap, dtype=np.float64)
    counts = np.empty(256, dtype=np.int64)
    for v in range(256):
        counts[v] = 0
    for ty in range(t0, t1, step):
        for tx in range(nx):
            r0 = redges[ty] + off
            r1 = redges[ty + 1]
            c0 = cedges[tx] + off
            c1 = cedges[tx + 1]
            nr = max(0, (r1 - r0 + stride - 1) // stride)
            nc = max(0, (c1 - c0 + stride - 1) // stride)
            if nr == 0 or nc == 0:  # tile smaller than the offset: use its first pixel
                r0 = redges[ty]
                c0 = cedges[tx]
                nr = 1
                nc = 1
            n = nr * nc
            kq = int(q * (n - 1))
            for c in range(nch):
                img = pages[c]
                scale = affine[0, c]
                offset = affine[1, c]
                floor = affine[2, c]
                noise = c < n_sigma and ty % sigma_every == 0 and tx % sigma_every == 0
                background, mad = _tile_statistics(img, r0, c0, nr, nc, stride, kq, scale,
                                                   offset, floor, noise, s, counts)
                bg[c, ty, tx] = background
                if c < n_sigma:
                    sg[c, ty, tx] = MAD_TO_SIGMA * mad if noise else np.nan


@njit(cache=True, nogil=True)
def _restored_samples(img, r0, c0, nr, nc, stride, scale, offset, floor, s):
    """The tile's ``nr × nc`` samples on the 12-bit scale into ``s``, row by row."""
    k = 0
    for i in range(nr):
        y = r0 + i * stride
        for j in range(nc):
            s[k] = restored(img[y, c0 + j * stride], scale, offset, floor)
            k += 1


def _tile_statistics(img, r0, c0, nr, nc, stride, kq, scale, offset, floor, noise, s, counts):
    """A tile's background (the ``kq``-th smallest, 0-based, of its samples on the 12-bit
    scale) and, with ``noise``, the MAD of the samples (else NaN); implemented for the
    kernels by the overload below."""
    raise NotImplementedError


@njit(cache=True, nogil=True)
def _sampled_statistics(img, r0, c0, nr, nc, stride, kq, scale, offset, floor, noise, s):
    """:func:`_tile_statistics` from the samples restored into ``s``."""
    n = nr * nc
    _restored_samples(img, r0, c0, nr, nc, stride, scale, offset, floor, s)
    background = _select(s, n, kq)
    if not noise:
        return background, np.nan
    med = _median(s, n)
    for i in range(n):
        s[i] = abs(s[i] - med)
    return background, _median(s, n)


@overload(_tile_statistics)
def _tile_statistics_kernel(img, r0, c0, nr, nc, stride, kq, scale, offset, floor, noise, s,
                            counts):
    """8-bit pages: from the histogram of the samples' stored values (``counts``: 256
    zeros, left zero). The restoration is monotone (:func:`tile_stats` sees to a scale
    >= 0), so the restored
    order statistics are those of the stored values restored, and the deviations from the
    median grow away from it on either side: their order statistics are merged from the
    two sides. Same values as :func:`_sampled_statistics` (used for other pages)."""
    if not (isinstance(img, types.Array) and img.dtype == types.uint8):
        def sampled(img, r0, c0, nr, nc, stride, kq, scale, offset, floor, noise, s, counts):
            return _sampled_statistics(img, r0, c0, nr, nc, stride, kq, scale, offset, floor,
                                       noise, s)

        return sampled

    def counted(img, r0, c0, nr, nc, stride, kq, scale, offset, floor, noise, s, counts):
        n = nr * nc
        for i in range(nr):
            y = r0 + i * stride
            for j in range(nc):
                counts[img[y, c0 + j * stride]] += 1
        background = restored(np.uint8(_counted_rank(counts, kq)), scale, offset, floor)
        mad = np.nan
        if noise:
            mad = _counted_mad(counts, n, scale, offset, floor)
        for i in range(nr):
            y = r0 + i * stride
            for j in range(nc):
                counts[img[y, c0 + j * stride]] = 0
        return background, mad

    return counted


@njit(cache=True, nogil=True)
def _counted_rank(counts, k):
    """The value of rank ``k`` (0-based) of a histogram of 8-bit values."""
    below = 0
    for v in range(256):
        below += counts[v]
        if below > k:
            return v
    return 255


@njit(cache=True, nogil=True)
def _counted_mad(counts, n, scale, offset, floor):
    """:func:`_median` of ``|x - median(x)|`` over the restored values of a histogram of
    ``n`` 8-bit values, computed as :func:`_sampled_statistics` does (float64)."""
    k = (n - 1) // 2
    med = np.float64(restored(np.uint8(_counted_rank(counts, k)), scale, offset, floor))
    if n % 2 == 0:  # in float64, as _median adds the samples
        med = 0.5 * (med + np.float64(restored(np.uint8(_counted_rank(counts, k + 1)), scale,
                                               offset, floor)))
    # left: values at or below the median (deviations grow downwards), right: above
    left = _counted_rank(counts, k)
    while left < 255 and restored(np.uint8(left + 1), scale, offset, floor) <= med:
        left += 1
    right = left + 1
    left_left = counts[left] if left >= 0 else 0
    right_left = counts[right] if right <= 255 else 0
    taken = 0
    first = 0.0
    while True:
        while left >= 0 and left_left == 0:
            left -= 1
            left_left = counts[left] if left >= 0 else 0
        while right <= 255 and right_left == 0:
            right += 1
            right_left = counts[right] if right <= 255 else 0
        d_left = abs(restored(np.uint8(left), scale, offset, floor) - med) if left >= 0 \
            else np.inf
        d_right = abs(restored(np.uint8(right), scale, offset, floor) - med) if right <= 255 \
            else np.inf
        if d_left <= d_right:
            d = d_left
            left_left -= 1
        else:
            d = d_right
            right_left -= 1
        if taken == k:
            if n % 2:
                return d
            first = d
        elif taken == k + 1:
            return 0.5 * (first + d)
        taken += 1


@njit(cache=True)
def bg_value(grid, ry0, rwy, cx0, cwx, y, x):
    """Bilinear (extrapolating) background of ``grid`` (ny, nx) at pixel (y, x)."""
    ny = grid.shape[0]
    nx = grid.shape[1]
    i0 = ry0[y]
    i1 = min(i0 + 1, ny - 1)
    j0 = cx0[x]
    j1 = min(j0 + 1, nx - 1)
    wy = rwy[y]
    wx = cwx[x]
    a = (1.0 - wy) * grid[i0, j0] + wy * grid[i1, j0]
    b = (1.0 - wy) * grid[i0, j1] + wy * grid[i1, j1]
    return (1.0 - wx) * a + wx * b


@njit(cache=True)
def subtract_background(img, grid, ry0, rwy, cx0, cwx):
    """Full-resolution ``img - background`` as float32 (for tests and QC only)."""
    h, w = img.shape
    out = np.empty((h, w), dtype=np.float32)
    for y in range(h):
        for x in range(w):
            out[y, x] = img[y, x] - bg_value(grid, ry0, rwy, cx0, cwx, y, x)
    return out
