"""The objects of a frame before rendering: geometry and stain amplitudes per kind.

* CTCs: CK+ DAPI+ CD45−, diameter 7–20 µm (lognormal, median 12 µm: the published median
  breast CTC diameter, DESIGN.md §2), slightly elliptical with a lobed wobble, nucleus
  inside; HER2 membrane-dominant at four levels (:data:`HER2_LEVEL_SIGNAL`);
* leukocytes: DAPI+ CD45+, 6.5–13 µm (median 9 µm);
* decoys a naive pipeline would count (:data:`DECOY_RATE`): CK debris, CK+CD45+ doubles,
  sub-4 µm specks, bare nuclei, CK blobs with the nucleus beside them (nucleus_outside).

The confounder model restains and adds bodies of its own (:mod:`ctcimg.simulate.confounders`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Mean background-free HER2 (FITC) signal over the cell area, 12-bit units, per HER2 level.
#: Per-cell values are lognormal around these with sigma :data:`HER2_LOG_SPREAD`.
HER2_LEVEL_SIGNAL: dict[int, float] = {0: 8.0, 1: 50.0, 2: 140.0, 3: 380.0}
#: Lognormal sigma of a CTC's HER2 signal around its level mean.
HER2_LOG_SPREAD = 0.17
#: Decoy kinds and their mean count per frame.
DECOY_RATE: dict[str, float] = {
    "ck_debris": 0.5,
    "ck_cd45_double": 0.12,
    "speck": 0.4,
    "bare_nucleus": 0.8,
    "nucleus_outside": 0.15,
}


@dataclass
class _Body:
    """Geometry and stain amplitudes of one object before rendering (pixels, 12-bit)."""

    kind: str
    cx: float
    cy: float
    a: float  # cell semi-axes (px); 0 = no cell body (bare nucleus)
    b: float
    theta: float
    nx: float = 0.0  # nucleus centre and semi-axes; na = 0 = no nucleus
    ny: float = 0.0
    na: float = 0.0
    nb: float = 0.0
    ntheta: float = 0.0
    ck: float = 0.0
    dapi: float = 0.0
    cd45: float = 0.0
    her2: float = 0.0
    her2_level: int = -1
    membrane: float = 0.7  # fraction of HER2 in the membrane ring
    cluster_id: int = -1
    wobble: tuple[float, float, float] = (0.0, 3.0, 0.0)  # amplitude, lobes, phase
    # confounder model: CD45 fraction on a rim ring of FWHM cd45_rim_px (-1 = the default
    # profile), CK over/around the nucleus instead of the cytoplasm, truth context
    cd45_membrane: float = -1.0
    cd45_rim_px: float = 2.5
    ck_over_nucleus: bool = False
    context: str = ""
    # placement: the reviewer's call (truth), and whether the confounder model drew the body
    # (then it is textured from the confounder stream)
    reviewer_assigned: bool = False
    confounder_stream: bool = False

    @property
    def radius(self) -> float:
        r = max(self.a, self.b)
        if self.na:
            r = max(r, math.hypot(self.nx - self.cx, self.ny - self.cy) + max(self.na, self.nb))
        return r


def _lognormal(rng, median, sigma, low=None, high=None):
    v = float(median * math.exp(sigma * rng.standard_normal()))
    if low is not None:
        v = max(low, v)
    if high is not None:
        v = min(high, v)
    return v


def _her2_signal(rng, level: int) -> float:
    return _lognormal(rng, HER2_LEVEL_SIGNAL[level], HER2_LOG_SPREAD)


def _ctc_body(rng, level: int, px: float, cx=0.0, cy=0.0, cluster_id=-1) -> _Body:
    d_um = _lognormal(rng, 12.0, 0.22, 7.0, 20.0)
    r = d_um / 2 / px
    ecc = rng.uniform(1.0, 1.35)
    a, b = r * math.sqrt(ecc), r / math.sqrt(ecc)
    theta = rng.uniform(0, math.pi)
    nr = r * rng.uniform(0.45, 0.65)
    off = rng.uniform(0, 0.25) * (r - nr)
    phi = rng.uniform(0, 2 * math.pi)
    return _Body(
        "ctc", cx, cy, a, b, theta,
        nx=cx + off * math.cos(phi), ny=cy + off * math.sin(phi),
        na=nr * rng.uniform(1.0, 1.15), nb=nr / rng.uniform(1.0, 1.15),
        ntheta=rng.uniform(0, math.pi),
        ck=_lognormal(rng, 700.0, 0.5, 150.0, 6000.0),
        dapi=_lognormal(rng, 650.0, 0.4, 200.0, 5000.0),
        cd45=0.0,
        her2=_her2_signal(rng, level),
        her2_level=level,
        membrane=rng.uniform(0.55, 0.85),
        cluster_id=cluster_id,
        wobble=(rng.uniform(0.0, 0.05), float(rng.integers(2, 4)), rng.uniform(0, 6.3)),
    )


def _leukocyte_body(rng, px: float) -> _Body:
    d_um = _lognormal(rng, 9.0, 0.1, 6.5, 13.0)
    r = d_um / 2 / px
    ecc = rng.uniform(1.0, 1.12)
    nr = r * rng.uniform(0.6, 0.8)
    off = rng.uniform(0, 0.3) * (r - nr)
    phi = rng.uniform(0, 2 * math.pi)
    return _Body(
        "leukocyte", 0.0, 0.0, r * math.sqrt(ecc), r / math.sqrt(ecc), rng.uniform(0, math.pi),
        nx=off * math.cos(phi), ny=off * math.sin(phi),
        na=nr * rng.uniform(1.0, 1.25), nb=nr / rng.uniform(1.0, 1.25),
        ntheta=rng.uniform(0, math.pi),
        ck=_lognormal(rng, 4.0, 0.5, 0.0, 20.0),
        dapi=_lognormal(rng, 600.0, 0.35, 200.0, 3000.0),
        cd45=_lognormal(rng, 550.0, 0.45, 150.0, 3000.0),
        her2=_lognormal(rng, 3.0, 0.4, 0.0, 15.0),
        membrane=0.5,
        wobble=(rng.uniform(0.0, 0.06), float(rng.integers(2, 5)), rng.uniform(0, 6.3)),
    )


def _decoy_body(rng, kind: str, px: float) -> _Body:
    if kind == "ck_cd45_double":
        body = _ctc_body(rng, int(rng.integers(0, 4)), px)
        body.kind = kind
        body.her2_level = -1
        body.cd45 = _lognormal(rng, 500.0, 0.4, 150.0, 2500.0)
        return body
    if kind == "nucleus_outside":
        body = _ctc_body(rng, int(rng.integers(0, 4)), px)
        body.kind = kind
        body.her2_level = -1
        nr = max(body.na, body.nb)
        # nucleus centre just outside the CK blob: less than half its area overlaps
        dist = max(body.a, body.b) + nr * rng.uniform(0.15, 0.6)
        phi = rng.uniform(0, 2 * math.pi)
        body.nx, body.ny = dist * math.cos(phi), dist * math.sin(phi)
        return body
    if kind == "ck_debris":
        d_um = _lognormal(rng, 7.0, 0.45, 3.0, 16.0)
        r = d_um / 2 / px
        ecc = rng.uniform(1.0, 2.2)
        return _Body(
            kind, 0.0, 0.0, r * math.sqrt(ecc), r / math.sqrt(ecc), rng.uniform(0, math.pi),
            ck=_lognormal(rng, 600.0, 0.6, 120.0, 5000.0),
            her2=_lognormal(rng, 15.0, 0.8, 0.0, 300.0),
            membrane=0.2,
            wobble=(rng.uniform(0.1, 0.3), float(rng.integers(2, 7)), rng.uniform(0, 6.3)),
        )
    if kind == "speck":
        d_um = rng.uniform(1.8, 3.6)
        r = d_um / 2 / px
        return _Body(
            kind, 0.0, 0.0, r, r * rng.uniform(0.8, 1.0), rng.uniform(0, math.pi),
            nx=0.0, ny=0.0, na=r * 0.8, nb=r * 0.7, ntheta=0.0,
            ck=_lognormal(rng, 1500.0, 0.5, 300.0, 8000.0),
            dapi=_lognormal(rng, 900.0, 0.5, 250.0, 6000.0),
            cd45=_lognormal(rng, 20.0, 0.8, 0.0, 400.0),
            her2=_lognormal(rng, 150.0, 0.7, 10.0, 1500.0),
            membrane=0.0,
        )
    if kind == "bare_nucleus":
        d_um = _lognormal(rng, 8.0, 0.15, 5.5, 12.0)
        r = d_um / 2 / px
        ecc = rng.uniform(1.0, 1.3)
        return _Body(
            kind, 0.0, 0.0, 0.0, 0.0, 0.0,
            nx=0.0, ny=0.0, na=r * math.sqrt(ecc), nb=r / math.sqrt(ecc),
            ntheta=rng.uniform(0, math.pi),
            dapi=_lognormal(rng, 700.0, 0.4, 200.0, 4000.0),
            her2=_lognormal(rng, 3.0, 0.5, 0.0, 20.0),
        )
    raise ValueError(f"unknown decoy kind {kind!r}")


def _translate(body: _Body, dx: float, dy: float) -> _Body:
    body.cx += dx
    body.cy += dy
    body.nx += dx
    body.ny += dy
    return body


def _rho(xx, yy, cx, cy, a, b, theta, wobble=None):
    """Normalised elliptical radius (1 on the boundary), optionally with a lobed wobble."""
    dx = xx - cx
    dy = yy - cy
    c, s = math.cos(theta), math.sin(theta)
    u = dx * c + dy * s
    v = dy * c - dx * s
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    if wobble is not None and wobble[0] > 0:
        amp, lobes, phase = wobble
        rho = rho / (1.0 + amp * np.cos(lobes * np.arctan2(v, u) + phase))
    return rho
