"""The CellTracks Analyzer II export layout (XML metadata) and generic multi-channel TIFF folders.

Both store one multi-page TIFF per frame with the frame number at the end of the file name,
so one opener serves both formats; what differs is how a folder is recognised:

* ``cellsearch``: ``<id>/`` with ``<id before first dot>.xml`` and/or a ``processed/`` or
  ``micXXXXXXXX/`` image folder (DESIGN.md §2). The XML, when present, gives the grid,
  camera size, pixel size, page order (``test_filters``) and the reviewer events.
* ``generic``: a folder directly holding numbered TIFF / OME-TIFF frames (``img-001.tif``,
  ``field7.ome.tif``); the page order must be given unless the files carry the CellTracks
  tags, in which case the folder is read as a CellTracks export without XML.

:func:`write_celltracks_metadata` writes the XML of a cartridge (the simulator's default
``layout="cellsearch"``): the grid, camera size, pixel size, page order and reviewer events
the reader takes from it.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ctcimg.channels import (
    CELLSEARCH_PAGE_ORDER,
    FILTER_NAMES,
    GRID_BY_FRAME_COUNT,
    PIXEL_SIZE_RANGE_UM,
    PIXEL_SIZE_UM,
    grid_position,
)
from ctcimg.errors import FrameNumberError, LayoutError, MetadataError
from ctcimg.io.atomic import write_atomic
from ctcimg.io.metadata import CartridgeMetadata, ReviewerEvent, read_metadata
from ctcimg.io.source import (
    FoundCartridge,
    argument_pixel_size,
    check_pages,
    ends_in_frame_number,
    is_tiff,
    tiff_folders,
    visible,
)
from ctcimg.io.tiff import TIFFFILE_ERRORS, read_headers

_FRAME_NUMBER = re.compile(r"(\d{3,})\.tiff?$", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"(\d+)(?:\.ome)?\.tiff?$", re.IGNORECASE)
_IMAGE_DIR_NAMES = ("processed",)
_TIFF_SUFFIXES = (".tif", ".tiff")


class CellTracksXml:
    """The CellTracks Analyzer II export: ``<id>.xml`` and a ``processed/`` or ``mic*/`` folder."""

    name = "cellsearch"

    def detect(self, folder: Path) -> bool:
        xml_name = metadata_path(folder).name.lower()
        for entry in _entries(folder):
            lower = entry.name.lower()
            if entry.is_dir() and (lower in _IMAGE_DIR_NAMES or lower.startswith("mic")):
                return True
            if lower == xml_name and entry.is_file():
                return True
        return False

    def open(self, folder: Path, channels: tuple[str, ...] | None,
             pixel_size_um: float | None) -> FoundCartridge:
        return open_tiff_folder(folder, channels, pixel_size_um)


class GenericTiff:
    """A folder directly holding numbered multi-channel TIFF / OME-TIFF frames."""

    name = "generic"

    def detect(self, folder: Path) -> bool:
        return any(entry.name.lower().endswith(_TIFF_SUFFIXES) and ends_in_frame_number(entry.name)
                   and entry.is_file() for entry in _entries(folder))

    def open(self, folder: Path, channels: tuple[str, ...] | None,
             pixel_size_um: float | None) -> FoundCartridge:
        return open_tiff_folder(folder, channels, pixel_size_um)


def _entries(folder: Path) -> list[os.DirEntry]:
    """Visible entries of ``folder`` (DirEntry: type checks without a stat), [] if unreadable."""
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if not e.name.startswith((".", "._"))]
    except OSError:
        return []


def open_tiff_folder(root: Path, explicit: tuple[str, ...] | None,
                     pixel_size_um: float | None) -> FoundCartridge:
    """Open a CellTracks export or a generic TIFF folder (the image folder may be nested up
    to 3 levels); the layout is ``cellsearch`` when an XML, the CellTracks TIFF tags or a
    ``processed/`` / ``mic*/`` image folder say so, else ``generic``."""
    metadata = _find_metadata(root)
    image_dir = _find_image_dir(root)
    files, numbers = _frame_files(image_dir)
    headers = read_headers(files[0])

    is_cellsearch = (
        metadata is not None
        or any(h.is_stretched for h in headers)
        or image_dir.name.lower() in _IMAGE_DIR_NAMES
        or image_dir.name.lower().startswith("mic")
    )
    if explicit is not None:
        page_channels = explicit
    elif metadata is not None and metadata.page_channels is not None:
        page_channels = metadata.page_channels
    elif is_cellsearch:
        page_channels = CELLSEARCH_PAGE_ORDER
    else:
        raise LayoutError(
            "not a CellSearch export (no XML, no CellTracks tags, no processed/ folder); "
            "give the channel order of the pages, e.g. channels='DAPI,CK,CD45,HER2' "
            "(--channels on the command line)",
            root,
        )
    check_pages(headers, page_channels, files[0], root)

    grid = _grid(metadata, len(files), is_cellsearch)
    _check_numbering(numbers, grid, image_dir)
    height, width = headers[0].shape
    if metadata is not None and (metadata.cam_width, metadata.cam_height) != (None, None):
        if (metadata.cam_width or width, metadata.cam_height or height) != (width, height):
            raise MetadataError(
                f"camera size {metadata.cam_width} x {metadata.cam_height} px contradicts the "
                f"frames ({width} x {height} px, {files[0].name})",
                metadata.path,
            )

    if (size := argument_pixel_size(pixel_size_um)) is not None:
        source = "argument"
    elif metadata is not None and metadata.pixel_size_um is not None:
        size, source = metadata.pixel_size_um, "xml"
    elif (ome := _ome_pixel_size(files[0])) is not None:
        size, source = ome, "ome"
    else:
        size, source = PIXEL_SIZE_UM, "default"

    return FoundCartridge(
        layout="cellsearch" if is_cellsearch else "generic",
        path=root,
        image_dir=image_dir,
        files=files,
        numbers=numbers,
        page_channels=page_channels,
        first_headers=tuple(headers),
        pixel_size_um=size,
        pixel_size_source=source,
        grid=grid,
        reviewer_events=metadata.reviewer_events(width, height) if metadata is not None else (),
        metadata_files=(metadata.path,) if metadata is not None else (),
        metadata=metadata,
        notes=(f"metadata      {metadata.path.name if metadata is not None else 'no XML'}",),
    )


def metadata_path(cartridge: Path) -> Path:
    """Where a cartridge folder keeps its XML: ``<folder name before the first dot>.xml``."""
    return cartridge / f"{cartridge.name.split('.')[0]}.xml"


def _find_metadata(root: Path) -> CartridgeMetadata | None:
    preferred = metadata_path(root)
    if preferred.is_file():
        return read_metadata(preferred)
    candidates = sorted(p for p in root.glob("*.xml") if p.is_file() and visible(p))
    if len(candidates) == 1:
        return read_metadata(candidates[0])
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise LayoutError(f"several XML files ({names}) and none named {preferred.name}", root)
    return None


def _find_image_dir(root: Path) -> Path:
    if not any(visible(p) for p in root.iterdir()):
        raise LayoutError("folder is empty", root)
    holders = tiff_folders(root, max_depth=3)
    if not holders:
        raise LayoutError("no TIFF frames found (looked up to 3 folders deep)", root)
    if len(holders) == 1:
        return holders[0]
    preferred = [h for h in holders if h.name.lower() in _IMAGE_DIR_NAMES]
    if len(preferred) == 1:
        return preferred[0]
    names = ", ".join(str(h.relative_to(root)) or "." for h in holders)
    raise LayoutError(f"TIFF frames in several folders ({names}); cannot tell which", root)


def _frame_files(image_dir: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    tiffs = sorted(p for p in image_dir.iterdir() if is_tiff(p))
    numbered = []
    unnumbered = []
    for path in tiffs:
        match = _FRAME_NUMBER.search(path.name) or _TRAILING_NUMBER.search(path.name)
        (numbered if match else unnumbered).append((int(match.group(1)) if match else 0, path))
    if unnumbered:
        names = ", ".join(p.name for _, p in unnumbered[:3])
        raise FrameNumberError(
            f"frame number missing from file name(s) {names}; expected e.g. name_001.tif",
            image_dir,
        )
    numbered.sort()
    seen: dict[int, Path] = {}
    for number, path in numbered:
        if number in seen:
            raise FrameNumberError(
                f"frame {number} appears twice ({seen[number].name} and {path.name})", image_dir
            )
        seen[number] = path
    return tuple(p for _, p in numbered), tuple(n for n, _ in numbered)


def _grid(
    metadata: CartridgeMetadata | None, n_frames: int, is_cellsearch: bool
) -> tuple[int, int] | None:
    if metadata is not None and metadata.rows and metadata.cols:
        return metadata.rows, metadata.cols
    if is_cellsearch and n_frames in GRID_BY_FRAME_COUNT:
        return GRID_BY_FRAME_COUNT[n_frames]
    return None


def _check_numbering(
    numbers: tuple[int, ...], grid: tuple[int, int] | None, image_dir: Path
) -> None:
    expected_count = grid[0] * grid[1] if grid else None
    first = 1 if grid else numbers[0]
    expected = set(range(first, first + (expected_count or len(numbers))))
    missing = sorted(expected - set(numbers))
    extra = sorted(set(numbers) - expected)
    if missing:
        shown = ", ".join(f"{n:03d}" for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
        where = f" of the {grid[0]} x {grid[1]} grid" if grid else ""
        raise FrameNumberError(f"missing frame(s) {shown}{where} ({len(numbers)} found)",
                               image_dir)
    if extra:
        shown = ", ".join(f"{n:03d}" for n in extra[:10])
        raise FrameNumberError(
            f"frame number(s) {shown} outside the {grid[0]} x {grid[1]} grid", image_dir
        )


def _ome_pixel_size(path: Path) -> float | None:
    import tifffile

    # a malformed file (any of TIFFFILE_ERRORS from tifffile): no readable OME header, no size
    try:
        with tifffile.TiffFile(path) as tif:
            ome = tif.ome_metadata if tif.is_ome else None
    except TIFFFILE_ERRORS:
        return None
    match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', ome or "")
    if match:
        try:
            value = float(match.group(1))
        except ValueError:  # e.g. "1e+-": not a number, no pixel size from it
            return None
        low, high = PIXEL_SIZE_RANGE_UM
        if low <= value <= high:
            return value
    return None


# --------------------------------------------------------------------------- writing


def image_path(cartridge: Path, cartridge_id: str, frame_number: int, n_frames: int) -> Path:
    """Where the writer puts frame ``frame_number``'s TIFF: ``processed/<id>_<NNN>.tif``."""
    digits = max(3, len(str(n_frames)))
    return cartridge / _IMAGE_DIR_NAMES[0] / f"{cartridge_id}_{frame_number:0{digits}d}.tif"


