"""The reader's direct parse of plain frame files gives what tifffile gives."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from ctcimg.io.cellsearch import _plain_pages
from ctcimg.io.tiff import check_page_header, page_fields, write_celltracks_frame


def _frame(tmp_path, bits, encoding, compression=None):
    rng = np.random.default_rng(bits)
    pages = rng.integers(0, 4096, (4, 30, 41)).astype(np.float64)
    path = tmp_path / f"f{bits}{encoding}{compression}.tif"
    write_celltracks_frame(path, pages, bits=bits, encoding=encoding, compression=compression)
    return path


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("encoding", ["stretch", "stretch_offset", "offset", "raw"])
def test_plain_pages_equal_tifffile(tmp_path, bits, encoding):
    path = _frame(tmp_path, bits, encoding)
    data = memoryview(bytearray(path.read_bytes()))
    plain = _plain_pages(data, 4)
    assert plain is not None
    with tifffile.TiffFile(path) as tif:
        for (pixels, header), page in zip(plain, tif.pages, strict=True):
            assert header == check_page_header(path, 0, page_fields(page), len(data))
            assert pixels.dtype == page.asarray().dtype
            assert np.array_equal(pixels, page.asarray())


def test_anything_else_is_left_to_tifffile(tmp_path):
    data = bytearray(_frame(tmp_path, 16, "stretch").read_bytes())
    assert _plain_pages(memoryview(data), 3) is None  # more pages than expected
    assert _plain_pages(memoryview(data), 5) is None  # fewer
    assert _plain_pages(memoryview(data[:-100]), 4) is None  # truncated pixel data
    assert _plain_pages(memoryview(data[:6]), 4) is None
    compressed = _frame(tmp_path, 16, "stretch", compression="zlib").read_bytes()
    assert _plain_pages(memoryview(bytearray(compressed)), 4) is None
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8))
    assert _plain_pages(memoryview(bytearray((tmp_path / "rgb.tif").read_bytes())), 1) is None
