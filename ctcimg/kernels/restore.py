"""Per-pixel restoration of stored pages to the 12-bit scale inside the kernels.

The kernels read channels as stored (uint8, uint16 or float pages) together with the
``(3, C)`` float32 map of :class:`ctcimg.io.tiff.StoredFrame`, and restore each pixel as
they read it — the same float32 arithmetic as :func:`ctcimg.io.tiff.apply_affine`, so a
kernel gives identical results on stored pages and on the restored frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .threads import claim, run_parts


@njit(cache=True)
def restored(value, scale, offset, floor):
    """``max(float32(value) · scale + offset, floor)`` in float32 (NaN stays NaN)."""
    x = np.float32(value) * scale + offset
    if x < floor:
        return floor
    return x


@njit(cache=True, nogil=True)
def as_apply_affine(value, scale, offset, floor):
    """One stored value on the 12-bit scale exactly as :func:`ctcimg.io.tiff.apply_affine`
    computes it (for kernels that replace NumPy code built on it): no product when the
    scale is 1, no sum when the offset is 0, the floor as NumPy's maximum."""
    x = np.float32(value)
    if scale != 1.0:
        x = x * scale
    if offset != 0.0:
        x = x + offset
    if x < floor:
        x = floor
    return x


def restore_frame(pages, affine, out) -> None:
    """Write the stored ``pages`` on the 12-bit scale into ``out`` (C, H, W) float32, rows
    shared out among threads: one fused pass per page where NumPy takes two.

    Bit for bit :meth:`ctcimg.io.tiff.StoredFrame.restore` (``apply_affine``): the offset
    is added only when non-zero (so a stored −0.0 stays −0.0) and the floor applied only
    when finite.
    """
    blocks = (out.shape[1] + _ROW_BLOCK - 1) // _ROW_BLOCK
    run_parts(_restore_rows, len(pages) * blocks, pages, affine, out)


#: Rows a thread restores per item it takes (one atomic add per item).
_ROW_BLOCK = 32


@njit(cache=True, nogil=True)
def _restore_rows(work, pages, affine, out):
    height = out.shape[1]
    blocks = (height + _ROW_BLOCK - 1) // _ROW_BLOCK
    while True:
        index = claim(work)
        if index >= work[1]:
            break
        c = index // blocks
        first = (index - c * blocks) * _ROW_BLOCK
        scale = affine[0, c]
        offset = affine[1, c]
        floor = affine[2, c]
        for y in range(first, min(first + _ROW_BLOCK, height)):
            src = pages[c][y]
            dst = out[c, y]
            for x in range(dst.shape[0]):
                value = np.float32(src[x]) * scale
                if offset != 0:
                    value = value + offset
                if value < floor:
                    value = floor
                dst[x] = value
