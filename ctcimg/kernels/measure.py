"""Per-object raw measurements in one pass over each object's window, objects in threads.

For object ``L`` with search window ``win[L]`` (a box known to contain all its pixels) the
kernel visits the window once for the object's pixels and once more for a ring of
``ring_w`` pixels around it (a Chebyshev dilation computed separably on the window),
so the total work is linear in the windows' areas. All intensities are background
corrected on the fly with the bilinear grid (no full-resolution corrected image exists).

Perimeter: the estimator of ``skimage.measure.perimeter(image, neighborhood=4)`` applied to
the object alone: border pixels are object pixels with a 4-neighbour outside the object
(or outside the frame); each border pixel is weighted by the configuration of its
border neighbours (1 for straight runs, √2 for diagonal, (1 + √2)/2 for corners).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .restore import restored
from .threads import claim, run_parts
from .threshold import CK_BIT, DAPI_BIT

# column indices of the raw measurement matrix
AREA, SY, SX, SYY, SXX, SXY = 0, 1, 2, 3, 4, 5
ROW0, COL0, ROW1, COL1 = 6, 7, 8, 9
PERIM, NDAPI, NCK, NBOTH, NSAT, CKSQ = 10, 11, 12, 13, 14, 15
SUM, MAX, RING = 16, 20, 24  # + channel index
RINGN = 28
DSY, DSX, KSY, KSX = 29, 30, 31, 32  # sums of local row / column over DAPI+ and CK+ pixels
NRAW = 33


def _perimeter_weights() -> np.ndarray:
    w = np.zeros(50, dtype=np.float64)
    w[[5, 7, 15, 17, 25, 27]] = 1.0
    w[[21, 33]] = math.sqrt(2.0)
    w[[13, 23]] = (1.0 + math.sqrt(2.0)) / 2.0
    return w


PERIMETER_WEIGHTS = _perimeter_weights()


def measure_objects(pages, affine, labels, mask, win, colgrids, ry0, rwy, ring_w, sat_level,
                    pweights, max_ring_area):
    """Raw sums, moments, perimeter and ring statistics of objects 1..n.

    Parameters
    ----------
    pages : tuple of C (H, W) stored channels (see :class:`ctcimg.io.tiff.StoredFrame`)
    affine : (3, C) float32 map of the pages to the 12-bit scale (scale, offset, floor)
    labels : (H, W) int32 object labels
    mask : (H, W) uint8 foreground bits (DAPI = 1, CK = 2); ring pixels need ``mask == 0``
    win : (n + 1, 4) int64 search windows ``row0, col0, row1, col1`` (exclusive ends)
    colgrids : (C, ny, W) float64 background grids interpolated along x
        (``column_grid``); the background at (y, x) is the blend of two of their rows
    ry0, rwy : row interpolation indices / weights
    ring_w : int, ring width in pixels
    sat_level : float, restored value counted as saturated
    pweights : (50,) float64 perimeter weights
    max_ring_area : int, objects with more pixels get no intensities, saturation, perimeter
        and ring (NaN): the cartridge-edge band or debris sheets, whose window may be the
        whole frame (measuring their four channels took a third of all measuring time)

    Returns
    -------
    (n + 1, NRAW) float64 raw measurements (row 0 unused); see the module constants.
    Threads take the objects one by one (:mod:`.threads`): their sizes vary.
    """
    n = win.shape[0] - 1
    out = np.zeros((n + 1, NRAW), dtype=np.float64)
    run_parts(_measure_range, n, pages, affine, labels, mask, win, colgrids, ry0, rwy,
              int(ring_w), float(sat_level), pweights, int(max_ring_area), out)
    return out


@njit(cache=True, nogil=True)
def _measure_range(work, pages, affine, labels, mask, win, colgrids, ry0, rwy, ring_w, sat_level,
                   pweights, max_ring_area, out):
    """Objects ``1 + i`` of :func:`measure_objects`, ``i`` claimed from ``work``, into
    ``out``."""
    nch = len(pages)
    h, w = labels.shape
    gny = colgrids.shape[1]
    while True:
        index = claim(work)
        if index >= work[1]:
            break
        lab = index + 1
        r0, c0, r1, c1 = win[lab, 0], win[lab, 1], win[lab, 2], win[lab, 3]
        hh = r1 - r0
        ww = c1 - c0
        if hh <= 0 or ww <= 0:
            continue
        measure_channels = True
        if hh * ww > max_ring_area:  # only a window this large can hold a huge object
            count = 0
            for y in range(r0, r1):
                for x in range(c0, c1):
                    count += labels[y, x] == lab
            measure_channels = count <= max_ring_area
        o = out[lab]
        area = 0.0
        sy = 0.0
        sx = 0.0
        syy = 0.0
        sxx = 0.0
        sxy = 0.0
        rmin = h
        rmax = -1
        cmin = w
        cmax = -1
        nsat = 0.0
        ndapi = 0.0
        nck = 0.0
        nboth = 0.0
        dsy = 0.0
        dsx = 0.0
        ksy = 0.0
        ksx = 0.0
        cksq = 0.0
        sums = np.zeros(nch)
        maxs = np.full(nch, -np.inf)
        saturated = np.zeros(ww, dtype=np.bool_)  # per run: saturated in any channel
        # ---- pass over the object's pixels, run by run along each row
        for yy in range(hh):
            y = r0 + yy
            i0 = ry0[y]
            i1 = min(i0 + 1, gny - 1)
            wy = rwy[y]
            wy0 = 1.0 - wy
            x = c0
            while x < c1:
                if labels[y, x] != lab:
                    x += 1
                    continue
                xa = x
                while x < c1 and labels[y, x] == lab:
                    x += 1
                xb = x  # run [xa, xb)
                ln = float(xb - xa)
                a = float(xa - c0)
                b = float(xb - 1 - c0)
                srun = (a + b) * ln / 2.0  # sum of local x over the run
                s2run = (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) / 6.0
                area += ln
                sy += yy * ln
                syy += yy * yy * ln
                sx += srun
                sxx += s2run
                sxy += yy * srun
                rmin = min(rmin, y)
                rmax = max(rmax, y + 1)
                cmin = min(cmin, xa)
                cmax = max(cmax, xb)
                saturated[: xb - xa] = False
                for c in range(nch if measure_channels else 0):
                    fr = pages[c][y]
                    scale = affine[0, c]
                    offset = affine[1, c]
                    floor = affine[2, c]
                    g0 = colgrids[c, i0]
                    g1 = colgrids[c, i1]
                    acc = 0.0
                    mx = maxs[c]
                    sq = 0.0
                    for xx in range(xa, xb):
                        value = restored(fr[xx], scale, offset, floor)
                        saturated[xx - xa] |= value >= sat_level
                        v = value - (wy0 * g0[xx] + wy * g1[xx])
                        acc += v
                        mx = max(mx, v)
                        sq += v * v
                    sums[c] += acc
                    maxs[c] = mx
                    if c == 1:
                        cksq += sq
                for xx in range(xa, xb):
                    nsat += saturated[xx - xa]
                    m = mask[y, xx]
                    nd = (m & DAPI_BIT) != 0
                    nc = (m & CK_BIT) != 0
                    ndapi += nd
                    nck += nc
                    nboth += nd & nc
                    dsy += yy * nd
                    dsx += (xx - c0) * nd
                    ksy += yy * nc
                    ksx += (xx - c0) * nc
        o[AREA] = area
        o[SY] = sy
        o[SX] = sx
        o[SYY] = syy
        o[SXX] = sxx
        o[SXY] = sxy
        o[ROW0] = rmin
        o[COL0] = cmin
        o[ROW1] = rmax
        o[COL1] = cmax
        o[NSAT] = nsat
        o[NDAPI] = ndapi
        o[NCK] = nck
        o[NBOTH] = nboth
        o[DSY] = dsy
        o[DSX] = dsx
        o[KSY] = ksy
        o[KSX] = ksx
        o[CKSQ] = cksq
        for c in range(nch):
            o[SUM + c] = sums[c]
            o[MAX + c] = maxs[c]
        if not measure_channels:  # edge band / sheet: no intensities, perimeter or ring
            o[PERIM] = np.nan
            o[NSAT] = np.nan
            o[CKSQ] = np.nan
            for c in range(nch):
                o[SUM + c] = np.nan
                o[MAX + c] = np.nan
            continue
        # ---- border pixels: object pixels with a 4-neighbour outside the object / frame
        border = np.zeros(hh * ww, dtype=np.uint8)
        for yy in range(hh):
            y = r0 + yy
            for xx in range(ww):
                x = c0 + xx
                if labels[y, x] != lab:
                    continue
                if (y == 0 or labels[y - 1, x] != lab or y == h - 1 or labels[y + 1, x] != lab
                        or x == 0 or labels[y, x - 1] != lab or x == w - 1
                        or labels[y, x + 1] != lab):
                    border[yy * ww + xx] = 1
        # ---- perimeter from the border pixels (neighbours outside the window are not
        # object pixels, hence not border pixels)
        per = 0.0
        for yy in range(hh):
            for xx in range(ww):
                if border[yy * ww + xx] == 0:
                    continue
                code = 1
                for dy in range(-1, 2):
                    ny = yy + dy
                    if ny < 0 or ny >= hh:
                        continue
                    for dx in range(-1, 2):
                        nx = xx + dx
                        if (dy == 0 and dx == 0) or nx < 0 or nx >= ww:
                            continue
                        if border[ny * ww + nx]:
                            code += 2 if (dy == 0 or dx == 0) else 10
                per += pweights[code]
        o[PERIM] = per
        # ---- ring: background pixels within Chebyshev distance ring_w of the object
        if ring_w > 0:
            e0 = max(r0 - ring_w, 0)
            e1 = min(r1 + ring_w, h)
            f0 = max(c0 - ring_w, 0)
            f1 = min(c1 + ring_w, w)
            eh = e1 - e0
            ew = f1 - f0
            hor = np.zeros(eh * ew, dtype=np.uint8)
            for yy in range(r0 - e0, r1 - e0):
                y = e0 + yy
                last = -(1 << 30)  # column of the last object pixel seen
                # forward sweep marks pixels up to ring_w right of an object pixel
                for xx in range(ew):
                    if labels[y, f0 + xx] == lab:
                        last = xx
                    if xx - last <= ring_w:
                        hor[yy * ew + xx] = 1
                last = 1 << 30
                for xx in range(ew - 1, -1, -1):
                    if labels[y, f0 + xx] == lab:
                        last = xx
                    if last - xx <= ring_w:
                        hor[yy * ew + xx] = 1
            vert = np.zeros(eh, dtype=np.uint8)
            for xx in range(ew):
                x = f0 + xx
                last = -(1 << 30)
                lastb = 1 << 30
                # vertical dilation of ``hor`` by ring_w, two sweeps over the column
                vert[:] = 0
                for yy in range(eh):
                    if hor[yy * ew + xx]:
                        last = yy
                    if yy - last <= ring_w:
                        vert[yy] = 1
                for yy in range(eh - 1, -1, -1):
                    if hor[yy * ew + xx]:
                        lastb = yy
                    if lastb - yy <= ring_w:
                        vert[yy] = 1
                for yy in range(eh):
                    if vert[yy] == 0:
                        continue
                    y = e0 + yy
                    if mask[y, x] != 0 or labels[y, x] != 0:
                        continue
                    i0 = ry0[y]
                    i1 = min(i0 + 1, gny - 1)
                    wy = rwy[y]
                    o[RINGN] += 1.0
                    for c in range(nch):
                        o[RING + c] += restored(pages[c][y, x], affine[0, c], affine[1, c],
                                                affine[2, c]) - (
                            (1.0 - wy) * colgrids[c, i0, x] + wy * colgrids[c, i1, x])


@njit(cache=True)
def relabel_windows(labels, win, new_label):
    """In place: pixels of object ``L`` (searched in ``win[L]``) become ``new_label[L]``.

    Two phases (write ``-new``, then flip the sign) so that an object's new label is never
    mistaken for another object's old one.
    """
    n = win.shape[0] - 1
    for lab in range(1, n + 1):
        nl = new_label[lab]
        if nl == lab:
            continue
        for y in range(win[lab, 0], win[lab, 2]):
            for x in range(win[lab, 1], win[lab, 3]):
                if labels[y, x] == lab:
                    labels[y, x] = -nl
    for lab in range(1, n + 1):
        if new_label[lab] == lab:
            continue
        for y in range(win[lab, 0], win[lab, 2]):
            for x in range(win[lab, 1], win[lab, 3]):
                if labels[y, x] < 0:
                    labels[y, x] = -labels[y, x]
