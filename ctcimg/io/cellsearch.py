"""Read a cartridge of any known export format (:mod:`ctcimg.io.formats`).

A :class:`Cartridge` is lazy: opening one reads the metadata and the first frame's
header; pixels are read one frame at a time when indexed or iterated.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcimg.channels import CHANNELS, edge_sides_at, grid_position
from ctcimg.errors import FrameShapeError, LayoutError, TiffError
from ctcimg.io.formats import open_found
from ctcimg.io.metadata import CartridgeMetadata, ReviewerEvent
from ctcimg.io.source import parse_channels
from ctcimg.io.tiff import (
    MAX_SIDE_PX,
    PageHeader,
    StoredFrame,
    check_ifd_chain,
    check_page_header,
    page_affine,
    page_fields,
    read_ifd_chain,
    tifffile_errors,
)


@dataclass(frozen=True)
class FrameInfo:
    """Where one frame sits: its file, 1-based number, grid cell and cartridge-edge sides."""

    index: int
    number: int
    path: Path
    row: int | None
    col: int | None
    edge_sides: tuple[str, ...]

    @property
    def touches_cartridge_edge(self) -> bool:
        return bool(self.edge_sides)


class Cartridge(Sequence):
    """A lazily read cartridge; ``cartridge[i]`` is frame *i* as float32 (4, H, W).

    The channel axis follows :data:`ctcimg.channels.CHANNELS` (DAPI, CK, CD45, HER2)
    whatever the page order on disk; values are restored to the 12-bit scale.

    Attributes
    ----------
    id : str
        Cartridge id (the folder name, e.g. ``01140637.1.1``).
    path : Path
        The cartridge folder.
    image_dir : Path
        The folder that holds the frame TIFFs.
    layout : str
        The export format: ``"cellsearch"`` (CellTracks XML layout), ``"celltracks_xp"``
        or ``"generic"``.
    frame_shape : tuple[int, int]
        (height, width) in pixels.
    pixel_size_um : float
        Pixel size in µm (from metadata, the caller, or the CellTracks default 0.64).
    pixel_size_source : str
        ``"xml"``, ``"ome"``, ``"argument"`` or ``"default"``.
    grid : tuple[int, int] or None
        (rows, columns) of the serpentine scan; None when unknown (generic layout).
    notes : tuple[str, ...]
        What the format found besides the frames, one line each (``ctcimg inspect``).
    page_channels : tuple[str, ...]
        Channel of each page on disk, in page order.
    reviewer_events : tuple[ReviewerEvent, ...]
        The operator's events (XML or cells.dlm), frame-local coordinates; ``assigned``
        marks reviewer CTCs.
    """

    channels: tuple[str, ...] = CHANNELS

    def __init__(
        self,
        path: Path,
        image_dir: Path,
        files: tuple[Path, ...],
        numbers: tuple[int, ...],
        layout: str,
        page_channels: tuple[str, ...],
        first_headers: Sequence[PageHeader],
        metadata: CartridgeMetadata | None,
        pixel_size_um: float,
        pixel_size_source: str,
        grid: tuple[int, int] | None,
        *,
        reviewer_events: tuple[ReviewerEvent, ...] | None = None,
        metadata_files: tuple[Path, ...] | None = None,
        position: Callable[[int, int, int], tuple[int, int]] | None = None,
        notes: tuple[str, ...] = (),
    ):
        self.id = path.name
        self.path = path
        self.image_dir = image_dir
        self.files = files
        self.frame_numbers = numbers
        self.layout = layout
        self.page_channels = page_channels
        self.metadata = metadata
        self.pixel_size_um = pixel_size_um
        self.pixel_size_source = pixel_size_source
        self.grid = grid
        self.notes = notes
        self._position = position or grid_position
        self._metadata_files = metadata_files if metadata_files is not None else (
            (metadata.path,) if metadata is not None else ())
        self.frame_shape: tuple[int, int] = first_headers[0].shape
        self.stored_dtype = first_headers[0].dtype  # as on disk; every frame must match it
        self.kernel_dtype = _kernel_dtype(self.stored_dtype)  # as the kernels are given it
        self._page_of_channel = tuple(page_channels.index(c) for c in CHANNELS)
        self._checksums: dict[Path, str] = {}
        self._file_buffer = bytearray()  # reused for every frame file read
        height, width = self.frame_shape
        if reviewer_events is None:
            reviewer_events = metadata.reviewer_events(width, height) if metadata else ()
        self.reviewer_events: tuple[ReviewerEvent, ...] = reviewer_events

    def __repr__(self) -> str:
        height, width = self.frame_shape
        return (
            f"Cartridge(id={self.id!r}, frames={len(self)}, frame_shape={width}x{height} px, "
            f"pixel_size_um={self.pixel_size_um}, layout={self.layout!r})"
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.read_frame(i) for i in range(*index.indices(len(self)))]
        return self.read_frame(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.read_frame(index)

    def frame_info(self, index: int) -> FrameInfo:
        """Number, file, grid position and cartridge-edge sides of frame ``index``."""
        number = self.frame_numbers[index]
        if self.grid is None:
            return FrameInfo(index, number, self.files[index], None, None, ())
        rows, cols = self.grid
        row, col = self._position(number, rows, cols)
        return FrameInfo(index, number, self.files[index], row, col,
                         edge_sides_at(row, col, rows, cols))

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read frame ``index`` (0-based) as float32 (4, H, W) on the 12-bit scale.

        Parameters
        ----------
        index
            Position in the cartridge, 0 ≤ index < len(cartridge); negative counts from the end.
        out
            Optional float32 array of shape (4, H, W) to fill instead of allocating one.

        Raises
        ------
        TiffError, FrameShapeError
            The file is truncated or corrupt, or its pages differ from the first frame's.
        """
        if out is None:
            out = np.empty((len(CHANNELS), *self.frame_shape), dtype=np.float32)
        frame = self.read_stored(index)
        if (np.result_type(self.stored_dtype, np.float32) == np.float32
                and out.dtype == np.float32 and out.flags.c_contiguous
                and out.shape == frame.shape):
            from ctcimg.kernels.restore import restore_frame

            restore_frame(frame.pages, frame.affine, out)  # the same values, one pass, threads
            return out
        return frame.restore(out=out)

    def read_stored(self, index: int, own_buffer: bool = False) -> StoredFrame:
        """Read frame ``index`` as stored pages plus their map to the 12-bit scale.

        What scoring uses: no float copy of the frame is made. The pages of uncompressed
        files are views of a buffer the next read overwrites, so use (or copy) them before
        reading another frame; with ``own_buffer``, of a buffer of their own instead (for
        frames scored while the next ones are read). Raises like :meth:`read_frame`.
        """
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} out of range for {len(self)} frames")
        path = self.files[index]
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if own_buffer:  # not zero-filled: readinto fills it all
                    data = memoryview(np.empty(size, np.uint8))
                else:
                    if len(self._file_buffer) < size:
                        self._file_buffer = bytearray(size)
                    data = memoryview(self._file_buffer)[:size]
                if handle.readinto(data) != size:
                    raise TiffError("file changed size while being read", path)
                self._checksums[path] = _xxh3(data)
                handle.seek(0)
                return self._decode(path, handle, data)
        except OSError as err:
            raise TiffError(f"cannot read ({err.strerror})", path) from None

    def _decode(self, path: Path, handle, data: memoryview) -> StoredFrame:
        """Check the pages of an open frame file and map each to the 12-bit scale.

        Pixel data of uncompressed pages is taken from ``data`` (the file already read into
        the cartridge's reusable buffer); tifffile only parses the page directories.
        """
        # float pages take the checked path below: their pixels must be finite
        plain = (_plain_pages(data, len(self.page_channels))
                 if self.kernel_dtype == self.stored_dtype and self.stored_dtype.kind != "f"
                 else None)
        if plain is not None and all((header.shape, header.dtype)
                                     == (self.frame_shape, self.stored_dtype)
                                     for _, header in plain):
            return _stored_frame([plain[i] for i in self._page_of_channel])
        import tifffile

        what = "cannot decode pixel data"
        # not a TIFF, or a garbled first directory: TiffFileError, struct.error, TypeError
        with tifffile_errors(path, what):
            tif = tifffile.TiffFile(handle, name=path.name)
        with tif:
            # a garbled later directory (tifffile walks them all to count pages): the same errors
            with tifffile_errors(path, what):
                chain = read_ifd_chain(tif)
            check_ifd_chain(path, chain, len(data))
            if chain.pages != len(self.page_channels):
                raise FrameShapeError(
                    f"has {chain.pages} pages; expected {len(self.page_channels)} "
                    f"({', '.join(self.page_channels)})",
                    path,
                )
            pages = []
            affine = np.empty((3, len(CHANNELS)), dtype=np.float32)
            for channel, page_index in enumerate(self._page_of_channel):
                stored, header = self._decode_page(tif, path, page_index, data, what)
                pages.append(stored)
                affine[:, channel] = page_affine(stored, header)
        return StoredFrame(tuple(pages), affine)

    def _decode_page(self, tif, path: Path, page_index: int, data: memoryview, what: str
                     ) -> tuple[np.ndarray, PageHeader]:
        """One page of an open frame file, checked, as the kernels are given it."""
        # a tag of the wrong type or count (some load from the file here): TypeError, ValueError
        with tifffile_errors(path, what):
            page = tif.pages[page_index]
            fields = page_fields(page)
        header = check_page_header(path, page_index, fields, len(data))
        self._check_page(path, page_index, header)
        # corrupt or unsupported compressed data: zlib.error, LZMAError, RuntimeError, ValueError
        with tifffile_errors(path, what):
            stored = _page_pixels(page, data, tif.byteorder)
        if not stored.dtype.isnative:
            stored = stored.astype(stored.dtype.newbyteorder("="))
        return _kernel_pixels(path, page_index, stored), header

    def _check_page(self, path: Path, page_index: int, header: PageHeader) -> None:
        if header.shape != self.frame_shape:
            raise FrameShapeError(
                f"page {page_index + 1} is {header.shape[1]} x {header.shape[0]} px; the "
                f"cartridge's frames are {self.frame_shape[1]} x {self.frame_shape[0]} px",
                path,
            )
        if header.dtype != self.stored_dtype:
            raise FrameShapeError(
                f"page {page_index + 1} is {header.dtype}; the cartridge's frames are "
                f"{self.stored_dtype}",
                path,
            )

    def checksums(self) -> dict[str, str]:
        """xxh3-128 digest of every input file (frames and metadata), keyed by relative path.

        Frames already read reuse the digest taken while reading; others are hashed now.
        """
        files = [*self.files, *self._metadata_files]
        digests = {}
        for path in files:
            if path not in self._checksums:
                self._checksums[path] = _xxh3(path.read_bytes())
            digests[path.relative_to(self.path).as_posix()] = self._checksums[path]
        return digests


    def file_stats(self) -> dict[str, list[int]]:
        """[size in bytes, modification time in ns] of every input file, keyed like checksums.

        A cheap fingerprint: a resumed batch compares these before deciding to re-hash.
        """
        files = [*self.files, *self._metadata_files]
        stats = {}
        for path in files:
            info = path.stat()
            stats[path.relative_to(self.path).as_posix()] = [info.st_size, info.st_mtime_ns]
        return stats


