"""The 48 × 48 thumbnails of :func:`ctcimg.score._thumbnails` that lie wholly inside the
frame, cut from the stored pages in one pass per crop and channel.

Each crop's black level is the 10th percentile (lower order statistic) of its stored
values, counted for 8-bit pages, selected for others; the restoration is monotone, so
restored it is the restored crop's order statistic. Every pixel is then restored as
:func:`ctcimg.io.tiff.apply_affine` does, and ``(value − black) · gain`` clipped to
0-255 and truncated to uint8, all in float32 as NumPy computed it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from .background import select_among_ties
from .restore import as_apply_affine


@njit(cache=True, nogil=True)
def inside_thumbnails(pages, affine, row0, col0, side, gain, out):
    """Crops of ``side`` × ``side`` pixels with corners ``(row0[i], col0[i])`` (wholly
    inside the frame) into ``out`` (n, C, side, side) uint8; ``gain`` (C,) float32."""
    rank = (side * side - 1) // 10
    counts = np.zeros(256, dtype=np.int64)
    scratch = np.empty(side * side, dtype=pages[0].dtype)
    for i in range(row0.shape[0]):
        r0 = row0[i]
        c0 = col0[i]
        for c in range(len(pages)):
            page = pages[c]
            scale = affine[0, c]
            offset = affine[1, c]
            floor = affine[2, c]
            black = as_apply_affine(_stored_black(page, r0, c0, side, rank, counts, scratch),
                                    scale, offset, floor)
            g = gain[c]
            for y in range(side):
                src = page[r0 + y]
                dst = out[i, c, y]
                # unsigned columns: numba cannot wrap them around, so LLVM vectorises
                for x in range(np.uint64(c0), np.uint64(c0 + side)):
                    v = (as_apply_affine(src[x], scale, offset, floor) - black) * g
                    if v < 0:
                        v = np.float32(0.0)
                    elif v > 255:
                        v = np.float32(255.0)
                    dst[x - np.uint64(c0)] = np.uint8(v)


def _stored_black(page, r0, c0, side, rank, counts, scratch):
    """The ``rank``-th smallest stored value of the crop; implemented for the kernels by
    the overload below (``counts``: 256 zeros, left zero; ``scratch``: side² values)."""
    raise NotImplementedError


@overload(_stored_black)
def _stored_black_kernel(page, r0, c0, side, rank, counts, scratch):
    """8-bit pages: from the histogram of the crop; others: selected."""
    if isinstance(page, types.Array) and page.dtype == types.uint8:
        def counted(page, r0, c0, side, rank, counts, scratch):
            for y in range(r0, r0 + side):
                for x in range(c0, c0 + side):
                    counts[page[y, x]] += 1
            below = 0
            level = 0
            while below + counts[level] <= rank:
                below += counts[level]
                level += 1
            for v in range(256):
                counts[v] = 0
            return np.uint8(level)

        return counted

    def selected(page, r0, c0, side, rank, counts, scratch):
        k = 0
        for y in range(r0, r0 + side):
            for x in range(c0, c0 + side):
                scratch[k] = page[y, x]
                k += 1
        return select_among_ties(scratch, side * side, rank)

    return selected
