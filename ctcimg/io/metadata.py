"""CellTracks cartridge XML: grid, camera size, channel names and reviewer events."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ctcimg.channels import canonical_channel, grid_position
from ctcimg.errors import MetadataError

_POINT = re.compile(r"\(\s*(-?\d+(?:\.\d*)?)\s*,\s*(-?\d+(?:\.\d*)?)\s*\)")
_PIXEL_SIZE_TAGS = ("pixelsize", "pixel_size", "pixelsizeum", "pixel_size_um", "umperpixel")


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
        try:
            frame = int(record["framenum"])
            event_id = int(record.get("eventnum") or record.get("rid") or index)
        except (KeyError, ValueError):
            raise MetadataError(f"{where} has no valid framenum / eventnum", self.path) from None
        if not 1 <= frame <= self.rows * self.cols:
            raise MetadataError(
                f"{where} is in frame {frame}, outside the {self.rows} x {self.cols} grid",
                self.path,
            )
        points = _POINT.findall(record.get("location", ""))
        if len(points) != 2:
            raise MetadataError(
                f"{where} location {record.get('location')!r} is not two '(x,y)' corners",
                self.path,
            )
        row, col = grid_position(frame, self.rows, self.cols)
        (gx0, gy0), (gx1, gy1) = ((float(x), float(y)) for x, y in points)
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
            numselected=int(selected) if selected and selected.strip().isdigit() else None,
        )


def read_metadata(path: Path) -> CartridgeMetadata:
    """Parse a CellTracks XML (root ``<archive>`` or ``<export>``).

    Raises
    ------
    MetadataError
        The file is not well-formed XML, has another root, or holds non-numeric grid values.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise MetadataError(f"malformed XML ({err})", path) from None
    except OSError as err:
        raise MetadataError(f"cannot read ({err.strerror})", path) from None
    if root.tag.lower() not in ("archive", "export"):
        raise MetadataError(f"root element is <{root.tag}>, expected <archive> or <export>", path)

    run = root.find("runs/record")

    def run_int(name: str) -> int | None:
        text = _text(run, name)
        if text is None:
            return None
        try:
            value = int(float(text))
        except ValueError:
            raise MetadataError(f"runs/record/{name} is {text!r}, not a number", path) from None
        if value <= 0:
            raise MetadataError(f"runs/record/{name} is {value}; must be positive", path)
        return value

    filters = [el.text.strip() for el in root.findall("test_filters/record/filtername")
               if el.text and el.text.strip()]
    page_channels = None
    if filters:
        mapped = [canonical_channel(name) for name in filters]
        unknown = [name for name, channel in zip(filters, mapped, strict=True) if channel is None]
        if unknown:
            raise MetadataError(f"unknown filter name(s) {unknown} in test_filters", path)
        page_channels = tuple(mapped)

    return CartridgeMetadata(
        path=path,
        rows=run_int("numrows"),
        cols=run_int("numcols"),
        cam_width=run_int("camxsize"),
        cam_height=run_int("camysize"),
        page_channels=page_channels,
        pixel_size_um=_pixel_size(root, path),
        raw_events=tuple(
            {child.tag.lower(): (child.text or "").strip() for child in record}
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
        if el.tag.lower() in _PIXEL_SIZE_TAGS and el.text and el.text.strip():
            try:
                value = float(el.text)
            except ValueError:
                raise MetadataError(f"<{el.tag}> is {el.text!r}, not a number", path) from None
            if not 0.05 <= value <= 20:
                raise MetadataError(f"pixel size {value} µm is not plausible", path)
            return value
    return None
