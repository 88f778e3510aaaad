"""Split touching cells: one event per DAPI nucleus, by geodesic Voronoi from the nuclei.

Definition (shared with the slow reference in the tests):

- The *nuclei* of object ``L`` are the 8-connected components of its DAPI-positive pixels
  (``labels == L`` and ``mask & DAPI_BIT``) with at least ``min_nucleus_px`` pixels,
  numbered 0, 1, … in raster order of their first pixel.
- Objects with fewer than two nuclei are left alone.
- Otherwise every pixel ``p`` of the object goes to the nucleus with the smallest
  geodesic distance ``D_s(p)`` (8-connected steps inside the object; nucleus pixels are
  at distance 0 from their own nucleus); ties go to the lowest nucleus index.
  Nucleus 0 keeps label ``L``; nucleus ``i >= 1`` gets a new label appended after the
  existing ones.

The kernel does this with one layer-synchronous multi-source BFS per object (a pixel first
reached at distance ``d + 1`` takes the minimum nucleus index over its distance-``d``
neighbours), so the work is linear in the object's bounding box.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .threshold import DAPI_BIT

_DY = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=np.int64)
_DX = np.array([-1, 0, 1, -1, 1, -1, 0, 1], dtype=np.int64)


@njit(cache=True)
def _nuclei(labels, mask, lab, r0, c0, r1, c1, min_px, nuc, queue):
    """Label the nuclei of object ``lab`` inside its bbox into ``nuc`` (local, -1 = none).

    Returns the number of nuclei with at least ``min_px`` pixels; those are renumbered
    0..k-1 in raster order, smaller DAPI components are reset to -1.
    """
    hh = r1 - r0
    ww = c1 - c0
    for i in range(hh * ww):
        nuc[i] = -1
    ncomp = 0
    sizes = np.empty(hh * ww + 1, dtype=np.int64)  # entries 0 .. ncomp - 1 are set
    for yy in range(hh):
        for xx in range(ww):
            i0 = yy * ww + xx
            y = r0 + yy
            x = c0 + xx
            if nuc[i0] != -1 or labels[y, x] != lab or (mask[y, x] & DAPI_BIT) == 0:
                continue
            # flood fill a new DAPI component
            head = 0
            tail = 0
            queue[tail] = i0
            tail += 1
            nuc[i0] = ncomp
            while head < tail:
                i = queue[head]
                head += 1
                qy = i // ww
                qx = i - qy * ww
                for d in range(8):
                    ny = qy + _DY[d]
                    nx = qx + _DX[d]
                    if ny < 0 or ny >= hh or nx < 0 or nx >= ww:
                        continue
                    j = ny * ww + nx
                    if nuc[j] != -1:
                        continue
                    if labels[r0 + ny, c0 + nx] != lab or (mask[r0 + ny, c0 + nx] & DAPI_BIT) == 0:
                        continue
                    nuc[j] = ncomp
                    queue[tail] = j
                    tail += 1
            sizes[ncomp] = tail
            ncomp += 1
    # renumber the big-enough components 0..k-1 (raster order is preserved)
    remap = np.empty(ncomp + 1, dtype=np.int64)
    k = 0
    for c in range(ncomp):
        remap[c] = -1
        if sizes[c] >= min_px:
            remap[c] = k
            k += 1
    if k != ncomp:
        for i in range(hh * ww):
            if nuc[i] >= 0:
                nuc[i] = remap[nuc[i]]
    return k


@njit(cache=True, nogil=True)
def count_nuclei(labels, mask, bbox, n, min_px):
    """Number of nuclei (DAPI components ≥ ``min_px`` pixels) of each object 1..n."""
    out = np.empty(n + 1, dtype=np.int64)
    out[0] = 0
    for lab in range(1, n + 1):
        r0, c0, r1, c1 = bbox[lab, 0], bbox[lab, 1], bbox[lab, 2], bbox[lab, 3]
        size = (r1 - r0) * (c1 - c0)
        nuc = np.empty(size, dtype=np.int64)
        queue = np.empty(size, dtype=np.int64)
        out[lab] = _nuclei(labels, mask, lab, r0, c0, r1, c1, min_px, nuc, queue)
    return out


@njit(cache=True, nogil=True)
def objects_with_bit(labels, mask, bbox, objects, bit):
    """Whether each object in ``objects`` has a pixel with ``bit`` set in ``mask`` (within
    its box ``bbox[label]``), as a bool array in the order of ``objects``."""
    out = np.zeros(len(objects), dtype=np.bool_)
    for i in range(len(objects)):
        lab = objects[i]
        for y in range(bbox[lab, 0], bbox[lab, 2]):
            for x in range(bbox[lab, 1], bbox[lab, 3]):
                if labels[y, x] == lab and mask[y, x] & bit:
                    out[i] = True
                    break
            if out[i]:
                break
    return out


@njit(cache=True, nogil=True)
def split_objects(labels, mask, bbox, todo, new_base, min_px):
    """Split each object in ``todo`` in place by geodesic Voronoi from its nuclei.

    Parameters
    ----------
    labels : (H, W) int32, modified in place
    mask : (H, W) uint8 foreground bits
    bbox : (n + 1, 4) int64 object boxes
    todo : int64 array of labels to split (each with ≥ 2 nuclei)
    new_base : int64 array, first new label for ``todo[i]``'s nuclei 1, 2, …
    min_px : int, minimum nucleus size
    """
    for t in range(todo.shape[0]):
        lab = todo[t]
        r0, c0, r1, c1 = bbox[lab, 0], bbox[lab, 1], bbox[lab, 2], bbox[lab, 3]
        hh = r1 - r0
        ww = c1 - c0
        size = hh * ww
        nuc = np.empty(size, dtype=np.int64)
        queue = np.empty(size, dtype=np.int64)
        k = _nuclei(labels, mask, lab, r0, c0, r1, c1, min_px, nuc, queue)
        if k < 2:
            continue
        dist = np.empty(size, dtype=np.int64)
        head = 0
        tail = 0
        for i in range(size):
            dist[i] = -1
            if nuc[i] >= 0:
                dist[i] = 0
                queue[tail] = i
                tail += 1
        while head < tail:
            i = queue[head]
            head += 1
            qy = i // ww
            qx = i - qy * ww
            di = dist[i] + 1
            s = nuc[i]
            for d in range(8):
                ny = qy + _DY[d]
                nx = qx + _DX[d]
                if ny < 0 or ny >= hh or nx < 0 or nx >= ww:
                    continue
                j = ny * ww + nx
                if labels[r0 + ny, c0 + nx] != lab:
                    continue
                if dist[j] == -1:
                    dist[j] = di
                    nuc[j] = s
                    queue[tail] = j
                    tail += 1
                elif dist[j] == di and s < nuc[j]:
                    nuc[j] = s
        base = new_base[t]
        for i in range(size):
            if dist[i] >= 0 and nuc[i] > 0:
                yy = i // ww
                labels[r0 + yy, c0 + i - yy * ww] = base + nuc[i] - 1
