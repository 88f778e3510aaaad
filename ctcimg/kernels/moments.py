"""The weights of :func:`ctcimg.focus.window_moments`: each event's window pixels above the
median of the free ring around it, gathered in one pass per event.

For each event (window centre inside the frame by the ring's radius) the kernel reads the
ring pixels that no event covers and takes their median (the mean of the two middle
values in float32 when their number is even), restores the window's pixels as
:func:`ctcimg.io.tiff.apply_affine` does, and writes ``value − median`` for the pixels of
the event itself or of no event (0 for other events' pixels), in the order of the
window's offsets. The caller sums them against the offsets' powers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .background import select_among_ties
from .restore import as_apply_affine


@njit(cache=True, nogil=True)
def window_weights(page, page_map, labels, event_labels, cy, cx, ring_dy, ring_dx, inner_dy,
                   inner_dx, min_free, min_usable, weights):
    """Background-subtracted window pixels of each event into ``weights`` (events ×
    inner offsets, float32), and whether its window can be measured.

    Parameters
    ----------
    page, page_map : the channel as stored and its (scale, offset, floor) float32 map
    labels : (H, W) label image; event ``i`` is ``event_labels[i]``, centred at
        ``(cy[i], cx[i])`` at least the ring's radius inside the frame
    ring_dy, ring_dx, inner_dy, inner_dx : int64 offsets of the ring and window pixels
    min_free : float, fewest event-free ring pixels for a background (else 0 is used)
    min_usable : float, least fraction of window pixels that are the event's or free

    Returns
    -------
    (events,) bool: enough free ring pixels and few enough other events' pixels.
    """
    scale = page_map[0]
    offset = page_map[1]
    floor = page_map[2]
    n_ring = ring_dy.shape[0]
    n_inner = inner_dy.shape[0]
    ring = np.empty(n_ring, dtype=np.float32)
    ok = np.zeros(cy.shape[0], dtype=np.bool_)
    for e in range(cy.shape[0]):
        y = cy[e]
        x = cx[e]
        lab = event_labels[e]
        n_free = np.int64(0)  # not a literal 0: one specialisation of the selection
        for k in range(n_ring):
            yy = y + ring_dy[k]
            xx = x + ring_dx[k]
            if labels[yy, xx] == 0:
                ring[n_free] = as_apply_affine(page[yy, xx], scale, offset, floor)
                n_free += 1
        background = np.float32(0.0)
        enough = n_free >= min_free
        if enough:
            lower = select_among_ties(ring, n_free, (n_free - 1) // 2)
            upper = lower
            if n_free % 2 == 0:  # after selection everything right of it is >= it
                upper = ring[(n_free - 1) // 2 + 1]
                for k in range((n_free - 1) // 2 + 2, n_free):
                    if ring[k] < upper:
                        upper = ring[k]
            background = np.float32((lower + upper) / 2)  # the float32 sum, halved exactly
        usable = 0
        for k in range(n_inner):
            yy = y + inner_dy[k]
            xx = x + inner_dx[k]
            other = labels[yy, xx]
            if other == 0 or other == lab:
                usable += 1
                weights[e, k] = as_apply_affine(page[yy, xx], scale, offset, floor) - background
            else:
                weights[e, k] = 0.0
        ok[e] = enough and np.float64(usable) / n_inner >= min_usable
    return ok
