"""Per-pixel restoration of stored pages to the 12-bit scale inside the kernels.

The kernels read channels as stored (uint8, uint16 or float pages) together with the
``(3, C)`` float32 map of :class:`ctcimg.io.tiff.StoredFrame`, and restore each pixel as
they read it — the same float32 arithmetic as :func:`ctcimg.io.tiff.apply_affine`, so a
kernel gives identical results on stored pages and on the restored frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def restored(value, scale, offset, floor):
    """``max(float32(value) · scale + offset, floor)`` in float32 (NaN stays NaN)."""
    x = np.float32(value) * scale + offset
    if x < floor:
        return floor
    return x
