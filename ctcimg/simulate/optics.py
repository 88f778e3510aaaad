"""Optics on the 12-bit scale: background, the bright cartridge edge, noise, saturation.

Per frame (drawn from the frame's stream ``[seed, 3, frame]``): a smooth per-channel
background with vignetting, a linear gradient and low-frequency texture; the bright,
textured cartridge edge with its stray-light glow in frames of the outer grid rows and
columns; shot noise (Gaussian approximation, variance = gain × signal) and read noise from
a per-cartridge noise bank (stream ``[seed, 2]``), then 12-bit quantisation and saturation.
The PSF is a Gaussian blur applied per object (:mod:`ctcimg.simulate.render`); defocused
frames are a confounder (:mod:`ctcimg.simulate.confounders`).
"""

from __future__ import annotations

import functools

import numpy as np

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


def _edge_band(rng, frame: np.ndarray, sides, widths: dict[str, float]) -> None:
    """Add the bright cartridge edge on ``sides`` in place (all channels, textured)."""
    cv2 = _opencv()

    _, h, w = frame.shape
    for side in sides:
        length = w if side in ("top", "bottom") else h
        width = widths[side]
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
