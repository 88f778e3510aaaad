"""The registry of export formats that :func:`ctcimg.read_cartridge` and batch discovery share.

A folder is a cartridge when one of :data:`FORMATS` detects it, first match wins (the most
specific format first). Adding a format is one module with a
:class:`~ctcimg.io.source.CartridgeFormat` object, listed here.
"""

from __future__ import annotations

from pathlib import Path

from ctcimg.errors import LayoutError
from ctcimg.io.celltracks import CellTracksXml, GenericTiff
from ctcimg.io.celltracks_xp import CellTracksXp
from ctcimg.io.source import CartridgeFormat, FoundCartridge, walk_visible

#: every format the reader knows, most specific first
FORMATS: tuple[CartridgeFormat, ...] = (CellTracksXp(), CellTracksXml(), GenericTiff())
#: what opens a folder no format detects (a nested image folder, or bad input to report)
FALLBACK: CartridgeFormat = FORMATS[2]


def detect_format(folder: Path) -> CartridgeFormat | None:
    """The first format that recognises ``folder`` as one of its cartridges, or None."""
    for candidate in FORMATS:
        if candidate.detect(folder):
            return candidate
    return None


def is_cartridge_folder(folder: Path) -> bool:
    """Whether some format recognises ``folder`` as a cartridge (what batch discovery asks)."""
    return detect_format(Path(folder)) is not None


def open_found(root: Path, channels: tuple[str, ...] | None,
               pixel_size_um: float | None) -> FoundCartridge:
    """Open ``root`` with the format that detects it, else with the tolerant TIFF-folder
    reader (which finds a nested image folder or says what is wrong)."""
    found_format = detect_format(root)
    if found_format is None:
        _refuse_xp_parent(root)
        found_format = FALLBACK
    return found_format.open(root, channels, pixel_size_um)


def _refuse_xp_parent(root: Path) -> None:
    """A folder above a CellTracks XP cartridge would otherwise be read as a TIFF folder."""
    holders = [folder.relative_to(root).as_posix() for folder, _, names in walk_visible(root, 3)
               if "pic.dlm" in {name.lower() for name in names}]
    if len(holders) > 1:
        raise LayoutError(f"CellTracks XP metadata (pic.dlm) in several folders "
                          f"({', '.join(holders)}); open one cartridge at a time", root)
    if holders == ["."]:
        raise LayoutError("holds CellTracks XP metadata (pic.dlm) but no TIFF frames "
                          "(looked up to 3 folders deep)", root)
    if holders:
        raise LayoutError(
            f"holds CellTracks XP metadata in {holders[0]}/ but is not itself the cartridge "
            "folder (the nearest folder above pic.dlm whose tree holds the frame TIFFs); "
            "open that folder",
            root,
        )
