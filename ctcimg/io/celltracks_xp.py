"""The older CellTracks XP export: ``.dlm`` metadata instead of the XML, the same TIFF pages.

What is known publicly (the ACCEPT project's CellTracks XP loader; no real export is public,
so the reader is tolerant and says what it found):

* the cartridge folder holds, at most 3 folders down, the folder with ``pic.dlm`` beside
  ``autoanalysis.dlm``, ``cells.dlm``, ``expdata.dlm``, ``exper.dlm`` and ``frames.dlm``;
* every ``.dlm`` line is a record of fields separated by the single byte 0xA6 (``¦`` in
  Latin-1 / cp1252);
* ``pic.dlm`` (5 fields): field 1 a quoted timestamp, field 4 the frame number;
* ``cells.dlm`` (13 fields): the operator's events: field 2 the (unquoted) timestamp of the
  event's frame (looked up in pic.dlm), fields 3–4 the frame-local x, y of its centre,
  5–6 its width and height, field 11 ``Y`` when the operator selected it as a CTC;
* ``frames.dlm`` (5 fields): the channel names, field 3 of lines 1, 3, 5, … in page order
  (when absent, pages are FITC, APC, PE, DAPI as in the ACCEPT loader's channel map);
* the frame TIFFs sit in whichever subfolder holds them and are taken in file-name order
  (frame 1 = the first name); they carry the CellTracks stretch tags;
* the grid follows from the frame count (:data:`ctcimg.channels.GRID_BY_FRAME_COUNT`);
  140-frame exports run serpentine from the bottom row: frame 1 at the bottom right,
  the bottom row right to left, the next row up left to right, and so on;
* no pixel size is recorded: 0.64 µm.

A folder is a CellTracks XP cartridge when exactly one ``pic.dlm`` lies within it (at most
3 folders down) and it is the nearest folder above that ``pic.dlm`` whose tree also holds
the TIFF frames; batch discovery and :func:`ctcimg.read_cartridge` share this rule.

:func:`write_xp_metadata` writes the ``.dlm`` files of a cartridge (the simulator's
``layout="celltracks_xp"``); fields ctcimg does not read are left empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from ctcimg.channels import (
    FILTER_NAMES,
    GRID_BY_FRAME_COUNT,
    PIXEL_SIZE_UM,
    canonical_channel,
)
from ctcimg.errors import LayoutError, MetadataError
from ctcimg.io.metadata import ReviewerEvent
from ctcimg.io.source import (
    FoundCartridge,
    argument_pixel_size,
    check_pages,
    is_tiff,
    visible,
    walk_visible,
)
from ctcimg.io.tiff import read_headers

#: the field separator of every .dlm file
DELIMITER = b"\xa6"
#: the .dlm files of an export (the ACCEPT loader wants all six)
DLM_FILES = ("autoanalysis.dlm", "cells.dlm", "expdata.dlm", "exper.dlm", "frames.dlm", "pic.dlm")
#: page order on disk when frames.dlm does not name the channels
XP_PAGE_ORDER: tuple[str, ...] = ("HER2", "CD45", "CK", "DAPI")
#: subfolder the writer puts the frame TIFFs in
IMAGE_FOLDER = "images"
_SEARCH_DEPTH = 3  # folders below the cartridge folder searched for pic.dlm and the TIFFs
#: frame counts whose exports scan serpentine from the bottom row
BOTTOM_UP_FRAME_COUNTS = (140,)


class CellTracksXp:
    """The CellTracks XP export (``pic.dlm``, ``cells.dlm``, ``frames.dlm``, … and TIFFs)."""

    name = "celltracks_xp"

    def detect(self, folder: Path) -> bool:
        return _locate(folder) is not None

    def open(self, folder: Path, channels: tuple[str, ...] | None,
             pixel_size_um: float | None) -> FoundCartridge:
        located = _locate(folder)
        if located is None:
            raise LayoutError("not a CellTracks XP export (no single pic.dlm with the TIFF "
                              "frames beside it)", folder)
        dlm_dir, image_dirs = located
        if len(image_dirs) > 1:
            names = ", ".join(str(d.relative_to(folder)) or "." for d in image_dirs)
            raise LayoutError(f"TIFF frames in several folders ({names}); cannot tell which",
                              folder)
        image_dir = image_dirs[0]
        files = tuple(sorted(p for p in image_dir.iterdir() if is_tiff(p)))
        headers = read_headers(files[0])
        present = {p.name.lower(): p for p in dlm_dir.iterdir()
                   if p.suffix.lower() == ".dlm" and visible(p) and p.is_file()}
        notes = [f"dlm files     {', '.join(sorted(present))} in {dlm_dir}"]
        if missing := [name for name in DLM_FILES if name not in present]:
            notes.append(f"dlm missing   {', '.join(missing)} (not needed by ctcimg)")

        if channels is not None:
            page_channels, source = channels, "given"
        elif "frames.dlm" in present:
            page_channels, source = read_frames_dlm(present["frames.dlm"]), "frames.dlm"
            if len(page_channels) != len(headers):
                raise MetadataError(
                    f"names {len(page_channels)} channels ({', '.join(page_channels)}); the "
                    f"frames have {len(headers)} pages ({files[0].name})",
                    present["frames.dlm"],
                )
        else:
            page_channels, source = XP_PAGE_ORDER, "default XP order"
        check_pages(headers, page_channels, files[0], folder)
        notes.append(f"page order    from {source}")

        timestamps = read_pic_dlm(present["pic.dlm"], len(files))
        events: tuple[ReviewerEvent, ...] = ()
        if "cells.dlm" in present:
            events = read_cells_dlm(present["cells.dlm"], timestamps)
        else:
            notes.append("events        no cells.dlm: no operator events")
        grid = GRID_BY_FRAME_COUNT.get(len(files))
        if grid is None:
            notes.append(f"grid          {len(files)} frames match no known grid")
        elif len(files) in BOTTOM_UP_FRAME_COUNTS:
            notes.append("scan order    serpentine from the bottom row (140-frame export)")
        size = argument_pixel_size(pixel_size_um)
        return FoundCartridge(
            layout=self.name,
            path=folder,
            image_dir=image_dir,
            files=files,
            numbers=tuple(range(1, len(files) + 1)),
            page_channels=page_channels,
            first_headers=tuple(headers),
            pixel_size_um=size if size is not None else PIXEL_SIZE_UM,
            pixel_size_source="argument" if size is not None else "default",
            grid=grid,
            position=bottom_up_position if len(files) in BOTTOM_UP_FRAME_COUNTS else None,
            reviewer_events=events,
            metadata_files=tuple(present[name] for name in sorted(present)),
            notes=tuple(notes),
        )


def bottom_up_position(frame_number: int, rows: int, cols: int) -> tuple[int, int]:
    """Zero-based (row, column) on the serpentine that starts at the bottom right.

    Examples
    --------
    >>> bottom_up_position(1, 4, 35), bottom_up_position(35, 4, 35), bottom_up_position(36, 4, 35)
    ((3, 34), (3, 0), (2, 0))
    """
    scan_row, step = divmod(frame_number - 1, cols)
    return rows - 1 - scan_row, cols - 1 - step if scan_row % 2 == 0 else step


def _locate(folder: Path) -> tuple[Path, list[Path]] | None:
    """(folder holding pic.dlm, folders holding TIFFs) when ``folder`` is an XP cartridge."""
    dlm_dirs, image_dirs = [], []
    try:
        for path, _, names in walk_visible(folder, _SEARCH_DEPTH):
            lower = {name.lower() for name in names}
            if "pic.dlm" in lower:
                dlm_dirs.append(path)
                if len(dlm_dirs) > 1:
                    return None
            if any(is_tiff(path / name) for name in names):
                image_dirs.append(path)
    except OSError:
        return None
    if len(dlm_dirs) != 1 or not image_dirs:
        return None
    dlm_dir = dlm_dirs[0]
    if dlm_dir == folder:
        return dlm_dir, image_dirs
    branch = folder / dlm_dir.relative_to(folder).parts[0]
    if any(d == branch or branch in d.parents for d in image_dirs):
        return None  # the cartridge is further down, in the branch holding pic.dlm
    return dlm_dir, image_dirs


# --------------------------------------------------------------------------- .dlm files


def read_dlm(path: Path, n_fields: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line of a .dlm file.

    Fields are split on the byte 0xA6, decoded as Latin-1 and stripped of blanks and double
    quotes; a file re-saved as UTF-8 (``¦`` = C2 A6) is read too. Empty fields after the
    last expected one (a trailing separator) are dropped.

    Raises
    ------
    MetadataError
        The file cannot be read, or a line has another number of fields.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MetadataError(f"cannot read ({err.strerror})", path) from None
    separator, encoding = DELIMITER, "latin-1"
    if b"\xc2\xa6" in data:
        separator, encoding = b"\xc2\xa6", "utf-8"
    records = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = [f.decode(encoding).strip().strip('"') for f in line.split(separator)]
        except UnicodeDecodeError:
            raise MetadataError(f"line {number}: not UTF-8 text", path) from None
        while len(fields) > n_fields and fields[-1] == "":
            fields.pop()
        if len(fields) != n_fields:
            raise MetadataError(
                f"line {number}: {len(fields)} field(s) separated by '¦' (byte 0xA6); "
                f"expected {n_fields}",
                path,
            )
        records.append((number, fields))
    return records


def read_pic_dlm(path: Path, n_frames: int) -> dict[str, int]:
    """Timestamp → frame number, from pic.dlm; every number must be one of the frames."""
    frames: dict[str, int] = {}
    for line, fields in read_dlm(path, 5):
        timestamp, text = fields[0], fields[3]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value.is_integer():
            raise MetadataError(f"line {line}: frame number {text!r} is not a whole number",
                                path)
        if not 1 <= value <= n_frames:
            raise MetadataError(
                f"line {line}: frame {int(value)} outside the {n_frames} frame TIFFs", path)
        if frames.get(timestamp, int(value)) != int(value):
            raise MetadataError(f"line {line}: timestamp {timestamp!r} names frames "
                                f"{frames[timestamp]} and {int(value)}", path)
        frames[timestamp] = int(value)
    return frames


def read_cells_dlm(path: Path, frames: dict[str, int]) -> tuple[ReviewerEvent, ...]:
    """The operator's events of cells.dlm, frame-local, ``assigned`` = selected as CTC."""
    events = []
    for line, fields in read_dlm(path, 13):
        if fields[1] not in frames:
            raise MetadataError(f"line {line}: timestamp {fields[1]!r} is not in pic.dlm", path)
        values = []
        for index, name in ((2, "x"), (3, "y"), (4, "width"), (5, "height")):
            try:
                values.append(float(fields[index]))
            except ValueError:
                raise MetadataError(f"line {line}: field {index + 1} ({name}) "
                                    f"{fields[index]!r} is not a number", path) from None
        x, y, width, height = values
        if width < 0 or height < 0:
            raise MetadataError(f"line {line}: negative width or height", path)
        events.append(ReviewerEvent(
            event_id=len(events) + 1,
            frame=frames[fields[1]],
            x_px=x,
            y_px=y,
            bbox=(x - width / 2, y - height / 2, x + width / 2, y + height / 2),
            assigned=fields[10].upper() == "Y",
            numselected=None,
        ))
    return tuple(events)


