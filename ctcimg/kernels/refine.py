"""Per-object boundary refinement at a fraction of the local peak ("local half-max").

Detection uses a low absolute threshold so that dim cells are found, but with optical
blur a low threshold puts the boundary of a bright cell far outside its true edge (a
threshold at 5 % of a blurred step lies ~1.6 PSF sigmas out), and it merges the blurred
nuclei of touching cells. Refinement re-decides, inside each object, which pixels are
DAPI+ (per detected object, before clusters are split, so nuclei separate) and CK+ (per
event, after splitting, so a dim cell touching a bright one keeps its own reference):

``channel+(p) = s(p) > thr  and  s(p) >= fraction · ref(p)``

where ``s`` is the (3 × 3 mean, edge-replicated) background-corrected channel, exactly as
in the detection pass, and the reference is

- DAPI (``local=True``): the local peak ``max{ s(q) : q in object, |q − p|∞ <= R }``, so
  two nuclei of different brightness in one object each keep their own reference;
- CK (``local=False``): the event's plateau, the order statistic ``(3(m − 1)) // 4``
  (upper quartile) of ``s`` over its ``m`` pixels with ``s > thr`` — not a local peak,
  because where two touching cytoplasms overlap their stains add up and a local peak
  there would eat into the dimmer cell.

A blurred uniform object's boundary then sits where the intensity has fallen to
``fraction`` of its plateau — close to the true edge whatever the brightness.

The mask keeps bit 2 (value 4, "detected") on every detected pixel; pixels that lose
both channel bits are the object's blur halo: :func:`trim_objects` removes them from the
label image, and they never count as ring (local background) pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .background import _select
from .restore import restored
from .threshold import CK_BIT, DAPI_BIT


@njit(cache=True)
def _restored_window(img, scale, offset, floor, r0, c0, hh, ww, out):
    """The window's pixels on the 12-bit scale with a one-pixel border of edge-replicated
    frame pixels, into ``out`` ((hh + 2) × (ww + 2), flat): the 3 × 3 neighbourhoods of
    :func:`_smoothed` restored once each."""
    h, w = img.shape
    for yy in range(hh + 2):
        y = min(max(r0 + yy - 1, 0), h - 1)
        for xx in range(ww + 2):
            x = min(max(c0 + xx - 1, 0), w - 1)
            out[yy * (ww + 2) + xx] = restored(img[y, x], scale, offset, floor)


@njit(cache=True)
def _smoothed(window, ww, yy, xx, smooth):
    """The (3 × 3 mean of the) restored channel at window pixel (yy, xx), summed in float64
    row by row as the detection's definition reads."""
    stride = ww + 2
    if not smooth:
        return np.float64(window[(yy + 1) * stride + xx + 1])
    s = 0.0
    for dy in range(3):
        for dx in range(3):
            s += window[(yy + dy) * stride + xx + dx]
    return s / 9.0


@njit(cache=True)
def _local_max(v, hh, ww, radius, tmp, out):
    """Square (Chebyshev radius ``radius``) max filter of ``v`` (hh × ww, flat)."""
    for yy in range(hh):
        for xx in range(ww):
            m = -np.inf
            for x2 in range(max(xx - radius, 0), min(xx + radius + 1, ww)):
                m = max(m, v[yy * ww + x2])
            tmp[yy * ww + xx] = m
    for yy in range(hh):
        for xx in range(ww):
            m = -np.inf
            for y2 in range(max(yy - radius, 0), min(yy + radius + 1, hh)):
                m = max(m, tmp[y2 * ww + xx])
            out[yy * ww + xx] = m


