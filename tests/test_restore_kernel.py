"""The fused restore kernel of the reader against StoredFrame.restore (NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from ctcimg.io.tiff import StoredFrame
from ctcimg.kernels.restore import restore_frame


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("offset, floor", [(0.0, -np.inf), (3.25, -np.inf), (-32768.0, 0.0)])
def test_restore_kernel_is_bit_identical_to_numpy(dtype, offset, floor):
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        pages = rng.normal(0, 3000, (4, 37, 53)).astype(dtype)
        pages[0, 0, :4] = [-0.0, np.nan, np.inf, -np.inf]
    else:
        info = np.iinfo(dtype)
        pages = rng.integers(info.min, info.max, (4, 37, 53), endpoint=True).astype(dtype)
    affine = np.array([[1.0, 16.058823, 0.0625, 1 / 3], [offset] * 4, [floor] * 4],
                      dtype=np.float32)
    frame = StoredFrame(tuple(np.ascontiguousarray(p) for p in pages), affine)
    expected = frame.restore()
    got = np.full(expected.shape, 12345.0, dtype=np.float32)
    restore_frame(frame.pages, frame.affine, got)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_reader_restores_the_demo_cartridge_as_numpy_does():
    from pathlib import Path

    from ctcimg.io.cellsearch import read_cartridge

    cartridge = read_cartridge(Path(__file__).resolve().parent.parent / "fixtures" / "demo"
                               / "SIM000001.1.1")
    for index in (0, len(cartridge) - 1):
        expected = cartridge.read_stored(index).restore()
        assert np.array_equal(cartridge.read_frame(index).view(np.uint32),
                              expected.view(np.uint32))
