"""CD45 around each event's nucleus: where a leukocyte's membrane marker lies, whatever its CK.

A leukocyte's CD45 sits on its membrane, a ring around the nucleus. When a leukocyte shows
dim nonspecific CK, its DAPI ∪ CK event can be little more than the nucleus, so the CD45
ring lies *outside* the event and the local-background ring around the event sits on the
leukocyte's own CD45 (``cd45_mean − cd45_ring ≈ 0``). A CTC's nucleus is wrapped in
CK-stained cytoplasm instead, so CD45 next to its nucleus is background even when a
leukocyte is stuck to the cell: only the stuck cell's contact arc can reach the annulus,
and the median ignores it.

Definition (shared with the slow reference in the tests): the annulus of event ``L`` is
the set of pixels at Chebyshev distance ``1 .. outer`` from the event's nucleus (its
pixels with ``labels == L`` and the DAPI bit set) whose label is 0 or ``L`` (other events
are excluded). The kernel returns the median of the background-corrected CD45 over the
annulus and its pixel count (median NaN when the annulus is empty).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .restore import restored
from .threshold import DAPI_BIT


@njit(cache=True, nogil=True)
def nucleus_annulus_median(page, page_map, labels, mask, win, todo, colgrid, ry0, rwy, outer):
    """Median background-corrected channel value in the annulus around each event's nucleus.

    Parameters
    ----------
    page : (H, W) stored channel (any real dtype)
    page_map : (3,) float32 map of the page to the 12-bit scale (scale, offset, floor)
    labels : (H, W) int32 event labels
    mask : (H, W) uint8 foreground bits (DAPI = 1)
    win : (n + 1, 4) int64 search windows ``row0, col0, row1, col1`` (exclusive ends)
    todo : (k,) int64 labels to measure
    colgrid : (ny, W) float64 background grid interpolated along x (``column_grid``)
    ry0, rwy : row interpolation indices / weights
    outer : int, outer Chebyshev radius of the annulus, pixels

    Returns
    -------
    (k, 2) float64: median (NaN if the annulus is empty) and pixel count, per ``todo`` label
    """
    h, w = labels.shape
    gny = colgrid.shape[0]
    out = np.full((todo.shape[0], 2), np.nan)
    scale, offset, floor = page_map[0], page_map[1], page_map[2]
    far = outer + 1
    for k in prange(todo.shape[0]):
        lab = todo[k]
        r0 = max(win[lab, 0] - outer, 0)
        r1 = min(win[lab, 2] + outer, h)
        c0 = max(win[lab, 1] - outer, 0)
        c1 = min(win[lab, 3] + outer, w)
        hh = r1 - r0
        ww = c1 - c0
        out[k, 1] = 0.0
        if hh <= 0 or ww <= 0:
            continue
        # horizontal distance to the nearest nucleus pixel in the same row, capped at far
        hdist = np.full(hh * ww, far, dtype=np.int64)
        for yy in range(hh):
            y = r0 + yy
            last = -far
            for xx in range(ww):
                x = c0 + xx
                if labels[y, x] == lab and (mask[y, x] & DAPI_BIT) != 0:
                    last = xx
                hdist[yy * ww + xx] = min(xx - last, far)
            last = ww - 1 + far
            for xx in range(ww - 1, -1, -1):
                x = c0 + xx
                if labels[y, x] == lab and (mask[y, x] & DAPI_BIT) != 0:
                    last = xx
                hdist[yy * ww + xx] = min(hdist[yy * ww + xx], last - xx)
        values = np.empty(hh * ww, dtype=np.float64)
        count = 0
        for yy in range(hh):
            y = r0 + yy
            i0 = ry0[y]
            i1 = min(i0 + 1, gny - 1)
            wy = rwy[y]
            for xx in range(ww):
                x = c0 + xx
                other = labels[y, x]
                if other != 0 and other != lab:
                    continue
                # Chebyshev distance = min over rows of max(row offset, horizontal distance)
                dist = far
                for dy in range(-outer, outer + 1):
                    ny = yy + dy
                    if ny < 0 or ny >= hh:
                        continue
                    d = max(abs(dy), hdist[ny * ww + xx])
                    if d < dist:
                        dist = d
                if dist < 1 or dist > outer:
                    continue
                background = (1.0 - wy) * colgrid[i0, x] + wy * colgrid[i1, x]
                values[count] = restored(page[y, x], scale, offset, floor) - background
                count += 1
        out[k, 1] = count
        if count:
            out[k, 0] = np.median(values[:count])
    return out
