"""CellTracks cartridge XML: grid, camera size, channel names and reviewer events.

The XML comes from outside, so it is read defensively: with ``defusedxml``, which refuses
entity declarations (the "billion laughs" expansion) and external entities by design, and
with one bounded number parser (:func:`parse_number`) for every number in it, so an
absurd value is refused, naming the element, before anything is sized from it.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import defusedxml
import defusedxml.ElementTree

from ctcimg.channels import PIXEL_SIZE_RANGE_UM, canonical_channel, grid_position
from ctcimg.errors import MetadataError
from ctcimg.io.tiff import MAX_SIDE_PX

_POINT = re.compile(r"\(\s*(-?\d+(?:\.\d*)?)\s*,\s*(-?\d+(?:\.\d*)?)\s*\)", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_WHOLE = re.compile(r"[+-]?\d+", re.ASCII)
_PIXEL_SIZE_TAGS = ("pixelsize", "pixel_size", "pixelsizeum", "pixel_size_um", "umperpixel")
#: Most frames a cartridge grid may have (CellSearch scans 140-210); bounds numrows x numcols.
MAX_GRID_FRAMES = 1000
#: Largest |coordinate| of an event location, in whole-cartridge pixels.
_MAX_COORDINATE_PX = MAX_GRID_FRAMES * MAX_SIDE_PX
_MAX_EVENT_ID = 2**63 - 1
_MAX_NUMSELECTED = 10**9


def parse_number(text: str, where: str, path: Path, low: float, high: float,
                 integer: bool = False) -> int | float:
    """Parse a number written in the XML; refuse anything else, naming the element.

    Accepts ASCII decimal notation only (``175``, ``0.645``, ``1.75e2``, surrounding
    spaces): no ``inf`` / ``nan``, no hexadecimal, no ``_`` separators, no non-ASCII
    digits such as ``²`` or ``٣``. The value must be finite and within ``low``–``high``;
    with ``integer`` it must also be whole (``5.0`` is read as 5, ``5.5`` is refused).

    Parameters
    ----------
    text
        The element text.
    where
        What the number is, for the message (e.g. ``runs/record/numcols``).
    path
        The XML file, for the message.
    low, high
        Inclusive bounds.
    integer
        Return an ``int``; refuse values that are not whole.

    Raises
    ------
    MetadataError
        Naming ``where``, the text found and ``path``.
    """
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        raise MetadataError(f"{where} is {_shown(text)}, not a number", path)
    value: int | float = float(stripped)
    if not math.isfinite(value):  # e.g. 1e999 or 400 digits
        raise MetadataError(f"{where} is {_shown(text)}, too large to be a number", path)
    if integer:
        if not value.is_integer():
            raise MetadataError(f"{where} is {_shown(text)}, not a whole number", path)
        # exact for digit strings (float would round ids past 2**53)
        value = int(stripped) if _WHOLE.fullmatch(stripped) else int(value)
    if not low <= value <= high:
        raise MetadataError(f"{where} is {_shown(text)}; must be from {low} to {high}", path)
    return value


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted on one line for a message, cut after ``limit`` characters."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


@dataclass(frozen=True)
class ReviewerEvent:
    """An event stored in the cartridge XML, in frame-local pixel coordinates.

    ``assigned`` is True when a reviewer confirmed the event as a CTC.
    """

    event_id: int
    frame: int
    x_px: float
    y_px: float
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 (frame-local px)
    assigned: bool
    numselected: int | None


@dataclass(frozen=True)
class CartridgeMetadata:
    """What the XML says; every field is ``None`` when the XML does not say it."""

    path: Path
    rows: int | None
    cols: int | None
    cam_width: int | None
    cam_height: int | None
    page_channels: tuple[str, ...] | None
    pixel_size_um: float | None
    raw_events: tuple[dict[str, str], ...]

    def reviewer_events(self, frame_width: int, frame_height: int) -> tuple[ReviewerEvent, ...]:
        """Reviewer events converted from whole-cartridge to frame-local coordinates."""
        if not self.raw_events:
            return ()
        if self.rows is None or self.cols is None:
            raise MetadataError("events are listed but runs/record/numrows/numcols are missing",
                                self.path)
        width = self.cam_width or frame_width
        height = self.cam_height or frame_height
        events = []
        for index, record in enumerate(self.raw_events, start=1):
            events.append(self._event(index, record, width, height))
        return tuple(events)

    def _event(self, index: int, record: dict[str, str], width: int, height: int) -> ReviewerEvent:
        where = f"events/record #{index}"
        path = self.path
        if not record.get("framenum"):
            raise MetadataError(f"{where} has no framenum", path)
        frame = parse_number(record["framenum"], f"{where} framenum", path,
                             1, self.rows * self.cols, integer=True)
        id_text = record.get("eventnum") or record.get("rid")
        event_id = (parse_number(id_text, f"{where} eventnum", path, 0, _MAX_EVENT_ID,
                                 integer=True) if id_text else index)
        points = _POINT.findall(record.get("location", ""))
        if len(points) != 2:
            raise MetadataError(
                f"{where} location {_shown(record.get('location', ''))} is not two '(x,y)' "
                "corners", path)
        gx0, gy0, gx1, gy1 = (
            parse_number(text, f"{where} location", path,
                         -_MAX_COORDINATE_PX, _MAX_COORDINATE_PX)
            for point in points for text in point)
        row, col = grid_position(frame, self.rows, self.cols)
        x0, x1 = sorted((gx0 - col * width, gx1 - col * width))
        y0, y1 = sorted((gy0 - row * height, gy1 - row * height))
        selected = record.get("numselected")
        return ReviewerEvent(
            event_id=event_id,
            frame=frame,
            x_px=(x0 + x1) / 2,
            y_px=(y0 + y1) / 2,
            bbox=(x0, y0, x1, y1),
            assigned=record.get("assigned", "").strip().lower() == "true",
            numselected=(parse_number(selected, f"{where} numselected", path, 0,
                                      _MAX_NUMSELECTED, integer=True) if selected else None),
        )


def read_metadata(path: Path) -> CartridgeMetadata:
    """Parse a CellTracks XML (root ``<archive>`` or ``<export>``).

    Raises
    ------
    MetadataError
        The file cannot be read or decoded, is not well-formed XML, declares entities
        (refused: entity expansion and external entities), has another root, or holds a
        grid, camera size or pixel size that is not a plausible number.
    """
    try:
        root = defusedxml.ElementTree.parse(path).getroot()
    except ET.ParseError as err:
        raise MetadataError(f"malformed XML ({err})", path) from None
    except defusedxml.EntitiesForbidden as err:
        raise MetadataError(
            f"declares the entity {_shown(err.name or '')}; entities are refused in cartridge "
            "metadata (entity expansion and external entities are a security risk)",
            path) from None
    except defusedxml.DefusedXmlException as err:
        raise MetadataError(f"refused as unsafe XML ({err})", path) from None
    except (LookupError, UnicodeError, ValueError) as err:  # unknown or unsupported encoding
        raise MetadataError(f"cannot decode the XML ({err})", path) from None
    except OSError as err:
        raise MetadataError(f"cannot read ({err.strerror or err})", path) from None
    if not isinstance(root.tag, str) or root.tag.lower() not in ("archive", "export"):
        raise MetadataError(f"root element is <{root.tag}>, expected <archive> or <export>", path)

    run = root.find("runs/record")

    def run_int(name: str, high: int) -> int | None:
        text = _text(run, name)
        return None if text is None else parse_number(text, f"runs/record/{name}", path,
                                                       1, high, integer=True)

    rows = run_int("numrows", MAX_GRID_FRAMES)
    cols = run_int("numcols", MAX_GRID_FRAMES)
    if rows is not None and cols is not None and rows * cols > MAX_GRID_FRAMES:
        raise MetadataError(
            f"runs/record/numrows x numcols is {rows} x {cols} = {rows * cols} frames; a "
            f"CellSearch grid has at most {MAX_GRID_FRAMES}", path)

    filters = [el.text.strip() for el in root.findall("test_filters/record/filtername")
               if el.text and el.text.strip()]
    page_channels = None
    if filters:
        mapped = [canonical_channel(name) for name in filters]
        unknown = [name for name, channel in zip(filters, mapped, strict=True) if channel is None]
        if unknown:
            shown = ", ".join(_shown(name) for name in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise MetadataError(f"unknown filter name(s) {shown}{more} in test_filters", path)
        page_channels = tuple(mapped)

    return CartridgeMetadata(
        path=path,
        rows=rows,
        cols=cols,
        cam_width=run_int("camxsize", MAX_SIDE_PX),
        cam_height=run_int("camysize", MAX_SIDE_PX),
        page_channels=page_channels,
        pixel_size_um=_pixel_size(root, path),
        raw_events=tuple(
            {child.tag.lower(): (child.text or "").strip() for child in record
             if isinstance(child.tag, str)}
            for record in root.findall("events/record")
        ),
    )


def _text(parent: ET.Element | None, name: str) -> str | None:
    if parent is None:
        return None
    el = parent.find(name)
    if el is None or el.text is None or not el.text.strip():
        return None
    return el.text.strip()


def _pixel_size(root: ET.Element, path: Path) -> float | None:
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.lower() in _PIXEL_SIZE_TAGS and el.text \
                and el.text.strip():
            return parse_number(el.text, f"<{el.tag}> (pixel size, µm)", path,
                                *PIXEL_SIZE_RANGE_UM)
    return None