def _stored_frame(pages: list[tuple[np.ndarray, PageHeader]]) -> StoredFrame:
    affine = np.empty((3, len(pages)), dtype=np.float32)
    stored = []
    for channel, (pixels, header) in enumerate(pages):
        if not pixels.dtype.isnative:
            pixels = pixels.astype(pixels.dtype.newbyteorder("="))
        stored.append(pixels)
        affine[:, channel] = page_affine(pixels, header)
    return StoredFrame(tuple(stored), affine)


#: TIFF field types read by :func:`_plain_pages`: SHORT and LONG.
_FIELD_FORMATS = {3: "H", 4: "I"}
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}
_SHAPE_TAGS = (322, 323, 324, 325, 32997)  # tiles, image depth: tifffile reads these
#: Tags :func:`_plain_pages` reads (others, e.g. descriptions, are skipped).
_READ_TAGS = frozenset((256, 257, 258, 259, 273, 277, 279, 339, 754, 755, 756, *_SHAPE_TAGS))


def _plain_pages(data: memoryview, count: int) -> list[tuple[np.ndarray, PageHeader]] | None:
    """The ``count`` pages of a plain frame file parsed straight from its bytes: classic
    TIFF, uncompressed, one sample per pixel, each page's strips one contiguous block, all
    within the file, CellTracks limits (if any) valid. None for anything else, and
    tifffile then reads the file and names what is wrong with it.

    Parsing the page directories in tifffile took ~2 ms a frame, a fifth of scoring.
    """
    import struct

    size = len(data)
    if size < 8 or bytes(data[:2]) not in (b"II", b"MM"):
        return None
    order = "<" if bytes(data[:2]) == b"II" else ">"
    magic, offset = struct.unpack_from(order + "HI", data, 2)
    if magic != 42:
        return None
    pages = []
    while offset:
        if len(pages) == count or offset + 2 > size:
            return None
        (n_tags,) = struct.unpack_from(order + "H", data, offset)
        end = offset + 2 + 12 * n_tags
        if end + 4 > size:
            return None
        tags = {}
        for entry in range(offset + 2, end, 12):
            tag, kind, n, _ = struct.unpack_from(order + "HHI4s", data, entry)
            if tag not in _READ_TAGS:
                continue
            if kind not in _FIELD_FORMATS:
                return None
            width = struct.calcsize(_FIELD_FORMATS[kind])
            where = entry + 8
            if n * width > 4:
                (where,) = struct.unpack_from(order + "I", data, entry + 8)
                if where + n * width > size:
                    return None
            tags[tag] = struct.unpack_from(f"{order}{n}{_FIELD_FORMATS[kind]}", data, where)
        (offset,) = struct.unpack_from(order + "I", data, end)
        page = _plain_page(data, order, tags)
        if page is None:
            return None
        pages.append(page)
    return pages if len(pages) == count else None