# Over 80 lines as one numba kernel on purpose: restoring the window, its local maximum and
# the threshold test run over each object's window with shared scratch buffers; helpers
# would pass those buffers on every call and compile one more function each.
@njit(cache=True, nogil=True)
def refine_channel(img, pmap, bit, labels, mask, win, grid, ry0, rwy, cx0, cwx, thr, fraction,
                   radius, smooth, local):
    """Rewrite one channel bit of every object's pixels by the relative rule (in place).

    Parameters
    ----------
    img : (H, W) stored channel (DAPI or CK), any real dtype
    pmap : (3,) float32 map of ``img`` to the 12-bit scale (scale, offset, floor)
    bit : int, the channel's mask bit (``DAPI_BIT`` or ``CK_BIT``)
    labels : (H, W) int32 object labels (read only)
    mask : (H, W) uint8 bit mask, ``bit`` rewritten on object pixels
    win : (n + 1, 4) int64 boxes containing each object's pixels
    grid, ry0, rwy, cx0, cwx : background grid and interpolation weights
    thr : float, absolute threshold above background (as in detection)
    fraction : float, fraction of the local peak a pixel must reach
    radius : int, Chebyshev radius of the local-peak neighbourhood
    smooth : bool, use the 3 × 3 mean (as in detection)
    local : bool, reference = local peak (True) or the object's plateau (False)
    """
    n = win.shape[0] - 1
    gny = grid.shape[0]
    gnx = grid.shape[1]
    scale = pmap[0]
    offset = pmap[1]
    floor = pmap[2]
    keep = np.uint8(0xFF ^ bit)
    setb = np.uint8(bit)
    # per-object scratch, grown when an object needs more
    window = np.empty(64, dtype=np.float32)
    sv = np.empty(64, dtype=np.float64)
    peak = np.empty(64, dtype=np.float64)
    spare = np.empty(64, dtype=np.float64)
    for lab in range(1, n + 1):
        r0, c0, r1, c1 = win[lab, 0], win[lab, 1], win[lab, 2], win[lab, 3]
        hh = r1 - r0
        ww = c1 - c0
        size = hh * ww
        if size <= 0:
            continue
        if window.shape[0] < (hh + 2) * (ww + 2):
            window = np.empty(2 * (hh + 2) * (ww + 2), dtype=np.float32)
        if sv.shape[0] < size:
            sv = np.empty(2 * size, dtype=np.float64)
            peak = np.empty(2 * size, dtype=np.float64)
            spare = np.empty(2 * size, dtype=np.float64)
        _restored_window(img, scale, offset, floor, r0, c0, hh, ww, window)
        for yy in range(hh):
            y = r0 + yy
            i0 = ry0[y]
            i1 = min(i0 + 1, gny - 1)
            wy = rwy[y]
            for xx in range(ww):
                x = c0 + xx
                sv[yy * ww + xx] = -np.inf
                if labels[y, x] != lab:
                    continue
                j0 = cx0[x]
                j1 = min(j0 + 1, gnx - 1)
                wx = cwx[x]
                a = (1.0 - wy) * grid[i0, j0] + wy * grid[i1, j0]
                b = (1.0 - wy) * grid[i0, j1] + wy * grid[i1, j1]
                sv[yy * ww + xx] = _smoothed(window, ww, yy, xx, smooth) - ((1.0 - wx) * a
                                                                            + wx * b)
        plateau = np.inf
        if local:
            _local_max(sv, hh, ww, radius, spare, peak)
        else:  # plateau: upper quartile of the object's above-threshold values
            # _select, not np.partition: most of the compile time; m int64 from the start,
            # not a literal 0 (which costs _select a second specialisation)
            m = np.int64(0)
            for i in range(size):
                if sv[i] > thr:
                    spare[m] = sv[i]
                    m += 1
            if m > 0:
                plateau = _select(spare, m, (3 * (m - 1)) // 4)
        for yy in range(hh):
            for xx in range(ww):
                i = yy * ww + xx
                if labels[r0 + yy, c0 + xx] != lab:
                    continue
                v = mask[r0 + yy, c0 + xx] & keep
                if sv[i] > thr and sv[i] >= fraction * (peak[i] if local else plateau):
                    v |= setb
                mask[r0 + yy, c0 + xx] = v


@njit(cache=True, nogil=True)
def trim_objects(labels, mask, bbox):
    """Remove from the label image the object pixels that are neither DAPI+ nor CK+."""
    n = bbox.shape[0] - 1
    for lab in range(1, n + 1):
        for y in range(bbox[lab, 0], bbox[lab, 2]):
            for x in range(bbox[lab, 1], bbox[lab, 3]):
                if labels[y, x] != 0 and (mask[y, x] & (DAPI_BIT | CK_BIT)) == 0:
                    labels[y, x] = 0
