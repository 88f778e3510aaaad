"""Single source of truth for channel names, frame geometry and HER2 bins."""

from __future__ import annotations

#: Channel order of every frame array ctcimg hands out: ``frame[i]`` is ``CHANNELS[i]``.
CHANNELS: tuple[str, ...] = ("DAPI", "CK", "CD45", "HER2")
DAPI, CK, CD45, HER2 = range(4)

#: Page order of a CellTracks Analyzer II TIFF on disk: DAPI, FITC (marker), PE, APC.
CELLSEARCH_PAGE_ORDER: tuple[str, ...] = ("DAPI", "HER2", "CK", "CD45")

#: Filter / stain names found in CellTracks XML (``test_filters/record/filtername``)
#: and in user-given channel lists, mapped to canonical channel names.
CHANNEL_ALIASES: dict[str, str] = {
    "dapi": "DAPI",
    "hoechst": "DAPI",
    "nucleus": "DAPI",
    "ck": "CK",
    "pe": "CK",
    "ck-pe": "CK",
    "ckpe": "CK",
    "cytokeratin": "CK",
    "cd45": "CD45",
    "apc": "CD45",
    "cd45-apc": "CD45",
    "her2": "HER2",
    "fitc": "HER2",
    "her2-fitc": "HER2",
    "marker": "HER2",
}

#: CellTracks filter name of each canonical channel, as an export's metadata names the pages.
FILTER_NAMES: dict[str, str] = {"DAPI": "DAPI", "HER2": "FITC", "CK": "PE", "CD45": "APC"}

#: CellTracks Analyzer II camera frame, pixels (width, height).
FRAME_WIDTH = 1384
FRAME_HEIGHT = 1036
#: Pixel size in µm when the metadata does not give one.
PIXEL_SIZE_UM = 0.64
#: Plausible pixel sizes, µm (inclusive): a value outside is a typo or a unit mix-up.
PIXEL_SIZE_RANGE_UM: tuple[float, float] = (0.05, 20.0)
#: Restored intensities live on the 12-bit scale.
MAX_12BIT = 4095

#: Known frames-per-cartridge → (rows, columns) grids; the XML wins when present.
GRID_BY_FRAME_COUNT: dict[int, tuple[int, int]] = {
    175: (5, 35),
    180: (5, 36),
    210: (6, 35),
    170: (5, 34),
    144: (4, 36),
    140: (4, 35),
}

#: HER2 bin labels, lowest to highest.
HER2_BINS: tuple[str, ...] = ("0", "1+", "2+", "3+")


def canonical_channel(name: str) -> str | None:
    """Map a filter or stain name to a canonical channel name, or ``None`` if unknown."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in CHANNEL_ALIASES:
        return CHANNEL_ALIASES[key]
    for alias, canonical in CHANNEL_ALIASES.items():
        if alias in key.split("-"):
            return canonical
    return None


def grid_position(frame_number: int, rows: int, cols: int) -> tuple[int, int]:
    """Zero-based (row, column) of a 1-based frame number on a serpentine scan.

    Row 1 runs left to right, row 2 right to left, and so on.

    Examples
    --------
    >>> grid_position(1, 5, 35), grid_position(35, 5, 35), grid_position(36, 5, 35)
    ((0, 0), (0, 34), (1, 34))
    """
    row, step = divmod(frame_number - 1, cols)
    col = cols - 1 - step if row % 2 else step
    return row, col


def edge_sides(frame_number: int, rows: int, cols: int) -> tuple[str, ...]:
    """Sides ("top", "bottom", "left", "right") on which a frame touches the cartridge edge."""
    return edge_sides_at(*grid_position(frame_number, rows, cols), rows, cols)


def edge_sides_at(row: int, col: int, rows: int, cols: int) -> tuple[str, ...]:
    """Sides on which the zero-based grid cell (row, col) touches the cartridge edge."""
    sides = []
    if row == 0:
        sides.append("top")
    if row == rows - 1:
        sides.append("bottom")
    if col == 0:
        sides.append("left")
    if col == cols - 1:
        sides.append("right")
    return tuple(sides)
