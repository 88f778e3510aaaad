"""One frame as a pure function of ``(spec, frame_number)``, and the truth of its objects.

:func:`render_frame` draws the frame's optics (:mod:`ctcimg.simulate.optics`), places its
bodies (:mod:`ctcimg.simulate.placement`), draws each into a small patch (textured stains,
the PSF blur, the HER2 signal scaled to its level) and records what it drew as a
:class:`ctcimg.simulate.truth.SimulatedObject`. Each frame draws from its own stream
``[seed, 3, frame]`` and, with confounders, also from ``[seed, 7, frame]``
(:mod:`ctcimg.simulate.confounders`), so the confounder model leaves every other draw as
it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ctcimg.simulate.bodies import _Body, _rho
from ctcimg.simulate.confounders import _confounder_plan
from ctcimg.simulate.optics import (
    _beyond_edge_band,
    _frame_optics,
    _FrameOptics,
    _in_edge_zone,
    _lit_frame,
    _opencv,
    _read_out,
)
from ctcimg.simulate.placement import _frame_bodies
from ctcimg.simulate.reviewer import _presented
from ctcimg.simulate.spec import CartridgeSpec
from ctcimg.simulate.truth import SimulatedObject


class _Patch(NamedTuple):
    """One body drawn into a small patch of the frame."""

    y0: int  # the patch's top left corner in the frame
    x0: int
    pixels: np.ndarray  # H x W x 4, canonical channel order
    union: np.ndarray  # cell ∪ nucleus mask
    hard: np.ndarray  # hard cell mask
    nonspecific: float  # mean nonspecific HER2 over the cell


@dataclass(frozen=True)
class _Frame:
    """What every body of one frame shares: the spec, the frame's optics and its conditions."""

    spec: CartridgeSpec
    number: int
    optics: _FrameOptics
    dense: bool  # a confounder: a leukocyte carpet
    her2_nonspecific: float  # the sample's nonspecific FITC over every cell body


def _soft(rho, r):
    """Anti-aliased mask of ``rho < 1`` for a shape of radius ``r`` px."""
    return np.clip((1.0 - rho) * r + 0.5, 0.0, 1.0)


def _texture(rng, shape, sigma=1.3):
    cv2 = _opencv()

    t = rng.standard_normal((*shape, 2), dtype=np.float32)
    t = cv2.GaussianBlur(t, (0, 0), sigma)
    return t / (t.std() + 1e-6)


def _render_body(body: _Body, rng, psf_sigma: float, her2_nonspecific: float = 0.0):
    """Draw one object into a small patch.

    ``her2_nonspecific`` is added uniformly over the cell body after the object's own HER2
    is scaled to its signal.
    """
    cv2 = _opencv()

    pad = int(math.ceil(3 * psf_sigma)) + 3
    if body.cd45_membrane >= 0:  # the rim ring reaches outside the cell
        pad += int(math.ceil(body.cd45_rim_px))
    r = body.radius
    x0 = int(math.floor(body.cx - r)) - pad
    y0 = int(math.floor(body.cy - r)) - pad
    x1 = int(math.ceil(body.cx + r)) + pad + 1
    y1 = int(math.ceil(body.cy + r)) + pad + 1
    h, w = y1 - y0, x1 - x0
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    tex = _texture(rng, (h, w))
    patch = np.zeros((h, w, 4), dtype=np.float32)
    if body.na:
        nrho = _rho(xx, yy, body.nx, body.ny, body.na, body.nb, body.ntheta)
        nuc = _soft(nrho, min(body.na, body.nb))
        nuc_hard = nrho < 1.0
    else:
        nuc = np.zeros((h, w), np.float32)
        nuc_hard = np.zeros((h, w), bool)
    if body.a:
        rho = _rho(xx, yy, body.cx, body.cy, body.a, body.b, body.theta, body.wobble)
        rcell = min(body.a, body.b)
        cell = _soft(rho, rcell)
        hard = rho < 1.0
        # membrane ring just inside the rim, ~1.3 px wide
        ring = np.exp(-(((1.0 - rho) * rcell - 1.0) / 1.3) ** 2)
        ring *= rho < 1.15
    else:  # bare nucleus: no cell body
        cell = nuc
        hard = nuc_hard
        ring = np.zeros((h, w), np.float32)
    # DAPI: chromatin texture inside the nucleus
    patch[..., 0] = body.dapi * nuc * (1.0 + 0.18 * tex[..., 0])
    # CK: granular cytoplasm, dimmer over the nucleus (or, confounders, over/around it)
    if body.ck and body.ck_over_nucleus:
        around = _soft(nrho / 1.15, 1.15 * min(body.na, body.nb))
        patch[..., 1] = body.ck * around * cell * (1.0 + 0.3 * tex[..., 1])
    elif body.ck:
        patch[..., 1] = body.ck * cell * (1.0 + 0.3 * tex[..., 1]) * (1.0 - 0.35 * nuc)
    # CD45: membrane-dominant; confounders: a fraction on a ring peaking at the rim,
    # FWHM cd45_rim_px, as much outside the cell as inside
    if body.cd45 and body.cd45_membrane >= 0:
        rim = np.exp(-(((rho - 1.0) * rcell / (body.cd45_rim_px / 1.665)) ** 2))
        profile = body.cd45_membrane * rim + (1.0 - body.cd45_membrane) * cell
        patch[..., 2] = body.cd45 * profile * (1.0 + 0.15 * tex[..., 1])
    elif body.cd45:
        patch[..., 2] = body.cd45 * (0.45 * cell + 0.8 * ring) * (1.0 + 0.15 * tex[..., 1])
    if body.her2:
        patch[..., 3] = ((1.0 - body.membrane) * cell + body.membrane * 2.5 * ring) * (
            1.0 + 0.2 * tex[..., 0]
        )
    np.maximum(patch, 0.0, out=patch)
    patch = cv2.GaussianBlur(patch, (0, 0), psf_sigma)
    if body.her2:
        sel = hard if hard.any() else cell > 0.5
        mean = float(patch[..., 3][sel].mean()) if sel.any() else 0.0
        if mean > 0:
            patch[..., 3] *= body.her2 / mean
    nonspecific_mean = 0.0
    if her2_nonspecific > 0:
        nonspecific = cv2.GaussianBlur(cell.astype(np.float32), (0, 0), psf_sigma)
        nonspecific *= np.float32(her2_nonspecific)
        patch[..., 3] += nonspecific
        nonspecific_mean = float(nonspecific[hard].mean()) if hard.any() else 0.0
    return _Patch(y0, x0, patch, hard | nuc_hard, hard, nonspecific_mean)


