"""CellTracks TIFF pages: header checks, 12-bit restoration, and the writer the simulator uses.

CellTracks Analyzer II stores one multipage TIFF per frame, one page per channel.
Pages are contrast-stretched: private tag 754 marks a CellTracks file and tags 755
and 756 hold, per page, the lower and upper limits of the original 12-bit range, so

    value12 = low + stored * (high - low) / max(stored)

Some exports carry an offset of 32768, in the stretch limits or, for unstretched pages, in
the raw values. Restoration follows ACCEPT's order (the only public reader): undo the
stretch first, then subtract 32768 when the *restored* maximum exceeds 32767. The offset
is never judged on the stored values, since a 16-bit stretched page uses the whole
0-65535 range.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcimg.channels import MAX_12BIT
from ctcimg.errors import FrameShapeError, TiffError
from ctcimg.io.atomic import write_bytes_atomic

CELLTRACKS_TAG = 754
LOW_TAG = 755
HIGH_TAG = 756
OFFSET_16BIT = 32768
#: Largest frame side accepted; anything bigger is rejected from the header.
MAX_SIDE_PX = 16384
#: Largest lower/upper stretch limit (tags 755/756) accepted: the 16-bit range.
MAX_STRETCH_LIMIT = 65535
#: Largest stretched value written per bit depth: the whole stored range, as the instrument does.
STRETCH_MAX = {8: 255, 16: 65535}
#: Page encodings :func:`write_celltracks_frame` writes.
ENCODINGS = ("stretch", "stretch_offset", "offset", "raw")


@dataclass(frozen=True)
class PageHeader:
    """What the header of one TIFF page says, read without touching pixel data."""

    shape: tuple[int, int]
    dtype: np.dtype
    low: float | None
    high: float | None

    @property
    def is_stretched(self) -> bool:
        return self.low is not None and self.high is not None


def read_headers(path: Path) -> list[PageHeader]:
    """Read and check the page headers of one frame file.

    Raises
    ------
    TiffError
        The file is not a TIFF, is truncated, or a page's data lies past the end of file.
    FrameShapeError
        A page is not a single 2-D plane of an integer or float type, or its size is absurd.
    """
    import tifffile

    size = file_size(path)
    try:
        with tifffile.TiffFile(path) as tif:
            check_ifd_chain(tif, path, size)
            headers = []
            for index, page in enumerate(tif.pages):
                headers.append(check_page_header(path, index, page, size))
    except (TiffError, FrameShapeError):
        raise
    except Exception as err:  # tifffile raises many types for malformed files
        raise TiffError(f"not a readable TIFF ({describe_error(err)})", path) from None
    if not headers:
        raise TiffError("TIFF holds no pages", path)
    return headers


def check_ifd_chain(tif, path: Path, size: int) -> None:
    """Raise TiffError when the chain of page directories points past the end of the file.

    tifffile stops quietly at such a link and reports fewer pages; for a frame that is
    a truncated file, not a frame with a missing channel.
    """
    fmt = tif.tiff
    handle = tif.filehandle
    last = tif.pages[-1] if len(tif.pages) else None
    if last is None:
        return
    handle.seek(last.offset)
    (n_tags,) = struct.unpack(fmt.tagnoformat, handle.read(fmt.tagnosize))
    handle.seek(last.offset + fmt.tagnosize + n_tags * fmt.tagsize)
    raw = handle.read(fmt.offsetsize)
    if len(raw) < fmt.offsetsize:
        raise TiffError(f"truncated inside page {len(tif.pages)}'s directory", path)
    (next_offset,) = struct.unpack(fmt.offsetformat, raw)
    if next_offset >= size:
        raise TiffError(
            f"truncated: page {len(tif.pages) + 1} starts at byte {next_offset} but the file "
            f"has {size}",
            path,
        )


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as err:
        raise TiffError(f"cannot open ({err.strerror})", path) from None


def check_page_header(path: Path, index: int, page, file_size: int) -> PageHeader:
    shape = tuple(int(s) for s in page.shape)
    samples = int(getattr(page, "samplesperpixel", 1))
    if samples > 1:  # e.g. tifffile.imwrite's default for a (4, H, W) stack, or RGB(A)
        raise FrameShapeError(
            f"page {index + 1} holds {samples} samples per pixel (shape {shape}); ctcimg reads "
            "one channel per page: write the stack one page per channel, e.g. "
            "tifffile.imwrite(path, stack, photometric='minisblack')", path)
    if len(shape) != 2:
        raise FrameShapeError(f"page {index + 1} has shape {shape}; expected one 2-D plane", path)
    height, width = shape
    if not (0 < height <= MAX_SIDE_PX and 0 < width <= MAX_SIDE_PX):
        raise FrameShapeError(
            f"page {index + 1} is {width} x {height} px; absurd frame size "
            f"(limit {MAX_SIDE_PX} px a side)",
            path,
        )
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype is None or dtype.kind not in "uif":
        raise FrameShapeError(f"page {index + 1} has unsupported sample type {page.dtype}", path)
    end = max(
        (int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)),
        default=0,
    )
    if end > file_size:
        raise TiffError(
            f"truncated: page {index + 1} needs {end} bytes but the file has {file_size}", path
        )
    stored_bytes = sum(int(n) for n in page.databytecounts)
    needed = height * width * dtype.itemsize
    if (page.compression == 1 and int(page.bitspersample) == 8 * dtype.itemsize
            and stored_bytes < needed):  # else decoding would read past the strips
        raise TiffError(
            f"page {index + 1} is {width} x {height} {dtype} ({needed} bytes) but its strips "
            f"hold {stored_bytes} bytes", path)
    tags = page.tags
    low = high = None
    if CELLTRACKS_TAG in tags or (LOW_TAG in tags and HIGH_TAG in tags):
        try:
            low = _stretch_limit(tags[LOW_TAG])
            high = _stretch_limit(tags[HIGH_TAG])
        except (KeyError, IndexError, TypeError, ValueError, OverflowError, ZeroDivisionError):
            raise TiffError(
                f"page {index + 1} is marked CellTracks (tag 754) but tags 755/756 "
                "(12-bit range) are missing or not numbers",
                path,
            ) from None
        # bounded on both sides, which also refuses NaN and ±inf (+inf passed 0 <= low <= high)
        if not 0 <= low <= high <= MAX_STRETCH_LIMIT:
            raise TiffError(
                f"page {index + 1} has an invalid 12-bit range {low:g}..{high:g} (tags 755/756 "
                f"must be finite with 0 <= low <= high <= {MAX_STRETCH_LIMIT})",
                path,
            )
    return PageHeader((height, width), dtype, low, high)


def _stretch_limit(tag) -> float:
    """The first value of tag 755 or 756 as a float; raises for text or an empty tag."""
    value = tag.value
    if isinstance(value, str):
        raise TypeError("stretch limit stored as text")
    if isinstance(value, bytes):  # BYTE / UNDEFINED tags read as bytes: unsigned 8-bit values
        return float(value[0])
    if int(tag.dtype) in (5, 10):  # RATIONAL / SRATIONAL: (numerator, denominator) pairs
        numerator, denominator = value[0] if isinstance(value[0], tuple) else value[:2]
        return numerator / denominator
    if isinstance(value, (tuple, list, np.ndarray)):
        value = value[0]
    return float(value)


def silence_tifffile_log() -> None:
    """Keep tifffile's own log lines off stderr in processes ctcimg owns (the ``ctcimg``
    command and batch workers): tifffile logs what it tolerates or fails on, and the
    :class:`~ctcimg.errors.TiffError` raised for the file already says it in one line."""
    import logging

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)


def describe_error(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


def read_pages(path: Path, indices: tuple[int, ...]) -> list[np.ndarray]:
    """Read the raw stored pages ``indices`` of one frame file."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return [tif.pages[i].asarray() for i in indices]
    except Exception as err:
        raise TiffError(f"cannot decode pixel data ({describe_error(err)})", path) from None