def write_celltracks_metadata(
    cartridge: Path,
    n_frames: int,
    grid: tuple[int, int],
    frame_shape: tuple[int, int],
    pixel_size_um: float,
    events: Sequence[ReviewerEvent],
    page_channels: tuple[str, ...] = CELLSEARCH_PAGE_ORDER,
) -> Path:
    """Write the XML of a CellTracks Analyzer II cartridge folder (:func:`metadata_path`).

    Parameters
    ----------
    cartridge
        The cartridge folder, named by the cartridge id.
    n_frames
        Frames, written to ``runs/record/numframes``.
    grid
        (rows, columns) of the serpentine frame grid: ``numrows``, ``numcols``.
    frame_shape
        (height, width) of a frame in pixels: ``camysize``, ``camxsize``.
    pixel_size_um
        Pixel size in µm: ``pixelsize``.
    events
        Reviewer events, frame-local; their ``location`` is written in whole-cartridge
        pixels (frame size × serpentine column/row added) and ``assigned`` as ``true`` /
        ``false``.
    page_channels
        Channel of each TIFF page, written as ``test_filters/record/filtername``.

    Returns
    -------
    Path
        The XML written.
    """
    rows, cols = grid
    height, width = frame_shape
    root = ET.Element("archive")
    run = ET.SubElement(ET.SubElement(root, "runs"), "record")
    for tag, value in (("numcols", cols), ("numrows", rows), ("camxsize", width),
                       ("camysize", height), ("numframes", n_frames),
                       ("pixelsize", pixel_size_um)):
        ET.SubElement(run, tag).text = str(value)
    filters = ET.SubElement(root, "test_filters")
    for channel in page_channels:
        ET.SubElement(ET.SubElement(filters, "record"), "filtername").text = FILTER_NAMES[channel]
    records = ET.SubElement(root, "events")
    for event in events:
        row, col = grid_position(event.frame, rows, cols)
        x0, y0, x1, y1 = event.bbox
        gx, gy = width * col, height * row
        fields = {
            "eventnum": event.event_id,
            "framenum": event.frame,
            "numselected": "" if event.numselected is None else event.numselected,
            "assigned": "true" if event.assigned else "false",
            "location": f"({_pixels(x0 + gx)},{_pixels(y0 + gy)}),"
                        f"({_pixels(x1 + gx)},{_pixels(y1 + gy)})",
        }
        record = ET.SubElement(records, "record")
        for tag, value in fields.items():
            ET.SubElement(record, tag).text = str(value)
    ET.indent(root)
    path = metadata_path(cartridge)
    write_atomic(path, lambda stream: ET.ElementTree(root).write(
        stream, encoding="utf-8", xml_declaration=True))
    return path


def _pixels(value: float) -> str:
    """A coordinate as the reader's ``(x,y)`` pattern takes it: no exponent, whole numbers bare."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