def read_frames_dlm(path: Path) -> tuple[str, ...]:
    """Channel of each page: field 3 of lines 1, 3, 5, … of frames.dlm."""
    names = []
    for position, (line, fields) in enumerate(read_dlm(path, 5)):
        if position % 2:
            continue
        name = fields[2]
        channel = "DAPI" if name.strip().lower() == "dna" else canonical_channel(name)
        if channel is None:
            raise MetadataError(f"line {line}: channel name {name!r} is not DAPI/DNA, PE (CK), "
                                "APC (CD45) or FITC (HER2)", path)
        names.append(channel)
    if len(set(names)) != len(names):
        raise MetadataError(f"names a channel twice ({', '.join(names)})", path)
    return tuple(names)


# --------------------------------------------------------------------------- writing


def image_path(cartridge: Path, cartridge_id: str, frame_number: int, n_frames: int) -> Path:
    """Where the writer puts frame ``frame_number``'s TIFF (names sort in frame order)."""
    digits = max(3, len(str(n_frames)))
    return cartridge / IMAGE_FOLDER / f"{cartridge_id}_{frame_number:0{digits}d}.tif"


def write_xp_metadata(
    cartridge: Path,
    cartridge_id: str,
    n_frames: int,
    events: Sequence[ReviewerEvent],
    page_channels: tuple[str, ...] = XP_PAGE_ORDER,
    started: dt.datetime = dt.datetime(2008, 1, 7, 9, 0, 0),
) -> None:
    """Write the six .dlm files of a CellTracks XP cartridge folder.

    Parameters
    ----------
    cartridge
        The cartridge folder (the .dlm files go directly into it).
    cartridge_id
        Recorded in exper.dlm.
    n_frames
        Frames; pic.dlm gives frame *n* the timestamp ``started`` + 2 s × (n − 1).
    events
        Operator events, frame-local; ``assigned`` becomes ``Y`` in field 11 of cells.dlm.
    page_channels
        Channel of each TIFF page, written to frames.dlm.
    started
        Timestamp of frame 1.
    """
    from ctcimg.io.atomic import write_bytes_atomic

    def stamp(frame: int) -> str:
        return (started + dt.timedelta(seconds=2 * (frame - 1))).strftime("%m/%d/%Y %H:%M:%S")

    def record(*fields: object) -> bytes:
        return DELIMITER.join(str(f).encode("latin-1") for f in fields) + b"\r\n"

    def number(value: float) -> str:
        return f"{value:.10g}"

    pic = [record(f'"{stamp(f)}"', "", "", f, "") for f in range(1, n_frames + 1)]
    cells = []
    for event in events:
        x0, y0, x1, y1 = event.bbox
        cells.append(record(event.event_id, stamp(event.frame), number((x0 + x1) / 2),
                            number((y0 + y1) / 2), number(x1 - x0), number(y1 - y0),
                            "", "", "", "", "Y" if event.assigned else "N", "", ""))
    frames = []
    for page, channel in enumerate(page_channels, start=1):
        frames.append(record(page, "filter", FILTER_NAMES[channel], "", ""))
        frames.append(record(page, "exposure", "", "", ""))
    contents = {
        "pic.dlm": pic,
        "cells.dlm": cells,
        "frames.dlm": frames,
        "exper.dlm": [record(f'"{cartridge_id}"', n_frames, "", "")],
        "expdata.dlm": [record(f'"{cartridge_id}"', "", "")],
        "autoanalysis.dlm": [record(f'"{cartridge_id}"', "", "")],
    }
    for name in DLM_FILES:
        write_bytes_atomic(cartridge / name, b"".join(contents[name]))