def _plain_page(data: memoryview, order: str, tags: dict) -> tuple[np.ndarray, PageHeader] | None:
    def one(tag: int, default: int | None = None) -> int | None:
        values = tags.get(tag)
        return default if values is None else (values[0] if len(values) == 1 else None)

    width, height = one(256), one(257)
    bits, kind = one(258, 1), _SAMPLE_KINDS.get(one(339, 1))
    if (one(259, 1) != 1 or one(277, 1) != 1 or any(t in tags for t in _SHAPE_TAGS)
            or width is None or height is None or kind is None or bits not in (8, 16, 32, 64)
            or not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX)
            or (kind == "f" and bits == 8)):
        return None
    offsets, counts = tags.get(273), tags.get(279)
    dtype = np.dtype(f"{order}{kind}{bits // 8}")
    if not offsets or not counts or len(offsets) != len(counts):
        return None
    if any(offsets[i] + counts[i] != offsets[i + 1] for i in range(len(offsets) - 1)) \
            or sum(counts) < width * height * dtype.itemsize \
            or offsets[0] + width * height * dtype.itemsize > len(data):
        return None
    low = high = None
    if 754 in tags or (755 in tags and 756 in tags):
        low, high = one(755), one(756)
        if low is None or high is None or low > high:
            return None
        low, high = float(low), float(high)
    pixels = np.frombuffer(data, dtype=dtype, count=width * height,
                           offset=offsets[0]).reshape(height, width)
    return pixels, PageHeader((height, width), np.dtype(dtype.newbyteorder("=")), low, high)


