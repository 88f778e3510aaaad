"""Per-object raw measurements from one pass over each object's window, objects in threads.

For object ``L`` with search window ``win[L]`` (a box known to contain all its pixels) the
kernel visits the window once to find the object's runs (with its shape and mask
statistics), reads each channel over those runs, and finds the ring of ``ring_w`` pixels
around it (a Chebyshev dilation computed separably on the window) whose channels it
then reads likewise, so the total work is linear in the windows' areas. All intensities
are background corrected on the fly with the bilinear grid (no full-resolution
corrected image exists).

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
    ``out``.

    Per object, one pass over its window finds its runs (row, first and end column) and
    the shape and mask statistics; the channels are then read run by run, one channel
    after the other, and the ring pixels (listed in the dilation's order) likewise.
    """
    nch = len(pages)
    h, w = labels.shape
    runs = np.empty((64, 3), dtype=np.int64)  # per object; grown when too small
    saturated = np.empty(64, dtype=np.bool_)  # per object pixel, in run order
    ring = np.empty((64, 2), dtype=np.int64)
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
                if count > max_ring_area:
                    break
            measure_channels = count <= max_ring_area
        if measure_channels and runs.shape[0] < hh * ((ww + 1) // 2):
            runs = np.empty((2 * hh * ((ww + 1) // 2), 3), dtype=np.int64)
        o = out[lab]
        n_runs = _shape_pass(labels, mask, lab, r0, c0, r1, c1, o, runs, measure_channels)
        if not measure_channels:  # edge band / sheet: no intensities, perimeter or ring
            o[PERIM] = np.nan
            o[NSAT] = np.nan
            o[CKSQ] = np.nan
            for c in range(nch):
                o[SUM + c] = np.nan
                o[MAX + c] = np.nan
            continue
        area = int(o[AREA])
        if saturated.shape[0] < area:
            saturated = np.empty(2 * area, dtype=np.bool_)
        for p in range(area):
            saturated[p] = False
        for c in range(nch):
            _channel_pass(pages[c], affine[0, c], affine[1, c], affine[2, c], colgrids[c], ry0,
                          rwy, runs, n_runs, sat_level, saturated, o, c)
        nsat = 0.0
        for p in range(area):
            nsat += saturated[p]
        o[NSAT] = nsat
        o[PERIM] = _perimeter(labels, lab, r0, c0, hh, ww, pweights)
        if ring_w > 0:
            e0 = max(r0 - ring_w, 0)
            f0 = max(c0 - ring_w, 0)
            eh = min(r1 + ring_w, h) - e0
            ew = min(c1 + ring_w, w) - f0
            if ring.shape[0] < eh * ew:
                ring = np.empty((2 * eh * ew, 2), dtype=np.int64)
            n_ring = _ring_pixels(labels, mask, lab, r0, r1, e0, f0, eh, ew, ring_w, ring)
            o[RINGN] = n_ring
            for c in range(nch):
                o[RING + c] = _ring_sum(pages[c], affine[0, c], affine[1, c], affine[2, c],
                                        colgrids[c], ry0, rwy, ring, n_ring)


# Over 80 lines as one numba kernel on purpose: area, moments, box, mask counts and runs are
# gathered in a single sweep of the object's window (one pass over its pixels is the point).
@njit(cache=True, nogil=True)
def _shape_pass(labels, mask, lab, r0, c0, r1, c1, o, runs, keep_runs):
    """Area, moments, bounding box and mask statistics of object ``lab`` (its pixels within
    the window) into ``o``; its runs into ``runs`` (row, first, end column) when
    ``keep_runs``. Returns the number of runs."""
    area = 0.0
    sy = 0.0
    sx = 0.0
    syy = 0.0
    sxx = 0.0
    sxy = 0.0
    rmin = labels.shape[0]
    rmax = -1
    cmin = labels.shape[1]
    cmax = -1
    ndapi = 0.0
    nck = 0.0
    nboth = 0.0
    dsy = 0.0
    dsx = 0.0
    ksy = 0.0
    ksx = 0.0
    n_runs = 0
    for yy in range(r1 - r0):
        y = r0 + yy
        x = c0
        while x < c1:
            if labels[y, x] != lab:
                x += 1
                continue
            xa = x
            while x < c1 and labels[y, x] == lab:
                x += 1
            xb = x  # run [xa, xb)
            if keep_runs:
                runs[n_runs, 0] = y
                runs[n_runs, 1] = xa
                runs[n_runs, 2] = xb
            n_runs += 1
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
            for xx in range(xa, xb):
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
    o[NDAPI] = ndapi
    o[NCK] = nck
    o[NBOTH] = nboth
    o[DSY] = dsy
    o[DSX] = dsx
    o[KSY] = ksy
    o[KSX] = ksx
    return n_runs


def measure_unmeasured(runs, mask, win, objects, out) -> None:
    """The rows of ``objects`` in ``out`` as :func:`measure_objects` writes those of objects
    above ``max_ring_area`` (shape and mask statistics; NaN intensities, saturation and
    perimeter; no ring), from the runs :func:`ctcimg.kernels.label.label_mask` found them
    in rather than from a scan of their windows (the window of the cartridge-edge band in
    a corner frame is the whole frame).

    The objects' pixels must still be those runs, their windows ``win`` the boxes the
    statistics are relative to. Every statistic is a sum of integers (exact in float64
    in any order), so the rows equal those :func:`measure_objects` writes.

    Parameters
    ----------
    runs : ``(offsets, first, last, label)`` from ``label_mask(..., return_runs=True)``
    mask : (H, W) uint8 foreground bits
    win : (n + 1, 4) int64 windows (row 0 unused)
    objects : int64 labels to measure
    out : (n + 1, NRAW) float64, rows of ``objects`` overwritten
    """
    offsets, first, last, run_label = runs
    chosen = np.zeros(win.shape[0], dtype=np.bool_)
    chosen[objects] = True
    _unmeasured_rows(offsets, first, last, run_label, mask, win, chosen, out)


@njit(cache=True, nogil=True)
def _unmeasured_rows(offsets, first, last, run_label, mask, win, chosen, out):
    """:func:`measure_unmeasured` over the runs of the ``chosen`` labels."""
    h = offsets.shape[0] - 1
    for lab in range(win.shape[0]):
        if chosen[lab]:
            o = out[lab]
            for j in range(NRAW):
                o[j] = 0.0
            o[ROW0] = mask.shape[0]
            o[COL0] = mask.shape[1]
            o[ROW1] = -1.0
            o[COL1] = -1.0
    for y in range(h):
        for k in range(offsets[y], offsets[y + 1]):
            lab = run_label[k]
            if not chosen[lab]:
                continue
            o = out[lab]
            r0 = win[lab, 0]
            c0 = win[lab, 1]
            yy = y - r0
            xa = first[k]
            xb = last[k] + 1
            ln = float(xb - xa)
            a = float(xa - c0)
            b = float(xb - 1 - c0)
            srun = (a + b) * ln / 2.0
            o[AREA] += ln
            o[SY] += yy * ln
            o[SYY] += yy * yy * ln
            o[SX] += srun
            o[SXX] += (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) / 6.0
            o[SXY] += yy * srun
            o[ROW0] = min(o[ROW0], y)
            o[ROW1] = max(o[ROW1], y + 1)
            o[COL0] = min(o[COL0], xa)
            o[COL1] = max(o[COL1], xb)
            nd = 0  # the run's mask counts, integers
            nc = 0
            nb = 0
            xd = 0
            xc = 0
            for xx in range(xa, xb):
                m = mask[y, xx]
                d = (m & DAPI_BIT) != 0
                kc = (m & CK_BIT) != 0
                nd += d
                nc += kc
                nb += d & kc
                xd += (xx - c0) * d
                xc += (xx - c0) * kc
            o[NDAPI] += nd
            o[NCK] += nc
            o[NBOTH] += nb
            o[DSY] += yy * nd
            o[DSX] += xd
            o[KSY] += yy * nc
            o[KSX] += xc
    for lab in range(win.shape[0]):
        if chosen[lab]:
            o = out[lab]
            o[PERIM] = np.nan
            o[NSAT] = np.nan
            o[CKSQ] = np.nan
            for c in range(MAX - SUM):  # the channels
                o[SUM + c] = np.nan
                o[MAX + c] = np.nan


@njit(cache=True, nogil=True)
def _channel_pass(page, scale, offset, floor, colgrid, ry0, rwy, runs, n_runs, sat_level,
                  saturated, o, c):
    """Background-corrected sum, maximum (and for CK the sum of squares) of channel ``c``
    over the object's runs into ``o``; ``saturated`` ORed per pixel."""
    gny = colgrid.shape[0]
    total = 0.0
    peak = -np.inf
    squares = 0.0
    p = 0
    for r in range(n_runs):
        y = runs[r, 0]
        i0 = ry0[y]
        i1 = min(i0 + 1, gny - 1)
        wy = rwy[y]
        wy0 = 1.0 - wy
        acc = 0.0
        sq = 0.0
        for xx in range(runs[r, 1], runs[r, 2]):
            value = restored(page[y, xx], scale, offset, floor)
            saturated[p] |= value >= sat_level
            p += 1
            v = value - (wy0 * colgrid[i0, xx] + wy * colgrid[i1, xx])
            acc += v
            peak = max(peak, v)
            sq += v * v
        total += acc
        squares += sq
    o[SUM + c] = total
    o[MAX + c] = peak
    if c == 1:
        o[CKSQ] = squares


@njit(cache=True, nogil=True)
def _perimeter(labels, lab, r0, c0, hh, ww, pweights):
    """skimage's 4-neighbourhood perimeter estimate of object ``lab`` in its window."""
    h, w = labels.shape
    # border pixels: object pixels with a 4-neighbour outside the object / frame
    border = np.empty(hh * ww, dtype=np.uint8)
    for i in range(hh * ww):
        border[i] = 0
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
    # weights of the border pixels (neighbours outside the window are not object pixels,
    # hence not border pixels)
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
    return per


@njit(cache=True, nogil=True)
def _ring_pixels(labels, mask, lab, r0, r1, e0, f0, eh, ew, ring_w, ring):
    """The background pixels within Chebyshev distance ``ring_w`` of object ``lab`` (a
    separable dilation on the extended window ``e0, f0, eh, ew``), column by column, into
    ``ring`` (row, column); returns their number."""
    hor = np.empty(eh * ew, dtype=np.uint8)
    for i in range(eh * ew):
        hor[i] = 0
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
    vert = np.empty(eh, dtype=np.uint8)  # cleared per column
    n = 0
    for xx in range(ew):
        x = f0 + xx
        last = -(1 << 30)
        lastb = 1 << 30
        # vertical dilation of ``hor`` by ring_w, two sweeps over the column
        for yy in range(eh):
            vert[yy] = 0
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
            y = e0 + yy
            if vert[yy] != 0 and mask[y, x] == 0 and labels[y, x] == 0:
                ring[n, 0] = y
                ring[n, 1] = x
                n += 1
    return n


@njit(cache=True, nogil=True)
def _ring_sum(page, scale, offset, floor, colgrid, ry0, rwy, ring, n_ring):
    """Sum of the background-corrected channel over the ring pixels, in their order."""
    gny = colgrid.shape[0]
    total = 0.0
    for k in range(n_ring):
        y = ring[k, 0]
        x = ring[k, 1]
        i0 = ry0[y]
        i1 = min(i0 + 1, gny - 1)
        wy = rwy[y]
        total += restored(page[y, x], scale, offset, floor) - (
            (1.0 - wy) * colgrid[i0, x] + wy * colgrid[i1, x])
    return total


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
