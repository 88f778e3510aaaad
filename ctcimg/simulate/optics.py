"""Optics on the 12-bit scale: background, the bright cartridge edge, noise, saturation.

Per frame (drawn from the frame's stream ``[seed, 3, frame]``): a smooth per-channel
background with vignetting, a linear gradient and low-frequency texture; the bright,
textured cartridge edge with its stray-light glow in frames of the outer grid rows and
columns; shot noise (Gaussian approximation, variance = gain × signal) and read noise from
a per-cartridge noise bank (stream ``[seed, 2]``), then 12-bit quantisation and saturation.
The PSF is Gaussian: its sigma is drawn here per frame (1.0–1.5 px; 2.5–4.5 px in a
defocused frame, a confounder, :mod:`ctcimg.simulate.confounders`) and the blur applied per
object (:mod:`ctcimg.simulate.render`). A frame's truth also records how its objects lie
relative to the edge band (:func:`_in_edge_zone`, :func:`_beyond_edge_band`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ctcimg.channels import MAX_12BIT, edge_sides, edge_sides_at
from ctcimg.io.celltracks_xp import bottom_up_position
from ctcimg.simulate.spec import CartridgeSpec

#: Background level per channel (canonical order DAPI, CK, CD45, HER2), 12-bit units.
_BG_LEVEL = np.array([45.0, 55.0, 38.0, 65.0], dtype=np.float32)
#: Bright cartridge edge amplitude per channel, 12-bit units.
_EDGE_LEVEL = np.array([900.0, 1400.0, 500.0, 1800.0], dtype=np.float32)
_GAIN = 0.6  # ADU per photo-electron: shot-noise variance = gain * signal
_READ_NOISE = 3.0  # ADU


def _opencv():
    """OpenCV, limited to one thread.

    OpenCV's worker threads keep spinning after a call; in a process that then runs
    ctcimg's numba kernels (tests, benchmarks that simulate and score) they stall every
    parallel region. The simulator blurs small patches, so one thread loses nothing.
    """
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _background(rng, shape) -> np.ndarray:
    """Smooth per-channel background: level × vignetting + linear gradient + low-freq texture."""
    cv2 = _opencv()

    h, w = shape
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    aspect = h / w
    out = np.empty((4, h, w), dtype=np.float32)
    for c in range(4):
        level = _BG_LEVEL[c] * rng.uniform(0.8, 1.25)
        vig = rng.uniform(0.2, 0.4) / (1.0 + aspect**2)
        gx, gy = rng.uniform(-0.12, 0.12, size=2)
        col = level * (1.0 - vig * x * x + gx * x)
        row = level * (-vig * aspect**2 * y * y + gy * y)
        coarse = rng.normal(1.0, 0.04, size=(4, 5)).astype(np.float32)
        tex = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        np.add(row, col, out=out[c])
        out[c] *= tex
    return out


@dataclass(frozen=True)
class _FrameOptics:
    """A frame's optics draws: the bright cartridge-edge bands and the PSF."""

    edge_widths: dict[str, float]  # band width (px) per side on the cartridge edge
    keepout: tuple[float, float, float, float]  # top, bottom, left, right: no centre nearer
    psf_sigma: float  # px
    defocused: bool  # a confounder: a wider PSF


def _frame_optics(spec: CartridgeSpec, frame_number: int, rng, crng,
                  defocused: bool) -> _FrameOptics:
    """Draw the edge bands (50–150 px, at most a fifth of the frame side they lie across) and
    the PSF sigma (1.0–1.5 px; defocused, from the confounder stream ``crng``: 2.5–4.5)."""
    h, w = spec.frame_shape
    rows, cols = spec.grid
    if spec.scan_from_bottom:
        sides = edge_sides_at(*bottom_up_position(frame_number, rows, cols), rows, cols)
    else:
        sides = edge_sides(frame_number, rows, cols)
    widths = {
        s: float(rng.uniform(50, 150)) * min(1.0, 0.2 * (h if s in ("top", "bottom") else w) / 150)
        for s in sides
    }
    keepout = tuple(0.5 * widths.get(s, 0.0) for s in ("top", "bottom", "left", "right"))
    psf_sigma = float(rng.uniform(1.0, 1.5))
    if defocused:
        psf_sigma = float(crng.uniform(2.5, 4.5))
    return _FrameOptics(widths, keepout, psf_sigma, defocused)