def _xxh3(data: bytes | memoryview) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest(data)


def _page_pixels(page, data: memoryview, byteorder: str) -> np.ndarray:
    """The stored pixels of a page: a zero-copy view for uncompressed data, else decoded."""
    if page.compression == 1 and len(page.dataoffsets) and page.is_contiguous:
        dtype = np.dtype(page.dtype).newbyteorder(byteorder)
        count = int(np.prod(page.shape))
        return np.frombuffer(data, dtype=dtype, count=count,
                             offset=int(page.dataoffsets[0])).reshape(page.shape)
    return page.asarray()


def _kernel_dtype(dtype: np.dtype) -> np.dtype:
    """The sample type the kernels are given for pages stored as ``dtype``: uint8 and
    uint16 as they are, anything else as float32 (the kernels are compiled for these
    three types only)."""
    return np.dtype(dtype) if dtype in (np.uint8, np.uint16) else np.dtype(np.float32)


def _kernel_pixels(path: Path, page_index: int, stored: np.ndarray) -> np.ndarray:
    """A page as the kernels are given it (:func:`_kernel_dtype`); float pages must be
    finite."""
    if _kernel_dtype(stored.dtype) == stored.dtype and stored.dtype.kind != "f":
        return stored
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 becomes inf: refused
        pixels = stored.astype(np.float32, copy=False)
    if not np.isfinite(pixels).all():  # float32 pages too: NaN would poison the restore
        raise TiffError(f"page {page_index + 1} holds NaN or infinite pixel values", path)
    return pixels


