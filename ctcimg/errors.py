"""Exceptions ctcimg raises for bad input.

Every error that reaches a user is a :class:`CtcimgError`; the command line turns it
into one line naming the file and the problem, and a non-zero exit. CtcimgError is a
:class:`ValueError` (bad input is a bad value), so callers that catch ValueError keep working.
"""

from __future__ import annotations

from pathlib import Path


class CtcimgError(ValueError):
    """Base class of every error ctcimg reports to a user."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = message
        text = f"{_one_line(str(self.path))}: {message}" if self.path is not None else message
        super().__init__(_one_line(text))


def _one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name, say) and undecodable
    bytes escaped, so the message stays one printable line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for c in text)


class CartridgeError(CtcimgError):
    """A cartridge folder or one of its files cannot be read as a cartridge."""


class LayoutError(CartridgeError):
    """The folder is empty, holds no TIFF frames, or has no recognisable layout."""


class FrameNumberError(CartridgeError):
    """Frame numbers in file names have gaps or duplicates."""


class TiffError(CartridgeError):
    """A TIFF file is truncated, corrupt, or not a multi-page image."""


class FrameShapeError(CartridgeError):
    """A frame has the wrong page count, size or dtype, or absurd dimensions."""


class MetadataError(CartridgeError):
    """The cartridge XML is malformed or contradicts the images."""


class InputError(CtcimgError):
    """A table, profile or option given by the user is invalid (bad CSV, JSON, value)."""