def page_affine(stored: np.ndarray, header: PageHeader) -> tuple[float, float, float]:
    """The map from one stored page to the 12-bit scale: ``max(stored · scale + offset, floor)``.

    ACCEPT's order: first undo the CellTracks stretch
    ``low + stored * (high - low) / max(stored)`` when the page carries tags 755/756
    (unstretched pages are taken as they are), then, if the *restored* maximum exceeds
    32767, subtract the +32768 offset and clamp at 0. The restored maximum of a
    stretched page is its ``high`` limit, so a full-range 16-bit page (stored values up
    to 65535) is not mistaken for an offset one, and an offset carried in the limits
    (755/756 ≥ 32768) is removed. ``scale`` and ``offset`` are rounded to float32 as
    :func:`apply_affine` uses them.

    Returns
    -------
    scale, offset, floor : float
        ``floor`` is ``-inf`` when nothing is clamped.
    """
    peak = float(stored.max()) if stored.size else 0.0
    if header.is_stretched:
        scale = (header.high - header.low) / peak if peak > 0 else 0.0
        offset = header.low
        restored_max = header.high if peak > 0 else header.low
    else:
        scale, offset, restored_max = 1.0, 0.0, peak
    floor = -math.inf
    if restored_max > OFFSET_16BIT - 1:
        offset -= OFFSET_16BIT
        floor = 0.0
    return float(np.float32(scale)), float(np.float32(offset)), floor


