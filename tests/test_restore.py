"""restore_page (vectorised, in place) equals a plain float64 restoration of CellTracks pages."""

from __future__ import annotations

import numpy as np
import pytest

from ctcimg.io.tiff import OFFSET_16BIT, PageHeader, restore_page


def reference_restore(stored: np.ndarray, low, high) -> np.ndarray:
    """value12 = low + stored * (high - low) / max(stored), after removing a +32768 offset."""
    values = stored.astype(np.float64)
    if stored.dtype.kind in "ui" and stored.dtype.itemsize == 2 and values.max() > 32767:
        values = np.maximum(values - OFFSET_16BIT, 0) if low is None else values - OFFSET_16BIT
    if low is None:
        return values.astype(np.float32)
    peak = values.max()
    return (low + values * ((high - low) / peak if peak > 0 else 0.0)).astype(np.float32)


@pytest.mark.parametrize(("dtype", "top", "stretched", "offset"), [
    (np.uint8, 255, True, False),
    (np.uint16, 4095, True, False),
    (np.uint16, 4095, False, False),
    (np.uint16, 4095, False, True),
    (np.uint16, 4095, True, True),
    (">u2", 4095, True, False),
    (np.float32, 4095, False, False),
])
def test_restore_kernel_equals_reference(dtype, top, stretched, offset):
    rng = np.random.default_rng(1)
    stored = rng.integers(0, top + 1, size=(37, 53)).astype(dtype)
    stored[5, 7] = top
    if offset:
        stored = (stored.astype(np.uint16) + OFFSET_16BIT).astype(np.uint16)
    low, high = (120.0, 3900.0) if stretched else (None, None)
    header = PageHeader(stored.shape, stored.dtype, low, high)
    got = restore_page(stored, header)
    np.testing.assert_allclose(got, reference_restore(stored, low, high), rtol=1e-6, atol=1e-3)
    assert got.dtype == np.float32


def test_blank_stretched_page_restores_to_low():
    stored = np.zeros((4, 5), np.uint8)
    got = restore_page(stored, PageHeader(stored.shape, stored.dtype, 37.0, 37.0))
    assert (got == 37.0).all()