def _lit_frame(rng, shape: tuple[int, int], edge_widths: dict[str, float],
               background_scale: float | None) -> np.ndarray:
    """The frame before any object: background (scaled per sample) and the edge bands."""
    frame = _background(rng, shape)
    if background_scale is not None:
        frame *= np.float32(background_scale)
    if edge_widths:
        _edge_band(rng, frame, edge_widths)
    return frame


def _edge_band(rng, frame: np.ndarray, widths: dict[str, float]) -> None:
    """Add the bright cartridge edge on the sides of ``widths`` in place (all channels,
    textured)."""
    cv2 = _opencv()

    _, h, w = frame.shape
    for side, width in widths.items():
        length = w if side in ("top", "bottom") else h
        depth = int(min(length if side in ("top", "bottom") else w, 3 * width + 80))
        depth = min(depth, h if side in ("top", "bottom") else w)
        coarse = rng.normal(0.0, 1.0, size=max(4, length // 80)).astype(np.float32)[None, :]
        jitter = cv2.resize(coarse, (length, 1), interpolation=cv2.INTER_CUBIC)[0] * 8.0
        tex_coarse = rng.normal(1.0, 0.2, size=(max(3, depth // 30), max(4, length // 40)))
        tex = cv2.resize(tex_coarse.astype(np.float32), (length, depth),
                         interpolation=cv2.INTER_CUBIC)
        d = np.arange(depth, dtype=np.float32)[:, None]
        edge = width + jitter[None, :]
        strip = 1.0 / (1.0 + np.exp(np.clip((d - edge) / 5.0, -30, 30)))
        strip += 0.12 * np.exp(-np.maximum(d - edge, 0.0) / (0.25 * width))  # stray-light glow
        strip *= np.maximum(tex, 0.3)
        amps = _EDGE_LEVEL * rng.uniform(0.5, 1.8, size=4).astype(np.float32)
        for c in range(4):
            s = strip * amps[c]
            if side == "top":
                frame[c, :depth, :] += s
            elif side == "bottom":
                frame[c, h - depth:, :] += s[::-1]
            elif side == "left":
                frame[c, :, :depth] += s.T
            else:
                frame[c, :, w - depth:] += s[::-1].T


@functools.lru_cache(maxsize=2)
def _noise_bank(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng([seed, 2])
    h, w = shape
    return rng.standard_normal((h + 61, w + 67), dtype=np.float32)


def _in_edge_zone(widths: dict[str, float], bbox: tuple[int, int, int, int],
                  shape: tuple[int, int]) -> bool:
    """Whether a box (x0, y0, x1, y1) reaches the edge zone: the band plus its glow (twice the
    band width from the outer side)."""
    h, w = shape
    x0, y0, x1, y1 = bbox
    return bool(
        ("top" in widths and y0 < 2 * widths["top"])
        or ("bottom" in widths and y1 > h - 1 - 2 * widths["bottom"])
        or ("left" in widths and x0 < 2 * widths["left"])
        or ("right" in widths and x1 > w - 1 - 2 * widths["right"])
    )


def _beyond_edge_band(widths: dict[str, float], x: float, y: float,
                      shape: tuple[int, int]) -> float:
    """How far (px) a point lies past the nearest edge band's inner boundary (<= 0: on the
    band; infinite without a band)."""
    h, w = shape
    return min((position - widths[side] for side, position in (
        ("top", y), ("bottom", h - 1 - y), ("left", x), ("right", w - 1 - x))
        if side in widths), default=math.inf)


def _read_out(frame: np.ndarray, rng, seed: int) -> np.ndarray:
    """The camera's readout of ``frame`` (float32, changed in place): shot and read noise
    (Gaussian approximation), then 12-bit quantisation and saturation; uint16."""
    _, h, w = frame.shape
    bank = _noise_bank(seed, (h, w))
    for c in range(4):
        dy = int(rng.integers(0, bank.shape[0] - h + 1))
        dx = int(rng.integers(0, bank.shape[1] - w + 1))
        img = frame[c]
        sd = np.multiply(img, np.float32(_GAIN))
        sd += np.float32(_READ_NOISE**2)
        np.sqrt(sd, out=sd)
        sd *= bank[dy:dy + h, dx:dx + w]
        img += sd
    np.clip(frame, 0, MAX_12BIT, out=frame)
    np.rint(frame, out=frame)
    return frame.astype(np.uint16)
