"""restore_page (vectorised, in place) equals a plain float64 restoration of CellTracks pages."""

from __future__ import annotations

import numpy as np
import pytest

from ctcimg.io.tiff import OFFSET_16BIT, PageHeader, restore_page


def reference_restore(stored: np.ndarray, low, high) -> np.ndarray:
    """ACCEPT's order: value = low + stored * (high - low) / max(stored) (stretched pages),
    then subtract 32768, clamping at 0, when the restored maximum exceeds 32767."""
    values = stored.astype(np.float64)
    if low is not None:
        peak = values.max()
        values = low + values * ((high - low) / peak if peak > 0 else 0.0)
    if values.max() > 32767:
        values = np.maximum(values - OFFSET_16BIT, 0)
    return values.astype(np.float32)


@pytest.mark.parametrize(("dtype", "top", "stretched", "offset"), [
    (np.uint8, 255, True, False),
    (np.uint16, 4095, True, False),
    (np.uint16, 65535, True, False),   # full-range 16-bit stretch, as the instrument writes
    (np.uint16, 4095, False, False),
    (np.uint16, 4095, False, True),    # raw values + 32768
    (np.uint16, 65535, True, True),    # offset carried by the stretch limits
    (">u2", 65535, True, False),
    (np.float32, 4095, False, False),
])
def test_restore_kernel_equals_reference(dtype, top, stretched, offset):
    rng = np.random.default_rng(1)
    stored = rng.integers(0, top + 1, size=(37, 53)).astype(dtype)
    stored[5, 7] = top
    if offset and not stretched:
        stored = (stored.astype(np.uint16) + OFFSET_16BIT).astype(np.uint16)
    low, high = (120.0, 3900.0) if stretched else (None, None)
    if offset and stretched:
        low, high = low + OFFSET_16BIT, high + OFFSET_16BIT
    header = PageHeader(stored.shape, stored.dtype, low, high)
    got = restore_page(stored, header)
    np.testing.assert_allclose(got, reference_restore(stored, low, high), rtol=1e-6, atol=1e-3)
    assert got.dtype == np.float32


def test_blank_stretched_page_restores_to_low():
    stored = np.zeros((4, 5), np.uint8)
    got = restore_page(stored, PageHeader(stored.shape, stored.dtype, 37.0, 37.0))
    assert (got == 37.0).all()


def test_full_range_16bit_page_is_not_taken_for_an_offset_one():
    """A page stretched to 0-65535 with limits 46..3283 restores to 46..3283 (the offset is
    judged on the restored values, not on stored values above 32767)."""
    rng = np.random.default_rng(2)
    original = rng.integers(46, 3284, size=(20, 30)).astype(np.float64)
    original[0, 0], original[0, 1] = 46, 3283
    stored = np.rint((original - 46) * (65535 / (3283 - 46))).astype(np.uint16)
    got = restore_page(stored, PageHeader(stored.shape, stored.dtype, 46.0, 3283.0))
    assert got.min() == pytest.approx(46.0) and got.max() == pytest.approx(3283.0, abs=1e-3)
    assert np.abs(got - original).max() <= (3283 - 46) / 65535 / 2 + 1e-3


def test_offset_in_the_stretch_limits_is_removed():
    stored = np.array([[0, 65535], [32768, 100]], np.uint16)
    got = restore_page(stored, PageHeader(stored.shape, stored.dtype, 32768.0 + 10,
                                          32768.0 + 4010))
    np.testing.assert_allclose(got, [[10, 4010], [10 + 32768 * 4000 / 65535,
                                                  10 + 100 * 4000 / 65535]], atol=1e-3)
