"""CD45 around each event's nucleus: where a leukocyte's membrane marker lies, whatever its CK.

A leukocyte's CD45 sits on its membrane, a ring around the nucleus. When a leukocyte shows
dim nonspecific CK, its DAPI ∪ CK event can be little more than the nucleus, so the CD45
ring lies *outside* the event and the local-background ring around the event sits on the
leukocyte's own CD45 (``cd45_mean − cd45_ring ≈ 0``). A CTC's nucleus is wrapped in
CK-stained cytoplasm instead, so CD45 next to its nucleus is background even when
leukocytes are stuck to the cell: their membranes lie nearer to their own nuclei than to
the CTC's, so the annulus, which keeps only pixels nearer to its own nucleus than to any
other, leaves them out, and a low quantile ignores what blur spills further in, while a
leukocyte's own membrane surrounds its nucleus on every side.

Definition (shared with the slow reference in the tests): with ``d_own(p)`` the Chebyshev
distance from pixel ``p`` to the event's nucleus (its pixels with ``labels == L`` and the
DAPI bit set) and ``d_other(p)`` that to the nearest DAPI+ pixel of any other event, the
annulus of event ``L`` is the set of pixels with ``1 <= d_own <= outer`` and
``d_own <= d_other`` whose label is 0 or ``L`` (other events are excluded). The kernel
returns the ``q`` quantile (NumPy's linear interpolation) of the background-corrected
channel over the annulus and its pixel count (NaN when the annulus is empty).

With ``zone`` > 0 it also measures the *neighbours' zone*: the pixels with
``1 <= d_own <= zone`` and ``d_other < d_own`` (nearer another event's nucleus, whatever
their label), and returns the ``zone_q`` quantile of the channel there and its pixel count.
For a CTC with leukocytes packed around it this is their membrane CD45, next to which what
blur spills into the CTC's annulus is small; a leukocyte's own membrane is about as bright
as its neighbours'.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .background import _select
from .restore import restored
from .threshold import DAPI_BIT


# Over 80 lines as one numba kernel on purpose: the nucleus mask, the chessboard rings and the
# quantile selection share per-object scratch buffers inside one compiled loop; split into
# numba helpers they would pass a dozen arrays each call and cost a specialisation apiece.
@njit(cache=True, nogil=True)
def nucleus_annulus_quantile(page, page_map, labels, mask, win, todo, colgrid, ry0, rwy, outer,
                             q, zone, zone_q):
    """Quantile ``q`` of the background-corrected channel in the annulus around each nucleus.

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
    q : float, quantile within [0, 1]
    zone : int, outer Chebyshev radius of the neighbours' zone (0: not measured)
    zone_q : float, quantile within [0, 1] over the neighbours' zone

    Returns
    -------
    (k, 4) float64 per ``todo`` label: the annulus quantile (NaN if empty) and pixel count,
    the neighbours' zone quantile (NaN if empty or not measured) and pixel count
    """
    h, w = labels.shape
    gny = colgrid.shape[0]
    out = np.empty((todo.shape[0], 4), dtype=np.float64)
    scale, offset, floor = page_map[0], page_map[1], page_map[2]
    reach = max(outer, zone)
    far = reach + 1
    for k in prange(todo.shape[0]):
        lab = todo[k]
        r0 = max(win[lab, 0] - reach, 0)
        r1 = min(win[lab, 2] + reach, h)
        c0 = max(win[lab, 1] - reach, 0)
        c1 = min(win[lab, 3] + reach, w)
        out[k, 0] = np.nan
        out[k, 1] = 0.0
        out[k, 2] = np.nan
        out[k, 3] = 0.0
        if r1 <= r0 or c1 <= c0:
            continue
        # distances are needed up to ``reach`` beyond the window: a nucleus of another
        # event that is nearer than ``reach`` to a measured pixel lies there
        e0 = max(r0 - reach, 0)
        e1 = min(r1 + reach, h)
        f0 = max(c0 - reach, 0)
        f1 = min(c1 + reach, w)
        eh = e1 - e0
        ew = f1 - f0
        # horizontal distance to the nearest own / other nucleus pixel in the same row
        own = np.empty(eh * ew, dtype=np.int64)  # every entry written by the first sweep
        other = np.empty(eh * ew, dtype=np.int64)
        for yy in range(eh):
            y = e0 + yy
            last_own = -far
            last_other = -far
            for xx in range(ew):
                x = f0 + xx
                if (mask[y, x] & DAPI_BIT) != 0 and labels[y, x] != 0:
                    if labels[y, x] == lab:
                        last_own = xx
                    else:
                        last_other = xx
                own[yy * ew + xx] = min(xx - last_own, far)
                other[yy * ew + xx] = min(xx - last_other, far)
            last_own = ew - 1 + far
            last_other = ew - 1 + far
            for xx in range(ew - 1, -1, -1):
                x = f0 + xx
                if (mask[y, x] & DAPI_BIT) != 0 and labels[y, x] != 0:
                    if labels[y, x] == lab:
                        last_own = xx
                    else:
                        last_other = xx
                i = yy * ew + xx
                own[i] = min(own[i], last_own - xx)
                other[i] = min(other[i], last_other - xx)
        values = np.empty((r1 - r0) * (c1 - c0), dtype=np.float64)
        beside = np.empty((r1 - r0) * (c1 - c0), dtype=np.float64)
        # int64 from the start: a literal 0 here has numba compile the quantile's callee
        # a second time, for Literal[int](0), while it infers the loop's types
        count = np.int64(0)
        n_beside = np.int64(0)
        for y in range(r0, r1):
            yy = y - e0
            i0 = ry0[y]
            i1 = min(i0 + 1, gny - 1)
            wy = rwy[y]
            for x in range(c0, c1):
                xx = x - f0
                label = labels[y, x]
                if label != 0 and label != lab and zone == 0:
                    continue
                # Chebyshev distance = min over rows of max(row offset, horizontal distance)
                d_own = far
                d_other = far
                for dy in range(-reach, reach + 1):
                    ny = yy + dy
                    if ny < 0 or ny >= eh:
                        continue
                    d_own = min(d_own, max(abs(dy), own[ny * ew + xx]))
                    d_other = min(d_other, max(abs(dy), other[ny * ew + xx]))
                in_annulus = (1 <= d_own <= outer and d_own <= d_other
                              and (label == 0 or label == lab))
                in_zone = 1 <= d_own <= zone and d_other < d_own
                if not (in_annulus or in_zone):
                    continue
                background = (1.0 - wy) * colgrid[i0, x] + wy * colgrid[i1, x]
                value = restored(page[y, x], scale, offset, floor) - background
                if in_annulus:
                    values[count] = value
                    count += 1
                if in_zone:
                    beside[n_beside] = value
                    n_beside += 1
        out[k, 1] = count
        out[k, 3] = n_beside
        if count:
            out[k, 0] = _linear_quantile(values, count, q)
        if n_beside:
            out[k, 2] = _linear_quantile(beside, n_beside, zone_q)
    return out


@njit(cache=True, nogil=True)
def _linear_quantile(values, count, q):
    """NumPy's linear quantile of ``values[:count]`` from two order statistics (quickselect:
    cheap to compile and linear in the count, unlike np.quantile's sort); reorders values."""
    position = q * (count - 1)
    rank = int(np.floor(position))
    low = _select(values, count, rank)
    if position > rank:
        high = values[rank + 1]  # after selection everything right of rank is >= low
        for i in range(rank + 2, count):
            high = min(high, values[i])
        low += (position - rank) * (high - low)
    return low