def render_frame(
    spec: CartridgeSpec, frame_number: int
) -> tuple[np.ndarray, list[SimulatedObject]]:
    """Render one frame exactly as :func:`~ctcimg.simulate.simulate_cartridge` writes it.

    Parameters
    ----------
    spec
        The cartridge spec (``SimulatedCartridge.spec``).
    frame_number
        1-based frame number.

    Returns
    -------
    pixels : ndarray of uint16, shape (4, H, W)
        The 12-bit frame (0–4095, rounded and clipped) in canonical channel order
        :data:`ctcimg.channels.CHANNELS` (DAPI, CK, CD45, HER2); the TIFF holds the same
        pages in CellSearch order, contrast-stretched.
    objects : list of SimulatedObject
        The truth for this frame. ``object_id`` is frame × 10000 + index.
    """
    if not 1 <= frame_number <= spec.n_frames:
        raise ValueError(f"frame_number {frame_number} outside 1..{spec.n_frames}")
    rng = np.random.default_rng([spec.seed, 3, frame_number])
    # confounders draw from their own streams, so without them nothing below changes
    conf = _confounder_plan(spec) if spec.confounders > 0 else None
    crng = np.random.default_rng([spec.seed, 7, frame_number]) if conf else None
    optics = _frame_optics(spec, frame_number, rng, crng,
                           defocused=conf is not None and frame_number in conf.defocused)
    pixels = _lit_frame(rng, spec.frame_shape, optics.edge_widths,
                        conf.background_scale if conf else None)
    bodies = _frame_bodies(spec, frame_number, optics.keepout, rng, crng, conf)
    frame = _Frame(spec, frame_number, optics,
                   dense=conf is not None and frame_number in conf.dense,
                   her2_nonspecific=conf.her2_nonspecific if conf else 0.0)
    objects = []
    for index, body in enumerate(bodies):
        patch = _render_body(body, crng if body.confounder_stream else rng, optics.psf_sigma,
                             frame.her2_nonspecific)
        _paste(pixels, patch)
        objects.append(_truth_object(frame, index, body, patch))
    return _read_out(pixels, rng, spec.seed), objects


def _paste(pixels: np.ndarray, patch: _Patch) -> None:
    """Add a patch to the frame (4 x H x W), clipped to the frame."""
    _, h, w = pixels.shape
    ph, pw = patch.pixels.shape[:2]
    y0, x0 = patch.y0, patch.x0
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + ph, h), min(x0 + pw, w)
    if ya < yb and xa < xb:
        pixels[:, ya:yb, xa:xb] += patch.pixels[ya - y0:yb - y0, xa - x0:xb - x0].transpose(2, 0, 1)


def _truth_object(frame: _Frame, index: int, body: _Body, patch: _Patch) -> SimulatedObject:
    """The truth of a drawn body: centre and box of its cell ∪ nucleus, size, HER2 signal."""
    h, w = frame.spec.frame_shape
    px = frame.spec.pixel_size_um
    widths = frame.optics.edge_widths
    ys, xs = np.nonzero(patch.union)
    cy = float(ys.mean()) + patch.y0
    cx = float(xs.mean()) + patch.x0
    by0, by1 = int(ys.min()) + patch.y0, int(ys.max()) + patch.y0
    bx0, bx1 = int(xs.min()) + patch.x0, int(xs.max()) + patch.x0
    if body.kind == "bare_nucleus":
        diameter = 2 * math.sqrt(body.na * body.nb) * px
    else:
        diameter = 2 * math.sqrt(body.a * body.b) * px
    hard = patch.hard
    her2_mean = float(patch.pixels[..., 3][hard].mean()) - patch.nonspecific if hard.any() else 0.0
    return SimulatedObject(
        object_id=frame.number * 10000 + index,
        frame=frame.number,
        x_px=round(cx, 2),
        y_px=round(cy, 2),
        kind=body.kind,
        her2_level=body.her2_level,
        her2_signal=round(her2_mean, 2),
        diameter_um=round(diameter, 2),
        cluster_id=body.cluster_id,
        cut_by_border=bool(by0 < 0 or bx0 < 0 or by1 > h - 1 or bx1 > w - 1),
        in_edge_zone=_in_edge_zone(widths, (bx0, by0, bx1, by1), (h, w)),
        reviewer_assigned=bool(body.reviewer_assigned),
        bbox=(max(bx0, 0), max(by0, 0), min(bx1, w - 1), min(by1, h - 1)),
        presented=_presented(body),
        context=body.context,
        defocused=frame.optics.defocused,
        dense=frame.dense,
        her2_nonspecific=round(patch.nonspecific, 2),
        ck_amplitude=body.ck,
        beyond_edge_band_px=_beyond_edge_band(widths, cx, cy, (h, w)),
    )
