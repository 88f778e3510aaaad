"""Find the bright cartridge edge in a frame, so events on it are not taken for cells.

Frames in the first or last row or column of the scan show the cartridge wall as a
bright band along one or two sides. Every side of every frame is checked (the grid of
a generic folder is unknown): the median intensity profile perpendicular to a side,
taken across the whole side length, is immune to cells; a band is where that profile
stands far above the frame's interior level.
"""

from __future__ import annotations

import numpy as np

from ctcimg.channels import CK, DAPI
from ctcimg.io.tiff import StoredFrame
from ctcimg.kernels.background import row_medians

#: How deep into the frame (px) a band is looked for.
MAX_BAND_PX = 400
#: A band is at least this far above the interior level (12-bit units) and this many times it.
MIN_BAND_RISE = 200.0
MIN_BAND_RATIO = 3.0
#: The band, stray-light glow included, ends where the profile has fallen to this many
#: 12-bit units above the interior level: a quarter of the gate's CK threshold
#: (``min_ck_mean``, 40), below which the glow's slope can no longer leave a residue that
#: passes for a dim CK+ cell. The glow decays over tens of pixels; ending the band at a
#: fraction of the band's rise (5 %, as before) left 20-40 units of glow beyond it on
#: bright bands, where residues of its gradient were called CTCs (development confounder
#: seeds 1005: 3 of 5 false CTCs, one of them in a patient without CTCs).
BAND_TAIL_LEVEL = 10.0
#: Sampling stride along the side (px); the median is taken over these samples.
STRIDE_PX = 16

SIDES = ("top", "bottom", "left", "right")


def cartridge_edge_depth(frame: np.ndarray | StoredFrame, sides: tuple[str, ...] = SIDES
                         ) -> dict[str, int]:
    """Depth in pixels of the bright cartridge-edge band on each of ``sides`` (0 where none).

    Parameters
    ----------
    frame
        float32 (4, H, W) on the 12-bit scale, or the stored pages
        (:class:`ctcimg.io.tiff.StoredFrame`); channel order of :data:`ctcimg.channels.CHANNELS`.
    sides
        Sides to examine: those the scan grid puts at the cartridge edge, or all four when
        the grid is unknown.
    """
    _, height, width = frame.shape
    if isinstance(frame, StoredFrame):
        def brightest(rows: slice, cols: slice) -> np.ndarray:
            return frame.region(rows, cols, (DAPI, CK)).max(axis=0)
    else:
        def brightest(rows: slice, cols: slice) -> np.ndarray:
            return np.maximum(frame[DAPI, rows, cols], frame[CK, rows, cols])
    reach_y = min(MAX_BAND_PX, height // 3)
    reach_x = min(MAX_BAND_PX, width // 3)
    depth = {}
    for side in sides:
        if side in ("top", "bottom"):
            rows = slice(0, reach_y) if side == "top" else slice(height - 1, height - 1 - reach_y,
                                                                  -1)
            block = brightest(rows, slice(None, None, STRIDE_PX))
        else:
            cols = slice(0, reach_x) if side == "left" else slice(width - 1, width - 1 - reach_x,
                                                                   -1)
            block = brightest(slice(None, None, STRIDE_PX), cols).T
        profile = row_medians(np.ascontiguousarray(block))  # np.median(block, axis=1)
        depth[side] = _band_depth(profile)
    return depth


def _band_depth(profile: np.ndarray) -> int:
    """Pixels from the side until the profile first falls back to within
    :data:`BAND_TAIL_LEVEL` of the interior level."""
    interior = float(np.median(profile[-len(profile) // 4:]))
    start = int(np.argmax(profile[: max(len(profile) // 8, 1)]))  # the band's peak
    peak = float(profile[start])
    rise = peak - interior
    if rise < MIN_BAND_RISE or peak < MIN_BAND_RATIO * max(interior, 1.0):
        return 0
    # the first fall from the peak, not the last pixel above the level: deep in a frame a
    # carpet of cells or blur can lift the median profile a few units here and there
    below = np.flatnonzero(profile[start:] <= interior + BAND_TAIL_LEVEL)
    return start + int(below[0]) if below.size else len(profile)


def in_cartridge_edge(x_px: np.ndarray, y_px: np.ndarray, depth: dict[str, int],
                      frame_shape: tuple[int, int], margin_px: float) -> np.ndarray:
    """True for points inside a band (plus ``margin_px``) found by :func:`cartridge_edge_depth`."""
    height, width = frame_shape
    x = np.asarray(x_px, float)
    y = np.asarray(y_px, float)
    inside = np.zeros(x.shape, bool)
    if depth.get("top"):
        inside |= y < depth["top"] + margin_px
    if depth.get("bottom"):
        inside |= y > height - 1 - depth["bottom"] - margin_px
    if depth.get("left"):
        inside |= x < depth["left"] + margin_px
    if depth.get("right"):
        inside |= x > width - 1 - depth["right"] - margin_px
    return inside
