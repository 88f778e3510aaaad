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

import contextlib
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ctcimg.channels import MAX_12BIT
from ctcimg.errors import FrameShapeError, TiffError
from ctcimg.io.atomic import write_bytes_atomic

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma: tifffile cannot decode LZMA pages at all
    LZMAError = OSError

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


#: What tifffile (and the codecs it falls back on) raises for a malformed, truncated or
#: unsupported file: TiffFileError and other ValueErrors, TypeError / LookupError /
#: ArithmeticError for a tag of the wrong type, count or value, struct.error for a
#: structure cut short, zlib.error / LZMAError / RuntimeError (NotImplementedError,
#: imagecodecs' errors) for corrupt or unsupported compressed data, OSError for a failed
#: read. Only tifffile and file calls are guarded with it (:func:`tifffile_errors`).
TIFFFILE_ERRORS: tuple[type[Exception], ...] = (
    ValueError, TypeError, LookupError, ArithmeticError, struct.error, zlib.error,
    LZMAError, RuntimeError, OSError)


@contextlib.contextmanager
def tifffile_errors(path: Path, what: str) -> Iterator[None]:
    """Report what tifffile raises in the block for the frame file ``path`` as a
    :class:`TiffError`, ``"<what> (<tifffile's message>)"``. Guard tifffile and file calls
    only: ctcimg's own checks raise their errors outside it."""
    try:
        yield
    except TIFFFILE_ERRORS as err:
        raise TiffError(f"{what} ({describe_error(err)})", path) from None


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
    what = "not a readable TIFF"
    # not a TIFF, or a garbled first directory: TiffFileError, struct.error, TypeError
    with tifffile_errors(path, what):
        tif = tifffile.TiffFile(path)
    with tif:
        # a garbled later directory (tifffile walks them all to count pages): the same errors
        with tifffile_errors(path, what):
            chain = read_ifd_chain(tif)
        check_ifd_chain(path, chain, size)
        headers = []
        for index in range(chain.pages):
            # a tag of the wrong type or count (some load from the file here): TypeError, ValueError
            with tifffile_errors(path, what):
                fields = page_fields(tif.pages[index])
            headers.append(check_page_header(path, index, fields, size))
    if not headers:
        raise TiffError("TIFF holds no pages", path)
    return headers


class IfdChain(NamedTuple):
    """How a TIFF's chain of page directories ends (:func:`read_ifd_chain`): the page
    directories tifffile found, the raw offset stored after the last one (short when the
    file ends inside that directory; None without pages) and the ``struct`` format of an
    offset in this file (classic or BigTIFF)."""

    pages: int
    link: bytes | None
    offset_format: str


def read_ifd_chain(tif) -> IfdChain:
    """How the directory chain of an open ``tifffile.TiffFile`` ends (tifffile and file
    calls only: guard with :func:`tifffile_errors`)."""
    fmt = tif.tiff
    n_pages = len(tif.pages)
    if not n_pages:
        return IfdChain(0, None, fmt.offsetformat)
    handle = tif.filehandle
    last = tif.pages[-1]
    handle.seek(last.offset)
    (n_tags,) = struct.unpack(fmt.tagnoformat, handle.read(fmt.tagnosize))
    handle.seek(last.offset + fmt.tagnosize + n_tags * fmt.tagsize)
    return IfdChain(n_pages, handle.read(fmt.offsetsize), fmt.offsetformat)


def check_ifd_chain(path: Path, chain: IfdChain, size: int) -> None:
    """Raise TiffError when the chain of page directories points past the end of the file.

    tifffile stops quietly at such a link and reports fewer pages; for a frame that is
    a truncated file, not a frame with a missing channel.
    """
    if chain.link is None:
        return
    if len(chain.link) < struct.calcsize(chain.offset_format):
        raise TiffError(f"truncated inside page {chain.pages}'s directory", path)
    (next_offset,) = struct.unpack(chain.offset_format, chain.link)
    if next_offset >= size:
        raise TiffError(
            f"truncated: page {chain.pages + 1} starts at byte {next_offset} but the file "
            f"has {size}",
            path,
        )


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as err:
        raise TiffError(f"cannot open ({err.strerror})", path) from None