def apply_affine(stored: np.ndarray, scale: float, offset: float, floor: float,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``max(float32(stored) · scale + offset, floor)`` in float32 arithmetic, into ``out``."""
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    if scale == 1.0:
        np.copyto(out, stored, casting="unsafe")
    else:
        np.multiply(stored, np.float32(scale), out=out, casting="unsafe")
    if offset:
        out += np.float32(offset)
    if floor > -math.inf:
        np.maximum(out, np.float32(floor), out=out)
    return out


def restore_page(
    stored: np.ndarray, header: PageHeader, out: np.ndarray | None = None
) -> np.ndarray:
    """Restore one stored page to the 12-bit scale as float32 (see :func:`page_affine`)."""
    return apply_affine(stored, *page_affine(stored, header), out=out)


@dataclass(frozen=True)
class StoredFrame:
    """One frame's pages as stored on disk, in channel order, and their map to the 12-bit scale.

    Scoring reads pixels through this instead of a restored float32 frame: the kernels
    restore each pixel as they read it, so no full-resolution float copy of the four
    channels is ever written (CD45 and HER2 are only read inside candidate windows).

    Attributes
    ----------
    pages : tuple of (H, W) arrays
        Stored pixels (any real dtype, C-contiguous), one per channel. Pages read by
        :meth:`ctcimg.io.cellsearch.Cartridge.read_stored` are views of the cartridge's
        file buffer, valid until its next read.
    affine : (3, C) float32 array
        Rows ``scale``, ``offset``, ``floor``: channel ``c`` on the 12-bit scale is
        ``max(float32(pages[c]) · scale[c] + offset[c], floor[c])``, computed in float32.
    """

    pages: tuple[np.ndarray, ...]
    affine: np.ndarray

    @classmethod
    def from_array(cls, frame: np.ndarray) -> StoredFrame:
        """Wrap an already restored float32 ``(C, H, W)`` frame (identity map, no copy)."""
        frame = np.ascontiguousarray(frame, dtype=np.float32)
        affine = np.zeros((3, frame.shape[0]), dtype=np.float32)
        affine[0] = 1.0
        affine[2] = -np.inf
        return cls(tuple(frame), affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.pages), *self.pages[0].shape)

    def restore(self, out: np.ndarray | None = None) -> np.ndarray:
        """The whole frame on the 12-bit scale, float32 ``(C, H, W)``."""
        if out is None:
            out = np.empty(self.shape, dtype=np.float32)
        for channel, page in enumerate(self.pages):
            apply_affine(page, *self.affine[:, channel].tolist(), out=out[channel])
        return out

    def region(self, rows: slice, cols: slice, channels: tuple[int, ...] | None = None
               ) -> np.ndarray:
        """Part of the frame on the 12-bit scale, float32 ``(len(channels), h, w)``."""
        channels = tuple(range(len(self.pages))) if channels is None else channels
        return np.stack([apply_affine(self.pages[c][rows, cols], *self.affine[:, c].tolist())
                         for c in channels])


def write_celltracks_frame(
    path: str | os.PathLike,
    pages12: np.ndarray,
    bits: int = 16,
    encoding: str = "stretch",
    compression: str | None = None,
) -> None:
    """Write one frame (pages × H × W on the 12-bit scale) as a CellTracks TIFF.

    Parameters
    ----------
    path
        Destination file; written to a temporary name first, then renamed.
    pages12
        Page stack in on-disk order; values are rounded and clipped to 0–4095.
    bits
        8 or 16: stored sample size for the stretched encodings.
    encoding
        ``"stretch"`` (CellTracks: tags 754–756, each page stretched to the whole stored
        range, 0–255 or 0–65535), ``"stretch_offset"`` (the same with both limits
        carrying the +32768 offset), ``"offset"`` (raw 12-bit values + 32768, no tags)
        or ``"raw"``.
    compression
        Optional tifffile compression (e.g. ``"zlib"``) for small fixtures.
    """
    import tifffile

    if bits not in STRETCH_MAX:
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
    values = np.clip(np.rint(pages12), 0, MAX_12BIT).astype(np.uint16)
    stream = io.BytesIO()  # tifffile wants a named file or a memory buffer, not a bare fd
    with tifffile.TiffWriter(stream) as writer:
        for page in values:
            extratags = []
            if encoding in ("stretch", "stretch_offset"):
                low, high = int(page.min()), int(page.max())
                top = STRETCH_MAX[bits]
                span = max(high - low, 1)
                stored = np.rint((page.astype(np.float64) - low) * (top / span))
                stored = stored.astype(np.uint8 if bits == 8 else np.uint16)
                shift = OFFSET_16BIT if encoding == "stretch_offset" else 0
                extratags = [
                    (CELLTRACKS_TAG, "H", 1, 1, True),
                    (LOW_TAG, "H", 1, low + shift, True),
                    (HIGH_TAG, "H", 1, high + shift, True),
                ]
            elif encoding == "offset":
                stored = page + np.uint16(OFFSET_16BIT)
            else:
                stored = page
            writer.write(
                stored, extratags=extratags, compression=compression, contiguous=False,
                photometric="minisblack",
            )
    write_bytes_atomic(Path(path), stream.getvalue())
