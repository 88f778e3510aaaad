"""The cartridge-edge band: where it ends, glow included."""

import numpy as np
import pytest

from ctcimg.channels import CK, DAPI
from ctcimg.edge import BAND_TAIL_LEVEL, cartridge_edge_depth, in_cartridge_edge


def _band_frame(seed: int, side: str, width: float, amplitude: float, glow: float,
                glow_px: float, shape=(1036, 1384)):
    """Background 100 with noise, plus a band of ``width`` px on ``side`` (a soft step) and
    its stray-light glow (``glow`` × ``amplitude`` at the band's edge, decaying over
    ``glow_px``) in DAPI and CK; returns the frame and the noiseless excess profile."""
    rng = np.random.default_rng(seed)
    h, w = shape
    frame = rng.normal(100.0, 8.0, size=(4, h, w)).astype(np.float32)
    depth = h if side in ("top", "bottom") else w
    d = np.arange(depth, dtype=np.float64)
    excess = amplitude * (1.0 / (1.0 + np.exp(np.clip((d - width) / 5.0, -30, 30)))
                          + glow * np.exp(-np.maximum(d - width, 0.0) / glow_px))
    for channel in (DAPI, CK):
        if side == "top":
            frame[channel] += excess[:, None].astype(np.float32)
        elif side == "bottom":
            frame[channel] += excess[::-1, None].astype(np.float32)
        elif side == "left":
            frame[channel] += excess[None, :].astype(np.float32)
        else:
            frame[channel] += excess[None, ::-1].astype(np.float32)
    return frame, excess


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
@pytest.mark.parametrize(("amplitude", "glow_px"), [(2000.0, 25.0), (600.0, 12.0)])
def test_the_band_ends_where_its_glow_fades_to_the_tail_level(side, amplitude, glow_px):
    frame, excess = _band_frame(3, side, 90.0, amplitude, 0.12, glow_px)
    # the first pixel from the side where the noiseless excess is back below the level
    expected = int(np.flatnonzero(excess <= BAND_TAIL_LEVEL)[0])
    depth = cartridge_edge_depth(frame)
    assert abs(depth[side] - expected) <= 4, (depth, expected)
    assert all(v == 0 for s, v in depth.items() if s != side)
    # deeper than where the bright step ends (5 % of the rise, the old limit)
    assert depth[side] > int(np.flatnonzero(excess <= 0.05 * amplitude)[0]) + 5


def test_an_event_in_the_glow_is_on_the_band_and_one_beyond_it_is_not():
    frame, excess = _band_frame(4, "bottom", 100.0, 1500.0, 0.12, 25.0)
    depth = cartridge_edge_depth(frame)
    h, w = frame.shape[1:]
    glow_y = h - 1 - (100 + 25)  # 25 px into the glow: excess ~ 0.12 × 1500 / e = 66
    assert excess[125] > 4 * BAND_TAIL_LEVEL
    clear_y = h - 1 - (np.flatnonzero(excess <= 0.5)[0] + 20)
    inside = in_cartridge_edge(np.array([400.0, 400.0]), np.array([glow_y, clear_y]), depth,
                               (h, w), margin_px=0.0)
    assert inside.tolist() == [True, False]


def test_no_band_on_a_frame_with_a_gentle_illumination_gradient():
    rng = np.random.default_rng(5)
    frame = rng.normal(100.0, 8.0, size=(4, 1036, 1384)).astype(np.float32)
    frame += np.linspace(0.0, 150.0, 1036, dtype=np.float32)[None, :, None]  # below a band's rise
    assert cartridge_edge_depth(frame) == {"top": 0, "bottom": 0, "left": 0, "right": 0}


def test_the_band_ends_at_the_glow_not_at_a_brighter_stretch_deeper_in_the_frame():
    frame, excess = _band_frame(6, "right", 80.0, 2500.0, 0.12, 20.0)
    # a stretch of the frame 300 px in, lifted 20 units over its whole height (a carpet of
    # cells, a blur): not the band, which ended where its glow faded
    frame[:, :, -310:-290] += 20.0
    expected = int(np.flatnonzero(excess <= BAND_TAIL_LEVEL)[0])
    depth = cartridge_edge_depth(frame)["right"]
    assert abs(depth - expected) <= 4, (depth, expected)
