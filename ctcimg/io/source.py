"""The reader interface: what an export format tells the reader, and the helpers formats share.

An export format (CellTracks XML layout, CellTracks XP, generic TIFF) is one module holding
one object that satisfies :class:`CartridgeFormat`: ``detect`` says whether a folder is a
cartridge of that format (batch discovery and :func:`ctcimg.read_cartridge` ask the same
question through :mod:`ctcimg.io.formats`), and ``open`` returns a :class:`FoundCartridge`:
the frame files in frame order, the channel of each TIFF page, the grid and scan order,
the pixel size and the reviewer events. Every format stores a frame as one multi-page
TIFF, so decoding the pages and their map to the 12-bit scale is shared by
:class:`ctcimg.io.cellsearch.Cartridge`, which is what callers hold (:class:`FrameSource`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ctcimg.channels import CHANNELS, PIXEL_SIZE_RANGE_UM, canonical_channel
from ctcimg.errors import FrameShapeError, InputError, LayoutError
from ctcimg.io.metadata import CartridgeMetadata, ReviewerEvent
from ctcimg.io.tiff import PageHeader, StoredFrame

_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class FoundCartridge:
    """What a format found in a cartridge folder; :func:`ctcimg.read_cartridge` wraps it.

    Attributes
    ----------
    layout : str
        The format's name, recorded in summary.json (``"cellsearch"``, ``"celltracks_xp"``,
        ``"generic"``).
    path, image_dir : Path
        The cartridge folder and the folder holding the frame TIFFs.
    files, numbers
        Frame files in frame order and their 1-based frame numbers.
    page_channels : tuple[str, ...]
        Channel of each TIFF page, in page order.
    first_headers : tuple[PageHeader, ...]
        The first frame's page headers (frame size and stored dtype).
    pixel_size_um, pixel_size_source
        Pixel size in µm and where it came from (``xml``, ``ome``, ``argument``, ``default``).
    grid : tuple[int, int] or None
        (rows, columns) of the scan; None when unknown.
    position : callable or None
        ``position(frame_number, rows, cols) -> (row, col)``, zero-based; None = the
        CellSearch serpentine from the top-left (:func:`ctcimg.channels.grid_position`).
    reviewer_events : tuple[ReviewerEvent, ...]
        The operator's events, frame-local pixels.
    metadata_files : tuple[Path, ...]
        Metadata files read, checksummed with the frames.
    metadata : CartridgeMetadata or None
        The parsed CellTracks XML, when there is one.
    notes : tuple[str, ...]
        What the format found besides the frames, one line each (``ctcimg inspect``).
    """

    layout: str
    path: Path
    image_dir: Path
    files: tuple[Path, ...]
    numbers: tuple[int, ...]
    page_channels: tuple[str, ...]
    first_headers: tuple[PageHeader, ...]
    pixel_size_um: float
    pixel_size_source: str
    grid: tuple[int, int] | None
    position: Callable[[int, int, int], tuple[int, int]] | None = None
    reviewer_events: tuple[ReviewerEvent, ...] = ()
    metadata_files: tuple[Path, ...] = ()
    metadata: CartridgeMetadata | None = None
    notes: tuple[str, ...] = ()


class CartridgeFormat(Protocol):
    """One export format: recognise its folders and say what their files hold."""

    #: the layout name recorded in results
    name: str

    def detect(self, folder: Path) -> bool:
        """Whether ``folder`` is a cartridge of this format (cheap: listings, no pixel reads)."""
        ...

    def open(self, folder: Path, channels: tuple[str, ...] | None,
             pixel_size_um: float | None) -> FoundCartridge:
        """Find the frames and metadata; raise a CartridgeError naming the file on bad input."""
        ...


@runtime_checkable
class FrameSource(Protocol):
    """What scoring reads from an opened cartridge (:class:`ctcimg.io.cellsearch.Cartridge`),
    whatever its format."""

    id: str
    layout: str
    frame_numbers: tuple[int, ...]
    frame_shape: tuple[int, int]
    page_channels: tuple[str, ...]
    pixel_size_um: float
    grid: tuple[int, int] | None
    reviewer_events: tuple[ReviewerEvent, ...]

    def __len__(self) -> int: ...

    def read_stored(self, index: int, own_buffer: bool = False) -> StoredFrame: ...

    def checksums(self) -> dict[str, str]: ...


# --------------------------------------------------------------------------- shared helpers


def visible(path: Path) -> bool:
    """False for hidden files and macOS resource forks (``.name``, ``._name``)."""
    return not path.name.startswith((".", "._"))


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in _TIFF_SUFFIXES and visible(path) and path.is_file()


def walk_visible(root: Path, max_depth: int):
    """``os.walk`` of ``root`` down to ``max_depth`` folders below it, hidden folders skipped,
    sorted; yields (folder, depth, file names)."""
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "._")))
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= max_depth:
            dirnames[:] = []
        yield Path(folder), depth, filenames


def tiff_folders(root: Path, max_depth: int) -> list[Path]:
    """Folders at most ``max_depth`` below ``root`` that directly hold TIFF files."""
    return [folder for folder, _, names in walk_visible(root, max_depth)
            if any(is_tiff(folder / name) for name in names)]


def parse_channels(channels: Sequence[str] | str) -> tuple[str, ...]:
    """Canonical channel names from a page-order list such as ``"DAPI,PE,APC,FITC"``.

    Raises
    ------
    InputError
        An unknown or repeated channel name.
    """
    names = channels.split(",") if isinstance(channels, str) else list(channels)
    mapped = []
    for name in names:
        channel = canonical_channel(str(name))
        if channel is None:
            raise InputError(
                f"unknown channel {name!r}; use DAPI, CK (PE), CD45 (APC) or HER2 (FITC)"
            )
        mapped.append(channel)
    duplicates = sorted({c for c in mapped if mapped.count(c) > 1})
    if duplicates:
        raise InputError(f"channel(s) {', '.join(duplicates)} given more than once")
    return tuple(mapped)


def check_pages(headers: Sequence[PageHeader], page_channels: tuple[str, ...], first: Path,
                root: Path) -> None:
    """The first frame's pages match the page order and each other (size, dtype)."""
    if len(headers) != len(page_channels):
        raise FrameShapeError(
            f"has {len(headers)} pages; expected {len(page_channels)} "
            f"({', '.join(page_channels)})",
            first,
        )
    missing = [c for c in CHANNELS if c not in page_channels]
    if missing:
        raise LayoutError(f"channel(s) {', '.join(missing)} missing from page order "
                          f"{', '.join(page_channels)}", root)
    for index, header in enumerate(headers[1:], start=2):
        if (header.shape, header.dtype) != (headers[0].shape, headers[0].dtype):
            raise FrameShapeError(
                f"page {index} is {header.shape[1]} x {header.shape[0]} {header.dtype}; page 1 "
                f"is {headers[0].shape[1]} x {headers[0].shape[0]} {headers[0].dtype}",
                first,
            )


def argument_pixel_size(pixel_size_um: float | None) -> float | None:
    """The caller's pixel size, checked for plausibility (0.05–20 µm)."""
    if pixel_size_um is None:
        return None
    low, high = PIXEL_SIZE_RANGE_UM
    if not low <= float(pixel_size_um) <= high:
        raise InputError(f"pixel size {pixel_size_um} µm is not plausible")
    return float(pixel_size_um)


_NUMBER_BEFORE_SUFFIX = re.compile(r"(\d+)(?:\.ome)?\.tiff?$", re.IGNORECASE)


def ends_in_frame_number(name: str) -> bool:
    """Whether a file name is a numbered frame TIFF (``img-001.tif``, ``field7.ome.tif``)."""
    return bool(_NUMBER_BEFORE_SUFFIX.search(name))