def read_cartridge(
    path: str | os.PathLike,
    channels: Sequence[str] | str | None = None,
    pixel_size_um: float | None = None,
) -> Cartridge:
    """Open a cartridge folder for lazy, frame-by-frame reading.

    Parameters
    ----------
    path
        A CellSearch cartridge folder (``<id>/`` with ``<id>.xml`` and a ``processed/`` or
        ``micXXXXXXXX/`` image folder), a CellTracks XP export (``pic.dlm``, ``cells.dlm``,
        … and a folder of TIFFs; :mod:`ctcimg.io.celltracks_xp`), or a folder of
        multi-channel TIFF / OME-TIFF frames.
    channels
        Channel of each TIFF page, in page order, e.g. ``"DAPI,CK,CD45,HER2"``. Required
        for a generic folder; for a CellSearch export it overrides the metadata and the
        default page order (DAPI, FITC/HER2, PE/CK, APC/CD45; XP: FITC, APC, PE, DAPI).
    pixel_size_um
        Override the pixel size; otherwise taken from the XML or OME metadata, else 0.64 µm.

    Returns
    -------
    Cartridge

    Raises
    ------
    CartridgeError
        A subclass naming the file and the problem: :class:`~ctcimg.errors.LayoutError`,
        :class:`~ctcimg.errors.FrameNumberError`, :class:`~ctcimg.errors.TiffError`,
        :class:`~ctcimg.errors.FrameShapeError` or :class:`~ctcimg.errors.MetadataError`.

    Examples
    --------
    >>> cartridge = read_cartridge("fixtures/demo/SIM000001.1.1")  # doctest: +SKIP
    >>> frame = cartridge[0]  # float32 (4, 1036, 1384): DAPI, CK, CD45, HER2  # doctest: +SKIP
    """
    explicit = parse_channels(channels) if channels is not None else None
    root = Path(path)
    if not root.exists():
        raise LayoutError("no such file or folder", root)
    if not root.is_dir():
        raise LayoutError("is a file; expected a cartridge folder", root)
    found = open_found(root, explicit, pixel_size_um)
    # a FoundCartridge's fields are the Cartridge's arguments, name for name
    return Cartridge(**{f.name: getattr(found, f.name) for f in dataclasses.fields(found)})
