"""The confounder model.

Confounders (``confounders`` > 0; a rate multiplier, 0 = none, 1 = "messy", 2 = harder)
add what real cartridges have and the default model lacks (DESIGN.md §5), each drawn from
its own random streams (``[seed, 7]`` per cartridge, ``[seed, 7, frame]`` per frame) and
each named in the truth. Ranges are deliberately wider than realistic:

* kind ``ck_dim_leukocyte``: a leukocyte with nonspecific CK (45–500 units, median 120),
  diffuse or concentrated over the nucleus, and its CD45 (100–3000) strictly on the
  membrane: a ring peaking at the cell rim, 1–2 µm wide, partly outside the cell — so
  the DAPI ∪ CK event lies inside the CD45 ring. CK+ leukocytes are a classic source of
  false CTCs in CellSearch review (issue 12; ASC Cytopathology education, "CellSearch Cell
  Interpretation", cytopathology.org chapter 7.2, on nonspecific signals);
* kind ``cd45_dim_leukocyte``: the same with dim CD45 (40–150), half with nonspecific CK,
  half CK ≤ 20. Most EpCAM-enriched nuclei in patient cartridges are not identifiable
  as leukocytes with CellSearch's CD45-APC (de Wit et al., Cancers 2018, PMC6210778);
* context ``doublet`` / ``leukocyte_cluster`` on a CTC: 1–2 (doublet) or 3–6 (cluster)
  leukocytes touching or slightly overlapping its rim, their nuclei outside the CTC
  body; those leukocytes have context ``stuck`` (kind ``leukocyte`` or, 1 in 4,
  ``ck_dim_leukocyte``). CTC–leukocyte clusters are described in patient blood (Ju et al.,
  BMC Cancer 2023, meta-analysis of CTC–WBC clusters); CellSearch counts such a CTC;
* ``defocused`` frames (about 10 % × confounders, at least one per cartridge of ≥ 5
  frames): PSF sigma 2.5–4.5 px instead of 1.0–1.5 (commercial scanners leave ~10 % of
  images out of focus: Shen et al., Sci Rep 2023, PMC10082202; CellSearch review grades
  scan quality and "fuzzy" images, ASC chapter 7.2);
* ``dense`` frames (about 8 % × confounders, at least one per cartridge of ≥ 5 frames):
  300–700 leukocytes per full-size frame, touching or overlapping by up to 2 px, half of
  them in 1–3 patches (leukocyte carpets, carry-over: patient cartridges hold
  73,570 ± 74,948 nuclei, de Wit et al. 2018);
* kind ``autofluorescent``: round 3–15 µm particles bright in every channel (300–3000,
  correlated), about 0.3 per frame × confounders ("non-specific junk showing in each
  channel", ASC chapter 7.2);
* per sample: a background scale (0.5–2.5 × every channel's level) and a nonspecific
  FITC (HER2) level (lognormal, median 30, 0–200; 0 in 1 sample of 10) added uniformly
  over every cell body of every kind; both in ``cartridge.json``;
* normal leukocytes get a membrane-dominant CD45 (membrane fraction 0.6–1.0) and 15 %
  of them a dim CD45 of 100–200.

This module holds the confounder plan (per cartridge: sample draws, defocused and dense
frames, CTC contexts, counts per kind) and the confounder bodies and stains. The rest
acts where the phenomenon happens: a defocused frame's PSF and the sample's background
scale in :mod:`ctcimg.simulate.optics`; stuck leukocytes, the confounder kinds and the
dense frame's carpet are placed in :mod:`ctcimg.simulate.placement`; the nonspecific
FITC is drawn over every cell body in :mod:`ctcimg.simulate.render`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ctcimg.channels import FRAME_HEIGHT, FRAME_WIDTH
from ctcimg.simulate.bodies import _Body, _leukocyte_body, _lognormal, _rho, _translate
from ctcimg.simulate.plan import _plan
from ctcimg.simulate.spec import CartridgeSpec

#: Object kinds the confounder model adds (``confounders`` > 0; see the module docstring).
CONFOUNDER_KINDS: tuple[str, ...] = ("ck_dim_leukocyte", "cd45_dim_leukocyte", "autofluorescent")
#: Mean count per full-size frame of each confounder kind at ``confounders`` = 1.
CONFOUNDER_RATE: dict[str, float] = {
    "ck_dim_leukocyte": 0.5,
    "cd45_dim_leukocyte": 0.25,
    "autofluorescent": 0.3,
}
#: Values of the ``context`` truth column: CTC with 1–2 leukocytes stuck to it, CTC in a
#: cluster of 3–6 leukocytes, a leukocyte stuck to such a CTC.
CONTEXTS: tuple[str, ...] = ("doublet", "leukocyte_cluster", "stuck")


@dataclass(frozen=True)
class _ConfounderPlan:
    """Cartridge-level confounder draws (stream ``[seed, 7]``)."""

    background_scale: float
    her2_nonspecific: float
    defocused: frozenset[int]  # frame numbers
    dense: frozenset[int]
    contexts: tuple[tuple[str, ...], ...]  # per frame: context per CTC group ("" = none)
    counts: tuple[tuple[tuple[str, int], ...], ...]  # per frame: (confounder kind, count)


@functools.lru_cache(maxsize=8)
def _confounder_plan(spec: CartridgeSpec) -> _ConfounderPlan:
    rng = np.random.default_rng([spec.seed, 7])
    rate = spec.confounders
    n_frames = spec.n_frames
    background_scale = float(np.exp(rng.uniform(math.log(0.5), math.log(2.5))))
    unstained = rng.random() < 0.1
    her2_nonspecific = 0.0 if unstained else _lognormal(rng, 30.0, 0.8, 0.0, 200.0)

    def frames(probability: float) -> frozenset[int]:
        hit = rng.random(n_frames) < probability
        if n_frames >= 5 and not hit.any():
            hit[int(rng.integers(n_frames))] = True
        return frozenset(int(f) + 1 for f in np.flatnonzero(hit))

    defocused = frames(min(0.10 * rate, 0.6))
    dense = frames(min(0.08 * rate, 0.5))
    # CTC contexts: only single CTCs get stuck leukocytes; at least one of each when possible
    p_doublet, p_cluster = min(0.15 * rate, 0.5), min(0.06 * rate, 0.25)
    contexts = [
        ["" if len(g) > 1 else
         ("doublet" if u < p_doublet else "leukocyte_cluster" if u < p_doublet + p_cluster
          else "")
         for g, u in zip(groups, rng.random(len(groups)), strict=True)]
        for groups in _plan(spec).ctc_levels
    ]
    for wanted in ("doublet", "leukocyte_cluster"):
        free = [(f, i) for f, ctx in enumerate(contexts) for i, c in enumerate(ctx)
                if c == "" and len(_plan(spec).ctc_levels[f][i]) == 1]
        if free and not any(wanted in ctx for ctx in contexts):
            f, i = free[int(rng.integers(len(free)))]
            contexts[f][i] = wanted
    scale = rate * spec.frame_shape[0] * spec.frame_shape[1] / (FRAME_HEIGHT * FRAME_WIDTH)
    counts = np.zeros((n_frames, len(CONFOUNDER_RATE)), dtype=int)
    for k, mean in enumerate(CONFOUNDER_RATE.values()):
        counts[:, k] = rng.poisson(mean * scale, size=n_frames)
        if counts[:, k].sum() == 0:
            counts[int(rng.integers(n_frames)), k] += 1
    return _ConfounderPlan(
        background_scale=round(background_scale, 4),
        her2_nonspecific=round(her2_nonspecific, 2),
        defocused=defocused,
        dense=dense,
        contexts=tuple(tuple(ctx) for ctx in contexts),
        counts=tuple(
            tuple((kind, int(counts[f, k])) for k, kind in enumerate(CONFOUNDER_RATE))
            for f in range(n_frames)
        ),
    )


def sample_conditions(spec: CartridgeSpec) -> dict[str, float]:
    """The per-sample confounder draws of a spec: background scale and nonspecific FITC.

    Returns ``{"background_scale": …, "her2_nonspecific": …}`` (the latter in 12-bit units
    over every cell body), or an empty dict when ``spec.confounders`` is 0.
    """
    if spec.confounders <= 0:
        return {}
    conf = _confounder_plan(spec)
    return {"background_scale": conf.background_scale,
            "her2_nonspecific": conf.her2_nonspecific}


def _confound_leukocyte(rng, body: _Body, px: float, kind: str = "leukocyte") -> _Body:
    """Restain a leukocyte body for the confounder model (module docstring), in place.

    ``leukocyte``: CD45 membrane fraction 0.6–1.0, 15 % of them dim (100–200).
    ``ck_dim_leukocyte``: nonspecific CK 45–500 (median 120), diffuse or over the nucleus,
    CD45 only on the membrane, 100–3000 (median 400). ``cd45_dim_leukocyte``: CD45 only
    on the membrane, 40–150; half with nonspecific CK as above, half CK ≤ 20.
    """
    body.kind = kind
    body.cd45_rim_px = float(rng.uniform(1.0, 2.0)) / px  # ring FWHM 1-2 um
    if kind == "leukocyte":
        body.cd45_membrane = float(rng.uniform(0.6, 1.0))
        if rng.random() < 0.15:
            body.cd45 = float(rng.uniform(100.0, 200.0))
        return body
    body.cd45_membrane = 1.0
    if kind == "ck_dim_leukocyte" or rng.random() < 0.5:
        body.ck = _lognormal(rng, 120.0, 0.6, 45.0, 500.0)
        body.ck_over_nucleus = bool(rng.random() < 0.5)
    if kind == "ck_dim_leukocyte":
        body.cd45 = _lognormal(rng, 400.0, 0.7, 100.0, 3000.0)
    else:
        body.cd45 = float(np.exp(rng.uniform(math.log(40.0), math.log(150.0))))
    return body


def _confounder_body(rng, kind: str, px: float) -> _Body:
    if kind in ("ck_dim_leukocyte", "cd45_dim_leukocyte"):
        return _confound_leukocyte(rng, _leukocyte_body(rng, px), px, kind)
    if kind == "autofluorescent":
        r = rng.uniform(3.0, 15.0) / 2 / px
        ecc = rng.uniform(1.0, 1.3)
        a, b, theta = r * math.sqrt(ecc), r / math.sqrt(ecc), rng.uniform(0, math.pi)
        base = _lognormal(rng, 900.0, 0.6, 300.0, 3000.0)
        dapi, ck, cd45, her2 = np.clip(base * np.exp(0.2 * rng.standard_normal(4)), 300, 3000)
        return _Body(
            kind, 0.0, 0.0, a, b, theta, nx=0.0, ny=0.0, na=a, nb=b, ntheta=theta,
            dapi=float(dapi), ck=float(ck), cd45=float(cd45), her2=float(her2), membrane=0.0,
            cd45_membrane=0.0, ck_over_nucleus=True,
            wobble=(rng.uniform(0.0, 0.08), float(rng.integers(2, 5)), rng.uniform(0, 6.3)),
        )
    raise ValueError(f"unknown confounder kind {kind!r}")


def _stuck_leukocytes(rng, ctc: _Body, context: str, px: float) -> list[_Body]:
    """Leukocytes stuck to a single CTC: 1–2 (``doublet``) or 3–6 (``leukocyte_cluster``).

    Each overlaps the CTC's rim by 0–20 % of its radius, then moves out until its nucleus
    lies wholly outside the CTC body and it does not sit on a previous one.
    """
    n = int(rng.integers(1, 3)) if context == "doublet" else int(rng.integers(3, 7))
    phi0 = rng.uniform(0, 2 * math.pi)
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    stuck: list[_Body] = []
    for k in range(n):
        kind = "ck_dim_leukocyte" if rng.random() < 0.25 else "leukocyte"
        body = _confound_leukocyte(rng, _leukocyte_body(rng, px), px, kind)
        body.context = "stuck"
        phi = phi0 + 2 * math.pi * (k + rng.uniform(-0.25, 0.25)) / n
        c, s = math.cos(phi), math.sin(phi)
        rim = 1.0 / float(_rho(ctc.cx + c, ctc.cy + s, ctc.cx, ctc.cy, ctc.a, ctc.b, ctc.theta,
                               ctc.wobble))
        dist = rim + max(body.a, body.b) * (1.0 - rng.uniform(0.0, 0.2))
        ct, st = math.cos(body.ntheta), math.sin(body.ntheta)
        u, v = body.na * np.cos(angles), body.nb * np.sin(angles)
        for _ in range(80):
            x, y = ctc.cx + dist * c, ctc.cy + dist * s
            bx = x + body.nx + u * ct - v * st
            by = y + body.ny + u * st + v * ct
            inside = bool((_rho(bx, by, ctc.cx, ctc.cy, ctc.a, ctc.b, ctc.theta,
                                ctc.wobble) < 1.0).any())
            crowded = any(math.hypot(o.cx - x, o.cy - y) < 0.8 * (o.radius + body.radius)
                          for o in stuck)
            if not inside and not crowded:
                break
            dist += 0.5
        stuck.append(_translate(body, x, y))
    return stuck