@dataclass(frozen=True)
class PageFields:
    """What a tifffile page says about itself, as :func:`check_page_header` judges it.

    Attributes
    ----------
    shape : tuple of int
    samples : int
        Samples per pixel.
    dtype : numpy.dtype or None
        The sample type (None: one tifffile does not know).
    offsets, byte_counts : tuple of int
        Where each strip (or tile) of the page starts, and its stored length.
    compression, bits
        The compression scheme (1: none) and bits per sample as tifffile gives them: as a
        rule integers, but whatever a malformed tag holds (they are only compared).
    marked : bool
        The page carries tag 754, or both tags 755 and 756 (the CellTracks stretch).
    low, high : (value, TIFF type) or None
        Tags 755 and 756 of a marked page (None: absent or not marked).
    """

    shape: tuple[int, ...]
    samples: int
    dtype: np.dtype | None
    offsets: tuple[int, ...]
    byte_counts: tuple[int, ...]
    compression: object
    bits: object
    marked: bool
    low: tuple[object, int] | None
    high: tuple[object, int] | None


def page_fields(page) -> PageFields:
    """The :class:`PageFields` of a ``tifffile.TiffPage`` (tifffile calls only, some tag
    values loaded from the file: guard with :func:`tifffile_errors`)."""
    tags = page.tags
    marked = CELLTRACKS_TAG in tags or (LOW_TAG in tags and HIGH_TAG in tags)

    def stretch(code: int) -> tuple[object, int] | None:
        return (tags[code].value, int(tags[code].dtype)) if marked and code in tags else None

    return PageFields(
        shape=tuple(int(s) for s in page.shape),
        samples=int(getattr(page, "samplesperpixel", 1)),
        dtype=np.dtype(page.dtype) if page.dtype is not None else None,
        offsets=tuple(int(o) for o in page.dataoffsets),
        byte_counts=tuple(int(n) for n in page.databytecounts),
        compression=page.compression,
        bits=page.bitspersample,
        marked=marked,
        low=stretch(LOW_TAG),
        high=stretch(HIGH_TAG),
    )


def check_page_header(path: Path, index: int, fields: PageFields, file_size: int) -> PageHeader:
    """The :class:`PageHeader` of page ``index`` (0-based), or the FrameShapeError or
    TiffError saying why ctcimg cannot read the page."""
    shape = fields.shape
    if fields.samples > 1:  # e.g. tifffile.imwrite's default for a (4, H, W) stack, or RGB(A)
        raise FrameShapeError(
            f"page {index + 1} holds {fields.samples} samples per pixel (shape {shape}); "
            "ctcimg reads one channel per page: write the stack one page per channel, e.g. "
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
    dtype = fields.dtype
    if dtype is None or dtype.kind not in "uif":
        raise FrameShapeError(f"page {index + 1} has unsupported sample type {dtype}", path)
    end = max((o + n for o, n in zip(fields.offsets, fields.byte_counts, strict=False)),
              default=0)
    if end > file_size:
        raise TiffError(
            f"truncated: page {index + 1} needs {end} bytes but the file has {file_size}", path
        )
    stored_bytes = sum(fields.byte_counts)
    needed = height * width * dtype.itemsize
    if (fields.compression == 1 and fields.bits == 8 * dtype.itemsize
            and stored_bytes < needed):  # else decoding would read past the strips
        raise TiffError(
            f"page {index + 1} is {width} x {height} {dtype} ({needed} bytes) but its strips "
            f"hold {stored_bytes} bytes", path)
    low, high = _stretch_limits(path, index, fields) if fields.marked else (None, None)
    return PageHeader((height, width), dtype, low, high)


def _stretch_limits(path: Path, index: int, fields: PageFields) -> tuple[float, float]:
    """The 12-bit range (tags 755/756) of a page marked CellTracks, checked."""
    try:
        if fields.low is None or fields.high is None:
            raise ValueError("tag 755 or 756 missing")
        low, high = _stretch_limit(*fields.low), _stretch_limit(*fields.high)
    except (IndexError, TypeError, ValueError, OverflowError, ZeroDivisionError):
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
    return low, high


def _stretch_limit(value, dtype: int) -> float:
    """The first value of tag 755 or 756 (``value`` of TIFF type ``dtype``) as a float;
    raises for text or an empty tag."""
    if isinstance(value, str):
        raise TypeError("stretch limit stored as text")
    if isinstance(value, bytes):  # BYTE / UNDEFINED tags read as bytes: unsigned 8-bit values
        return float(value[0])
    if dtype in (5, 10):  # RATIONAL / SRATIONAL: (numerator, denominator) pairs
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
    """The first line of an exception's message (its type without one), at most 200 chars."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


def read_pages(path: Path, indices: tuple[int, ...]) -> list[np.ndarray]:
    """Read the raw stored pages ``indices`` of one frame file."""
    import tifffile

    # a malformed file, anywhere in it: any of TIFFFILE_ERRORS (tifffile calls only here)
    with tifffile_errors(path, "cannot decode pixel data"), tifffile.TiffFile(path) as tif:
        return [tif.pages[i].asarray() for i in indices]


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
