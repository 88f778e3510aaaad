"""Synthetic CellSearch cartridges with known truth: the demo, the tests and the benchmarks.

No real CellTracks Analyzer II export is public, so this module writes the same layout
(DESIGN.md §2) from a seeded model of the optics and the cells:

* optics on the 12-bit scale: smooth per-channel background with vignetting and a linear
  gradient (varying per frame), the bright cartridge edge in frames of the outer grid
  rows/columns, a Gaussian PSF, shot and read noise, 12-bit saturation;
* objects: CTCs (CK+ DAPI+ CD45−, 7–20 µm, HER2 membrane-dominant at four levels, some in
  touching clusters, some cut by the frame border), many leukocytes (DAPI+ CD45+), and
  decoys a naive pipeline would count (CK debris, CK+CD45+ doubles, sub-4 µm specks,
  bare nuclei, CK blobs with the nucleus beside them).

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

Truth columns of ``objects.csv`` (:data:`OBJECT_COLUMNS`): object_id, frame, x/y in px
and µm, kind (:data:`KINDS`), her2_level (CTCs; −1 otherwise), her2_signal (the CTC's
level signal: mean background-free HER2 over the cell, *without* the sample's
nonspecific FITC), diameter_um, cluster_id (touching CTC clusters), cut_by_border,
in_edge_zone, reviewer_assigned; with confounders > 0 also context (``doublet``,
``leukocyte_cluster``, ``stuck`` or empty), defocused and dense (0/1, per frame) and
her2_nonspecific (the nonspecific FITC over the object, units as her2_signal). Without
confounders every output is byte-identical to the simulator before they existed.

Ground truth goes to ``out_dir/truth/<id>/`` — never inside the cartridge folder.

Every frame is a pure function of ``(spec, frame_number)`` (:func:`render_frame`), so a
test can regenerate the exact 12-bit pixels the TIFF was written from.

Examples
--------
>>> from ctcimg.simulate import simulate_cartridge
>>> sim = simulate_cartridge("/tmp/sim", n_frames=4, n_ctc=6,
...                          frame_shape=(256, 320))  # doctest: +SKIP
>>> sim.path.name, sim.counts["ctc"]  # doctest: +SKIP
('SIM000000.1.1', 6)
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ctcimg.channels import (
    CELLSEARCH_PAGE_ORDER,
    CHANNELS,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    GRID_BY_FRAME_COUNT,
    HER2_BINS,
    MAX_12BIT,
    PIXEL_SIZE_UM,
    edge_sides,
    edge_sides_at,
)
from ctcimg.io.atomic import write_json_atomic, write_text_atomic
from ctcimg.io.celltracks_xp import BOTTOM_UP_FRAME_COUNTS, XP_PAGE_ORDER, bottom_up_position
from ctcimg.io.metadata import ReviewerEvent

#: Mean background-free HER2 (FITC) signal over the cell area, 12-bit units, per HER2 level.
#: Per-cell values are lognormal around these with sigma :data:`HER2_LOG_SPREAD`.
HER2_LEVEL_SIGNAL: dict[int, float] = {0: 8.0, 1: 50.0, 2: 140.0, 3: 380.0}
#: Lognormal sigma of a CTC's HER2 signal around its level mean.
HER2_LOG_SPREAD = 0.17

#: Object kinds the confounder model adds (``confounders`` > 0; see the module docstring).
CONFOUNDER_KINDS: tuple[str, ...] = ("ck_dim_leukocyte", "cd45_dim_leukocyte", "autofluorescent")
#: Object kinds written to ``objects.csv``: ctc, leukocyte, the decoys of :data:`DECOY_RATE`,
#: then :data:`CONFOUNDER_KINDS` (only with ``confounders`` > 0).
KINDS: tuple[str, ...] = (
    "ctc",
    "leukocyte",
    "ck_debris",
    "ck_cd45_double",
    "speck",
    "bare_nucleus",
    "nucleus_outside",
    *CONFOUNDER_KINDS,
)
#: Mean count per full-size frame of each confounder kind at ``confounders`` = 1.
CONFOUNDER_RATE: dict[str, float] = {
    "ck_dim_leukocyte": 0.5,
    "cd45_dim_leukocyte": 0.25,
    "autofluorescent": 0.3,
}
#: Values of the ``context`` truth column: CTC with 1–2 leukocytes stuck to it, CTC in a
#: cluster of 3–6 leukocytes, a leukocyte stuck to such a CTC.
CONTEXTS: tuple[str, ...] = ("doublet", "leukocyte_cluster", "stuck")
#: Decoy kinds and their mean count per frame.
DECOY_RATE: dict[str, float] = {
    "ck_debris": 0.5,
    "ck_cd45_double": 0.12,
    "speck": 0.4,
    "bare_nucleus": 0.8,
    "nucleus_outside": 0.15,
}

#: Named reviewer definitions: which candidates a simulated lab's operator confirms as CTCs
#: (``simulate_cartridge(reviewer=...)``). "default" lists the true CTCs and the CTC-like
#: decoys in the XML, with random reviewer errors (about 5 % of CTCs missed, 1 in 20 of the
#: decoys called a CTC). Every other definition is applied without random errors to every
#: candidate the instrument would present (:data:`PRESENTED_KINDS`), so agreement with it
#: measures how well a learned gate (ctcimg.learn) picks up the lab's rule; none of them
#: counts a cell touching the bright cartridge-edge band, where no cell can be judged
#: (ctcimg's hard rule cartridge_edge).
REVIEWERS: dict[str, str] = {
    "default": "CellSearch's definition, with random reviewer errors",
    "no_small": "true CTCs of at least 9 um diameter (the lab does not count smaller ones)",
    "partial_nucleus": "true CTCs, and CK+ cells whose nucleus lies only partly inside the "
                       "cytokeratin (nucleus_outside)",
    "ck_dim": "true CTCs whose cytokeratin is not dim: CK stain amplitude at least 400 on the "
              "12-bit scale (the dimmest ~13 % of simulated CTCs are not counted)",
}
#: Object kinds the instrument presents to the operator: CK+ objects with a nucleus.
PRESENTED_KINDS: tuple[str, ...] = ("ctc", "ck_cd45_double", "nucleus_outside", "speck")
_CK_DIM_AMPLITUDE = 400.0


def _reviewer_confirms(reviewer: str, obj: SimulatedObject) -> bool:
    """Whether a presented object is a CTC under the named (non-default) reviewer definition."""
    if obj.beyond_edge_band_px <= obj.diameter_um / 2 / PIXEL_SIZE_UM:  # touches the band
        return False
    if reviewer == "no_small":
        return obj.kind == "ctc" and obj.diameter_um >= 9.0
    if reviewer == "partial_nucleus":
        return obj.kind in ("ctc", "nucleus_outside")
    if reviewer == "ck_dim":
        return obj.kind == "ctc" and obj.ck_amplitude >= _CK_DIM_AMPLITUDE
    raise ValueError(f"unknown reviewer {reviewer!r}; known: {', '.join(REVIEWERS)}")


#: Background level per channel (canonical order DAPI, CK, CD45, HER2), 12-bit units.
_BG_LEVEL = np.array([45.0, 55.0, 38.0, 65.0], dtype=np.float32)
#: Bright cartridge edge amplitude per channel, 12-bit units.
_EDGE_LEVEL = np.array([900.0, 1400.0, 500.0, 1800.0], dtype=np.float32)
_GAIN = 0.6  # ADU per photo-electron: shot-noise variance = gain * signal
_READ_NOISE = 3.0  # ADU
_PAGE_INDEX = tuple(CHANNELS.index(name) for name in CELLSEARCH_PAGE_ORDER)
_XP_PAGE_INDEX = tuple(CHANNELS.index(name) for name in XP_PAGE_ORDER)
#: cartridge layouts the simulator writes: the CellTracks XML layout and CellTracks XP
LAYOUTS = ("cellsearch", "celltracks_xp")

#: Columns of ``objects.csv``; with ``confounders`` > 0 followed by :data:`CONFOUNDER_COLUMNS`.
OBJECT_COLUMNS: tuple[str, ...] = (
    "object_id", "frame", "x_px", "y_px", "x_um", "y_um", "kind", "her2_level",
    "her2_signal", "diameter_um", "cluster_id", "cut_by_border", "in_edge_zone",
    "reviewer_assigned",
)
#: Columns appended to ``objects.csv`` when ``confounders`` > 0.
CONFOUNDER_COLUMNS: tuple[str, ...] = ("context", "defocused", "dense", "her2_nonspecific")


@dataclass(frozen=True)
class CartridgeSpec:
    """Everything that determines a simulated cartridge; frames are pure functions of it.

    Attributes
    ----------
    cartridge_id
        CellSearch-style id, e.g. ``"SIM000000.1.1"``.
    n_frames, n_ctc
        Frames in the cartridge and true CTCs (exact).
    her2_mix
        Fractions of CTCs at HER2 levels 0, 1+, 2+, 3+ (quota, largest remainder).
    seed
        Seed of every random draw.
    frame_shape
        (height, width) in pixels.
    leukocytes_per_frame
        (low, high) inclusive range of leukocytes drawn per frame.
    decoys
        Multiplier of the decoy rates :data:`DECOY_RATE` (0 = no decoys, 1 = default).
    grid
        (rows, columns) of the serpentine frame grid.
    pixel_size_um
        Pixel size in µm.
    confounders
        Multiplier of the confounder model (0 = none, the default; 1 = "messy"; 2 = harder);
        see the module docstring.
    scan_from_bottom
        Frames run serpentine from the bottom row (a 140-frame CellTracks XP export,
        :func:`ctcimg.io.celltracks_xp.bottom_up_position`) instead of from the top.
    """

    cartridge_id: str
    n_frames: int = 175
    n_ctc: int = 20
    her2_mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    seed: int = 0
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH)
    leukocytes_per_frame: tuple[int, int] = (30, 80)
    decoys: float = 1.0
    grid: tuple[int, int] = (5, 35)
    pixel_size_um: float = PIXEL_SIZE_UM
    confounders: float = 0.0
    scan_from_bottom: bool = False


@dataclass(frozen=True)
class SimulatedCartridge:
    """What :func:`simulate_cartridge` wrote.

    Attributes
    ----------
    path
        The cartridge folder (``out_dir/<id>``).
    truth
        The truth folder (``out_dir/truth/<id>``).
    id
        Cartridge id.
    n_frames
        Frames written.
    counts
        Objects written per kind, plus ``her2_0`` … ``her2_3`` CTC counts per level.
    spec
        The spec; ``render_frame(spec, n)`` regenerates frame ``n`` exactly.
    sample
        With confounders: the per-sample draws ``background_scale`` and
        ``her2_nonspecific`` (12-bit units); empty without.
    """

    path: Path
    truth: Path
    id: str
    n_frames: int
    counts: dict[str, int] = field(default_factory=dict)
    spec: CartridgeSpec | None = None
    sample: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulatedObject:
    """One simulated object, as written to ``objects.csv`` (pixels frame-local).

    ``bbox`` and ``presented`` are not written: ``presented`` marks an object CellSearch
    shows its reviewer as a DAPI+ CK+ candidate (an event in the XML). The last four
    fields are the confounder columns (module docstring).
    """

    object_id: int
    frame: int
    x_px: float
    y_px: float
    kind: str
    her2_level: int
    her2_signal: float
    diameter_um: float
    cluster_id: int
    cut_by_border: bool
    in_edge_zone: bool
    reviewer_assigned: bool
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 frame-local, clipped to the frame
    presented: bool = False
    context: str = ""
    defocused: bool = False
    dense: bool = False
    her2_nonspecific: float = 0.0
    ck_amplitude: float = 0.0  # CK stain amplitude (12-bit); not in objects.csv
    beyond_edge_band_px: float = math.inf  # centre's distance past the bright edge band's
    # inner boundary (<= 0: on the band); not in objects.csv


@dataclass(frozen=True)
class _Plan:
    """Cartridge-level draws: which CTCs/decoys go to which frame, clusters, reviewer noise."""

    ctc_levels: tuple[tuple[tuple[int, ...], ...], ...]  # per frame: groups of HER2 levels
    cluster_ids: tuple[tuple[int, ...], ...]  # per frame: cluster id per group (-1 single)
    decoys: tuple[tuple[tuple[str, int], ...], ...]  # per frame: (kind, count)
    missed: frozenset[tuple[int, int]]  # (frame, ctc index in frame) the reviewer missed
    added: frozenset[tuple[int, int]]  # (frame, candidate-decoy index) reviewer called CTC


# --------------------------------------------------------------------------- grid, plan


def _opencv():
    """OpenCV, limited to one thread.

    OpenCV's worker threads keep spinning after a call; in a process that then runs
    ctcimg's numba kernels (tests, benchmarks that simulate and score) they stall every
    parallel region. The simulator blurs small patches, so one thread loses nothing.
    """
    import cv2

    cv2.setNumThreads(1)
    return cv2


def default_grid(n_frames: int) -> tuple[int, int]:
    """Grid (rows, columns) for a frame count: the CellSearch one when known, else exact.

    Unlisted counts get the most nearly square exact factorisation rows × cols = n
    (rows ≤ cols; a prime count gives 1 × n), so no grid cell lacks a frame.

    Examples
    --------
    >>> default_grid(175), default_grid(6), default_grid(7), default_grid(9)
    ((5, 35), (2, 3), (1, 7), (3, 3))
    """
    if n_frames in GRID_BY_FRAME_COUNT:
        return GRID_BY_FRAME_COUNT[n_frames]
    rows = max(r for r in range(1, math.isqrt(n_frames) + 1) if n_frames % r == 0)
    return rows, n_frames // rows


def _quota(n: int, fractions) -> list[int]:
    """Split ``n`` by ``fractions`` with the largest-remainder method (exact total)."""
    frac = np.asarray(fractions, dtype=float)
    frac = frac / frac.sum()
    raw = frac * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


@functools.lru_cache(maxsize=8)
def _plan(spec: CartridgeSpec) -> _Plan:
    rng = np.random.default_rng([spec.seed, 1])
    n_frames = spec.n_frames
    levels = np.repeat(np.arange(4), _quota(spec.n_ctc, spec.her2_mix))
    rng.shuffle(levels)
    # Groups: a few touching clusters of 2-4 CTCs, the rest single.
    groups: list[list[int]] = []
    n_clusters = spec.n_ctc // 12 if spec.n_ctc >= 5 else 0
    if spec.n_ctc >= 5:
        n_clusters = max(1, n_clusters)
    pos = 0
    for _ in range(n_clusters):
        size = int(min(rng.integers(2, 5), spec.n_ctc - pos))
        if size < 2:
            break
        groups.append(levels[pos:pos + size].tolist())
        pos += size
    groups.extend([[int(v)] for v in levels[pos:]])
    # Spread groups over frames; cap per frame by frame area so they can be placed.
    cap = ctc_capacity(1, spec.frame_shape, spec.pixel_size_um)
    per_frame: list[list[list[int]]] = [[] for _ in range(n_frames)]
    frame_ids: list[list[int]] = [[] for _ in range(n_frames)]
    load = np.zeros(n_frames, dtype=int)
    cluster_id = 0
    for group in groups:
        allowed = np.flatnonzero(load + len(group) <= cap)
        choices = allowed if allowed.size else np.arange(n_frames)
        f = int(rng.choice(choices))
        per_frame[f].append(group)
        if len(group) > 1:
            frame_ids[f].append(cluster_id)
            cluster_id += 1
        else:
            frame_ids[f].append(-1)
        load[f] += len(group)
    # Decoys per frame (Poisson), at least one of each kind in the cartridge.
    decoy_counts = np.zeros((n_frames, len(DECOY_RATE)), dtype=int)
    if spec.decoys > 0:
        scale = spec.decoys * spec.frame_shape[0] * spec.frame_shape[1] / (
            FRAME_HEIGHT * FRAME_WIDTH)
        for k, rate in enumerate(DECOY_RATE.values()):
            decoy_counts[:, k] = rng.poisson(rate * scale, size=n_frames)
            if decoy_counts[:, k].sum() == 0:
                decoy_counts[int(rng.integers(n_frames)), k] += 1
    decoys = tuple(
        tuple((kind, int(decoy_counts[f, k])) for k, kind in enumerate(DECOY_RATE))
        for f in range(n_frames)
    )
    # Reviewer noise: miss ~5 % of CTCs (at least one when there are 10+), and call
    # ~1 in 20 of the CTC-like decoys (doubles, nucleus beside) a CTC.
    ctc_slots = [(f + 1, i) for f in range(n_frames) for i in range(load[f])]
    n_missed = max(1 if spec.n_ctc >= 10 else 0, int(round(0.05 * spec.n_ctc)))
    missed = {ctc_slots[i] for i in rng.choice(len(ctc_slots), n_missed, replace=False)} \
        if n_missed else set()
    cand = [
        (f + 1, i)
        for f in range(n_frames)
        for i in range(decoy_counts[f, 1] + decoy_counts[f, 4])
    ]
    n_added = min(len(cand), max(1 if spec.n_ctc >= 10 else 0, int(round(0.05 * len(cand)))))
    added = {cand[i] for i in rng.choice(len(cand), n_added, replace=False)} if n_added else set()
    return _Plan(
        ctc_levels=tuple(tuple(tuple(g) for g in per_frame[f]) for f in range(n_frames)),
        cluster_ids=tuple(tuple(ids) for ids in frame_ids),
        decoys=decoys,
        missed=frozenset(missed),
        added=frozenset(added),
    )


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


# --------------------------------------------------------------------------- objects


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

    Returns (y0, x0, patch HxWx4, cell ∪ nucleus mask, hard cell mask, mean nonspecific
    HER2 over the cell); ``her2_nonspecific`` is added uniformly over the cell body after
    the object's own HER2 is scaled to its signal.
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
    return y0, x0, patch, hard | nuc_hard, hard, nonspecific_mean


# --------------------------------------------------------------------------- frame


def _place(rng, placed, radius, shape, edge_keepout, margin=3.0, cut=False, tries=200,
           near=None):
    """Random centre whose circle clears every placed circle; None when the frame is full.

    ``near = (x, y, spread)`` draws the centre around (x, y) (Gaussian, sd ``spread`` px)
    instead of uniformly over the frame.
    """
    h, w = shape
    top, bottom, left, right = edge_keepout
    arr = np.asarray(placed, dtype=float).reshape(-1, 3)
    for _ in range(tries):
        if cut:
            side = int(rng.integers(4))
            t = rng.uniform(-0.45, 0.45) * radius
            if side == 0:
                x, y = rng.uniform(radius, w - radius), t
            elif side == 1:
                x, y = rng.uniform(radius, w - radius), h - 1 - t
            elif side == 2:
                x, y = t, rng.uniform(radius, h - radius)
            else:
                x, y = w - 1 - t, rng.uniform(radius, h - radius)
        elif near is not None:
            x = rng.normal(near[0], near[2])
            y = rng.normal(near[1], near[2])
        else:
            x = rng.uniform(0, w)
            y = rng.uniform(0, h)
        if y < top or y > h - 1 - bottom or x < left or x > w - 1 - right:
            continue
        if arr.size:
            d = np.hypot(arr[:, 0] - x, arr[:, 1] - y) - arr[:, 2] - radius - margin
            if d.min() < 0:
                continue
        return x, y
    return None


def _put(rng, body: _Body, placed, shape, edge_keepout, tries=200) -> bool:
    """Move ``body`` to a free random spot (:func:`_place`) and record its circle in
    ``placed``; False (body unmoved) when the frame has no room for it."""
    where = _place(rng, placed, body.radius, shape, edge_keepout, tries=tries)
    if where is None:
        return False
    _translate(body, *where)
    placed.append((body.cx, body.cy, body.radius))
    return True


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


def render_frame(
    spec: CartridgeSpec, frame_number: int
) -> tuple[np.ndarray, list[SimulatedObject]]:
    """Render one frame exactly as :func:`simulate_cartridge` writes it.

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
    plan = _plan(spec)
    rng = np.random.default_rng([spec.seed, 3, frame_number])
    # confounders draw from their own streams, so without them nothing below changes
    conf = _confounder_plan(spec) if spec.confounders > 0 else None
    crng = np.random.default_rng([spec.seed, 7, frame_number]) if conf else None
    defocused = conf is not None and frame_number in conf.defocused
    dense = conf is not None and frame_number in conf.dense
    h, w = spec.frame_shape
    px = spec.pixel_size_um
    rows, cols = spec.grid
    if spec.scan_from_bottom:
        sides = edge_sides_at(*bottom_up_position(frame_number, rows, cols), rows, cols)
    else:
        sides = edge_sides(frame_number, rows, cols)
    # band width 50-150 px, at most a fifth of the frame side it lies across
    widths = {
        s: float(rng.uniform(50, 150)) * min(1.0, 0.2 * (h if s in ("top", "bottom") else w) / 150)
        for s in sides
    }
    keepout = tuple(0.5 * widths.get(s, 0.0) for s in ("top", "bottom", "left", "right"))
    psf_sigma = float(rng.uniform(1.0, 1.5))
    if defocused:
        psf_sigma = float(crng.uniform(2.5, 4.5))

    frame = _background(rng, (h, w))
    if conf is not None:
        frame *= np.float32(conf.background_scale)
    if sides:
        _edge_band(rng, frame, sides, widths)

    f_idx = frame_number - 1
    bodies: list[_Body] = []
    assigned: list[bool] = []  # reviewer's call per body
    own_stream: list[bool] = []  # body drawn by the confounder model: textured from crng
    placed: list[tuple[float, float, float]] = []
    contexts = conf.contexts[f_idx] if conf else ("",) * len(plan.ctc_levels[f_idx])
    # CTC groups first (they must all fit), then decoys, then leukocytes.
    ctc_index = 0
    for group, cid, context in zip(plan.ctc_levels[f_idx], plan.cluster_ids[f_idx], contexts,
                                   strict=True):
        members = [_ctc_body(rng, lvl, px, cluster_id=cid) for lvl in group]
        if len(members) > 1:  # touching cluster: each next cell touches a previous one
            for i in range(1, len(members)):
                for _ in range(100):
                    j = int(rng.integers(i))
                    phi = rng.uniform(0, 2 * math.pi)
                    dist = members[j].radius + members[i].radius - 1.5
                    x = members[j].cx + dist * math.cos(phi)
                    y = members[j].cy + dist * math.sin(phi)
                    ok = all(
                        math.hypot(m.cx - x, m.cy - y) >= m.radius + members[i].radius - 2.0
                        for m in members[:i]
                    )
                    if ok:
                        break
                _translate(members[i], x, y)
        stuck = []
        if context:
            members[0].context = context
            stuck = _stuck_leukocytes(crng, members[0], context, px)
        gx = sum(m.cx for m in members) / len(members)
        gy = sum(m.cy for m in members) / len(members)
        grad = max(math.hypot(m.cx - gx, m.cy - gy) + m.radius for m in members + stuck)
        cut = len(members) == 1 and rng.random() < 0.08 and not context
        where = _place(rng, placed, grad, (h, w), keepout, cut=cut, tries=500)
        if where is None:
            where = _place(rng, placed, grad, (h, w), keepout, margin=-grad, tries=500)
        if where is None:
            raise ValueError(
                f"frame {frame_number}: no room for {len(members)} more CTC(s) in a "
                f"{w} x {h} px frame; use more frames or larger frames"
            )
        for m in members + stuck:
            _translate(m, where[0] - gx, where[1] - gy)
        placed.append((where[0], where[1], grad))
        bodies.extend(members)
        for _ in members:
            assigned.append((frame_number, ctc_index) not in plan.missed)
            ctc_index += 1
        own_stream.extend([False] * len(members))
        bodies.extend(stuck)  # the reviewer never assigns a stuck leukocyte
        assigned.extend([False] * len(stuck))
        own_stream.extend([True] * len(stuck))
    n_ctc_groups = len(placed)
    decoy_index = 0
    for kind, count in plan.decoys[f_idx]:
        for _ in range(count):
            body = _decoy_body(rng, kind, px)
            if not _put(rng, body, placed, (h, w), keepout):
                continue
            bodies.append(body)
            own_stream.append(False)
            if kind in ("ck_cd45_double", "nucleus_outside"):
                assigned.append((frame_number, decoy_index) in plan.added)
                decoy_index += 1
            else:
                assigned.append(False)
    for kind, count in conf.counts[f_idx] if conf else ():
        for _ in range(count):
            body = _confounder_body(crng, kind, px)
            if not _put(crng, body, placed, (h, w), keepout):
                continue
            bodies.append(body)
            assigned.append(False)
            own_stream.append(True)
    lo, hi = spec.leukocytes_per_frame
    scale = h * w / (FRAME_HEIGHT * FRAME_WIDTH)
    n_leuko = int(round(rng.integers(lo, hi + 1) * min(1.0, scale)))
    for _ in range(n_leuko):
        body = _leukocyte_body(rng, px)
        if not _put(rng, body, placed, (h, w), keepout, tries=30):
            continue
        if conf is not None:
            _confound_leukocyte(crng, body, px)  # stains only: the placed circle holds
        bodies.append(body)
        assigned.append(False)
        own_stream.append(False)
    if dense:
        # leukocyte carpet: touching or overlapping each other by up to 2 px, half in
        # patches; CTC groups keep a 1 px gap so no untagged doublet appears
        obstacles = [(x, y, r + 3.0) for x, y, r in placed[:n_ctc_groups]] + placed[n_ctc_groups:]
        patches = [(crng.uniform(0, w), crng.uniform(0, h), crng.uniform(40, 150))
                   for _ in range(int(crng.integers(1, 4)))]
        target = int(round(crng.integers(300, 701) * min(1.0, scale)))
        for _ in range(max(0, target - sum(b.kind == "leukocyte" for b in bodies))):
            body = _confound_leukocyte(crng, _leukocyte_body(crng, px), px)
            near = patches[int(crng.integers(len(patches)))] if crng.random() < 0.5 else None
            where = _place(crng, obstacles, body.radius, (h, w), keepout,
                           margin=float(crng.uniform(-2.0, 0.0)), tries=30, near=near)
            if where is None:
                continue
            _translate(body, *where)
            obstacles.append((body.cx, body.cy, body.radius))
            bodies.append(body)
            assigned.append(False)
            own_stream.append(True)

    objects: list[SimulatedObject] = []
    her2_nonspecific = conf.her2_nonspecific if conf else 0.0
    for index, body in enumerate(bodies):
        y0, x0, patch, union, hard, nonspecific = _render_body(
            body, crng if own_stream[index] else rng, psf_sigma, her2_nonspecific)
        ph, pw = patch.shape[:2]
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + ph, h), min(x0 + pw, w)
        if ya < yb and xa < xb:
            frame[:, ya:yb, xa:xb] += patch[ya - y0:yb - y0, xa - x0:xb - x0].transpose(2, 0, 1)
        ys, xs = np.nonzero(union)
        cy = float(ys.mean()) + y0
        cx = float(xs.mean()) + x0
        by0, by1 = int(ys.min()) + y0, int(ys.max()) + y0
        bx0, bx1 = int(xs.min()) + x0, int(xs.max()) + x0
        cut = by0 < 0 or bx0 < 0 or by1 > h - 1 or bx1 > w - 1
        # edge zone: the band plus its glow (twice the band width from the outer side)
        in_edge = (
            ("top" in widths and by0 < 2 * widths["top"])
            or ("bottom" in widths and by1 > h - 1 - 2 * widths["bottom"])
            or ("left" in widths and bx0 < 2 * widths["left"])
            or ("right" in widths and bx1 > w - 1 - 2 * widths["right"])
        )
        if body.kind == "bare_nucleus":
            diameter = 2 * math.sqrt(body.na * body.nb) * px
        else:
            diameter = 2 * math.sqrt(body.a * body.b) * px
        her2_mean = float(patch[..., 3][hard].mean()) - nonspecific if hard.any() else 0.0
        # what CellSearch shows its reviewer: DAPI+ CK+ candidates (a stuck leukocyte
        # shows within its CTC's event, a CK-dim CD45-dim leukocyte only with CK)
        presented = assigned[index] or body.kind in (
            "ctc", "ck_cd45_double", "nucleus_outside", "ck_dim_leukocyte", "autofluorescent",
        ) or (body.kind == "cd45_dim_leukocyte" and body.ck > 20)
        objects.append(SimulatedObject(
            object_id=frame_number * 10000 + index,
            frame=frame_number,
            x_px=round(cx, 2),
            y_px=round(cy, 2),
            kind=body.kind,
            her2_level=body.her2_level,
            her2_signal=round(her2_mean, 2),
            diameter_um=round(diameter, 2),
            cluster_id=body.cluster_id,
            cut_by_border=bool(cut),
            in_edge_zone=bool(in_edge),
            reviewer_assigned=bool(assigned[index]),
            bbox=(max(bx0, 0), max(by0, 0), min(bx1, w - 1), min(by1, h - 1)),
            presented=bool(presented and body.context != "stuck"),
            context=body.context,
            defocused=defocused,
            dense=dense,
            her2_nonspecific=round(nonspecific, 2),
            ck_amplitude=body.ck,
            beyond_edge_band_px=min(
                (position - widths[side] for side, position in (
                    ("top", cy), ("bottom", h - 1 - cy), ("left", cx), ("right", w - 1 - cx))
                 if side in widths), default=math.inf),
        ))

    # Shot + read noise (Gaussian approximation), then 12-bit quantisation and saturation.
    bank = _noise_bank(spec.seed, (h, w))
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
    return frame.astype(np.uint16), objects


# --------------------------------------------------------------------------- writing


def _make_spec(
    cartridge_id, n_frames, n_ctc, her2_mix, seed, frame_shape, leukocytes_per_frame, decoys,
    confounders=0.0, layout="cellsearch",
) -> CartridgeSpec:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be at least 1, not {n_frames}")
    if int(n_ctc) < 0:
        raise ValueError(f"n_ctc must be non-negative, not {n_ctc}")
    if int(n_ctc) > ctc_capacity(int(n_frames), tuple(frame_shape)):
        raise ValueError(
            f"n_ctc={n_ctc} does not fit in {n_frames} frames of {frame_shape} px "
            f"(at most {ctc_capacity(int(n_frames), tuple(frame_shape))})"
        )
    mix = tuple(float(v) for v in her2_mix)
    if len(mix) != 4 or any(v < 0 for v in mix) or sum(mix) <= 0:
        raise ValueError(f"her2_mix must be 4 non-negative fractions, not {her2_mix}")
    mix = tuple(v / sum(mix) for v in mix)
    fh, fw = (int(v) for v in frame_shape)
    if fh < 64 or fw < 64:
        raise ValueError(f"frame_shape must be at least 64 x 64 px, not {frame_shape}")
    if float(decoys) < 0:
        raise ValueError(f"decoys must be a bool or a non-negative rate multiplier, not {decoys}")
    if not 0 <= float(confounders) < math.inf:
        raise ValueError(f"confounders must be a non-negative rate multiplier, not {confounders}")
    if isinstance(leukocytes_per_frame, (int, np.integer)):
        leuko = (int(leukocytes_per_frame), int(leukocytes_per_frame))
    else:
        leuko = tuple(int(v) for v in leukocytes_per_frame)
        if len(leuko) != 2 or leuko[0] > leuko[1] or leuko[0] < 0:
            raise ValueError(f"leukocytes_per_frame must be an int or (low, high), "
                             f"not {leukocytes_per_frame}")
    if cartridge_id is None:
        cartridge_id = f"SIM{int(seed):06d}.1.1"
    if not cartridge_id or any(ch in cartridge_id for ch in "/\\") or cartridge_id[0] == ".":
        raise ValueError(f"invalid cartridge id {cartridge_id!r}")
    return CartridgeSpec(
        cartridge_id=str(cartridge_id), n_frames=int(n_frames), n_ctc=int(n_ctc),
        her2_mix=mix, seed=int(seed), frame_shape=(fh, fw), leukocytes_per_frame=leuko,
        decoys=float(decoys), grid=default_grid(int(n_frames)), confounders=float(confounders),
        scan_from_bottom=layout == "celltracks_xp" and int(n_frames) in BOTTOM_UP_FRAME_COUNTS,
    )


def cartridge_spec(
    cartridge_id: str | None = None,
    *,
    n_frames: int = 175,
    n_ctc: int = 20,
    her2_mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    seed: int = 0,
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    leukocytes_per_frame: int | tuple[int, int] = (30, 80),
    decoys: bool | float = True,
    confounders: float = 0.0,
    layout: str = "cellsearch",
) -> CartridgeSpec:
    """The validated spec :func:`simulate_cartridge` would use for these arguments.

    Use with :func:`render_frame` to regenerate a written frame without the files, e.g.
    ``render_frame(cartridge_spec(seed=1, n_frames=6), 3)``.
    """
    return _make_spec(cartridge_id, n_frames, n_ctc, her2_mix, seed, frame_shape,
                      leukocytes_per_frame, decoys, confounders, layout)


def simulate_cartridge(
    out_dir: str | os.PathLike,
    cartridge_id: str | None = None,
    *,
    n_frames: int = 175,
    n_ctc: int = 20,
    her2_mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    seed: int = 0,
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    bits: int = 16,
    encoding: str = "stretch",
    compression: str | None = None,
    leukocytes_per_frame: int | tuple[int, int] = (30, 80),
    decoys: bool | float = True,
    preview: bool = False,
    confounders: float = 0.0,
    reviewer: str = "default",
    layout: str = "cellsearch",
) -> SimulatedCartridge:
    """Write one synthetic CellSearch cartridge and its ground truth.

    Writes ``out_dir/<id>/<id before first dot>.xml``, one 4-page TIFF per frame in
    ``out_dir/<id>/processed/<id>_<NNN>.tif`` (pages DAPI, FITC/HER2, PE/CK, APC/CD45),
    and the truth in ``out_dir/truth/<id>/`` (``objects.csv``, ``cartridge.json`` and,
    with ``preview``, ``preview_frame.png`` and ``preview_cells.png``). With
    ``layout="celltracks_xp"`` the cartridge is a CellTracks XP export instead: the six
    ``.dlm`` files in ``out_dir/<id>/`` and the TIFFs in ``out_dir/<id>/images/`` with pages
    FITC, APC, PE, DAPI (:mod:`ctcimg.io.celltracks_xp`); pixels and truth are the same.

    Parameters
    ----------
    out_dir
        Folder receiving the cartridge folder and ``truth/``.
    cartridge_id
        CellSearch-style id; default ``SIM<seed:06d>.1.1``.
    n_frames
        Frames (175 = the 5 × 35 CellSearch grid; other counts get a near-square grid).
    n_ctc
        Exact number of true CTCs.
    her2_mix
        Fractions of CTCs at HER2 0, 1+, 2+, 3+ (normalised; split by largest remainder).
    seed
        Random seed; the same seed gives byte-identical files.
    frame_shape
        (height, width) of a frame in pixels.
    bits, encoding, compression
        Passed to :func:`ctcimg.io.tiff.write_celltracks_frame`.
    leukocytes_per_frame
        Leukocytes per full-size frame, an int or an inclusive (low, high) range;
        scaled down for smaller frames.
    decoys
        Add CK debris, CK+CD45+ doubles, specks, bare nuclei and nucleus-beside blobs
        (``True``); a number multiplies their rates :data:`DECOY_RATE`; ``False`` = none.
    preview
        Also write preview PNGs to the truth folder.
    confounders
        Rate multiplier of the confounder model (module docstring): 0 = none (the default,
        byte-identical to the simulator without it), 1 = "messy", 2 = harder.
    reviewer
        The lab's reviewer definition for the XML's events (a key of :data:`REVIEWERS`);
        other than "default", the XML lists every presented candidate
        (:data:`PRESENTED_KINDS`) with ``assigned`` by that definition.
    layout
        ``"cellsearch"`` (the CellTracks XML layout, default) or ``"celltracks_xp"``. An XP
        export records no grid: its reader takes it from the frame count, so a count outside
        :data:`ctcimg.channels.GRID_BY_FRAME_COUNT` is read with an unknown grid, and 140
        frames run serpentine from the bottom row (the edge bands are placed accordingly).

    Returns
    -------
    SimulatedCartridge
    """
    from ctcimg.io import celltracks_xp
    from ctcimg.io.celltracks import write_celltracks_metadata
    from ctcimg.io.tiff import write_celltracks_frame

    spec = _make_spec(cartridge_id, n_frames, n_ctc, her2_mix, seed, frame_shape,
                      leukocytes_per_frame, decoys, confounders, layout)
    if reviewer not in REVIEWERS:
        raise ValueError(f"unknown reviewer {reviewer!r}; known: {', '.join(REVIEWERS)}")
    xp = layout == "celltracks_xp"
    out_dir = Path(out_dir)
    cart = out_dir / spec.cartridge_id
    truth = out_dir / "truth" / spec.cartridge_id
    images = cart / (celltracks_xp.IMAGE_FOLDER if xp else "processed")
    images.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    plan = _plan(spec)
    # with confounders, the frame with the most CTCs among leukocytes, else the most CTCs
    contexts = _confounder_plan(spec).contexts if spec.confounders > 0 else None
    preview_frame = max(range(1, spec.n_frames + 1), key=lambda f: (
        sum(bool(c) for c in contexts[f - 1]) if contexts else 0,
        sum(len(g) for g in plan.ctc_levels[f - 1]), -f))
    crops: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: [], 3: []}
    frame_pixels = frame_objects = None
    all_objects: list[SimulatedObject] = []
    digits = max(3, len(str(spec.n_frames)))
    for f in range(1, spec.n_frames + 1):
        pixels, objects = render_frame(spec, f)
        write_celltracks_frame(
            images / f"{spec.cartridge_id}_{f:0{digits}d}.tif",
            pixels[list(_XP_PAGE_INDEX if xp else _PAGE_INDEX)], bits=bits, encoding=encoding,
            compression=compression,
        )
        all_objects.extend(objects)
        if preview:
            _collect_crops(pixels, objects, crops)
            if f == preview_frame:
                frame_pixels, frame_objects = pixels, objects
    if reviewer == "default":
        presented = [o for o in all_objects if o.presented]
    else:
        all_objects = [replace(o, reviewer_assigned=_reviewer_confirms(reviewer, o))
                       for o in all_objects]
        presented = [o for o in all_objects if o.presented
                     or (o.kind in PRESENTED_KINDS and o.context != "stuck")]
    counts = _write_truth(truth, spec, all_objects, bits, encoding, compression, reviewer)
    events = [ReviewerEvent(i + 1, o.frame, (o.bbox[0] + o.bbox[2]) / 2,
                            (o.bbox[1] + o.bbox[3]) / 2, o.bbox, o.reviewer_assigned, 1)
              for i, o in enumerate(presented)]
    if xp:
        celltracks_xp.write_xp_metadata(cart, spec.cartridge_id, spec.n_frames, events)
    else:
        write_celltracks_metadata(cart, spec.n_frames, spec.grid, spec.frame_shape,
                                  spec.pixel_size_um, events)
    if preview and frame_pixels is not None:
        _write_previews(truth, spec, preview_frame, frame_pixels, frame_objects, crops)
    return SimulatedCartridge(cart, truth, spec.cartridge_id, spec.n_frames, counts, spec,
                              sample_conditions(spec))


def _write_truth(truth: Path, spec, objects, bits, encoding, compression,
                 reviewer: str = "default") -> dict[str, int]:
    px = spec.pixel_size_um
    confounded = spec.confounders > 0
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(OBJECT_COLUMNS + (CONFOUNDER_COLUMNS if confounded else ()))
    for o in objects:
        row = [
            o.object_id, o.frame, f"{o.x_px:.2f}", f"{o.y_px:.2f}",
            f"{o.x_px * px:.2f}", f"{o.y_px * px:.2f}", o.kind, o.her2_level,
            f"{o.her2_signal:.2f}", f"{o.diameter_um:.2f}", o.cluster_id,
            int(o.cut_by_border), int(o.in_edge_zone), int(o.reviewer_assigned),
        ]
        if confounded:
            row += [o.context, int(o.defocused), int(o.dense), f"{o.her2_nonspecific:.2f}"]
        writer.writerow(row)
    write_text_atomic(truth / "objects.csv", table.getvalue())
    kinds = KINDS if confounded else tuple(k for k in KINDS if k not in CONFOUNDER_KINDS)
    counts = {kind: sum(o.kind == kind for o in objects) for kind in kinds}
    for level in range(4):
        counts[f"her2_{level}"] = sum(o.kind == "ctc" and o.her2_level == level for o in objects)
    if confounded:
        for context in CONTEXTS:
            counts[context] = sum(o.context == context for o in objects)
    missed = [o for o in objects if o.kind == "ctc" and not o.reviewer_assigned]
    added = [o for o in objects if o.kind != "ctc" and o.reviewer_assigned]
    parameters = asdict(spec)
    if not confounded:  # the file stays as it was before the confounder model
        del parameters["confounders"]
    if not spec.scan_from_bottom:  # only a 140-frame CellTracks XP cartridge records it
        del parameters["scan_from_bottom"]
    meta = {
        "cartridge_id": spec.cartridge_id,
        "seed": spec.seed,
        "parameters": {
            **{k: v for k, v in parameters.items() if k not in ("cartridge_id", "seed")},
            "bits": bits, "encoding": encoding, "compression": compression,
            "her2_level_signal": HER2_LEVEL_SIGNAL, "her2_log_spread": HER2_LOG_SPREAD,
        },
        "counts": counts,
        "reviewer_assigned_ctc": sum(o.reviewer_assigned for o in objects),
        "reviewer_noise": [
            {"object_id": o.object_id, "frame": o.frame, "kind": o.kind,
             "error": "missed_ctc" if o.kind == "ctc" else "false_ctc"}
            for o in (*missed, *added)
        ] if reviewer == "default" else [],
    }
    if confounded:
        conf = _confounder_plan(spec)
        meta.update(sample_conditions(spec))
        meta["defocused_frames"] = sorted(conf.defocused)
        meta["dense_frames"] = sorted(conf.dense)
    if reviewer != "default":  # the default's record stays as it was
        meta["reviewer"] = {"name": reviewer, "definition": REVIEWERS[reviewer],
                            "presented_kinds": list(PRESENTED_KINDS)}
    write_json_atomic(truth / "cartridge.json", meta)
    return counts



# --------------------------------------------------------------------------- cohort


@dataclass(frozen=True)
class SimulatedCohort:
    """What :func:`simulate_cohort` wrote.

    Attributes
    ----------
    path
        The output folder (one cartridge folder per patient, plus ``truth/``).
    patients_csv
        ``truth/patients.csv``: cartridge_id, seed, ctc_count, her2_0, her2_1+, her2_2+, her2_3+
        and, with confounders, background_scale and her2_nonspecific.
    cartridges
        One :class:`SimulatedCartridge` per patient, in patient order.
    """

    path: Path
    patients_csv: Path
    cartridges: tuple[SimulatedCartridge, ...]


def ctc_capacity(n_frames: int, frame_shape: tuple[int, int],
                 pixel_size_um: float = PIXEL_SIZE_UM) -> int:
    """Most CTCs the simulator places in a cartridge (one per ~2500 µm² of frame area)."""
    area_um2 = frame_shape[0] * frame_shape[1] * pixel_size_um**2
    return n_frames * max(1, int(area_um2 / 2500))


def draw_patient(rng: np.random.Generator, mean_ctc: float = 40.0, zero_fraction: float = 0.4,
                 dispersion: float = 0.5) -> tuple[int, tuple[float, float, float, float]]:
    """Draw one patient's true CTC count and HER2 mix.

    The count is zero-inflated negative binomial (``zero_fraction`` structural zeros, then
    NB with mean ``mean_ctc`` and shape ``dispersion``: many small counts, a few in the
    hundreds); the mix is Dirichlet(0.35, …) so many patients are mostly one level.
    """
    if rng.random() < zero_fraction:
        count = 0
        rng.negative_binomial(1, 0.5)  # keep the stream aligned whatever the branch
    else:
        p = dispersion / (dispersion + mean_ctc)
        count = int(rng.negative_binomial(dispersion, p))
    mix = rng.dirichlet([0.35, 0.35, 0.35, 0.35])
    return count, tuple(float(v) for v in mix)


def simulate_cohort(
    out_dir: str | os.PathLike,
    n_patients: int,
    *,
    seed: int = 0,
    n_frames: int = 175,
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    mean_ctc: float = 40.0,
    zero_fraction: float = 0.4,
    **kw,
) -> SimulatedCohort:
    """Write a cohort of synthetic patients with heavy-tailed CTC counts and varied HER2 mixes.

    Parameters
    ----------
    out_dir
        Output folder: ``<id>/`` per patient, ``truth/<id>/`` and ``truth/patients.csv``.
    n_patients
        Number of patients (cartridges).
    seed
        Cohort seed; patient *i* gets a seed derived from ``(seed, i)``.
    n_frames, frame_shape
        Per cartridge, as in :func:`simulate_cartridge`.
    mean_ctc, zero_fraction
        Count distribution, see :func:`draw_patient`. Counts are capped at
        :func:`ctc_capacity` (what fits in the frames).
    **kw
        Passed on to :func:`simulate_cartridge` (``bits``, ``compression``, ``preview``,
        ``confounders`` …).

    Returns
    -------
    SimulatedCohort
    """
    if int(n_patients) < 1:
        raise ValueError(f"n_patients must be at least 1, not {n_patients}")
    for key in ("cartridge_id", "n_ctc", "her2_mix", "seed"):
        if key in kw:
            raise TypeError(f"simulate_cohort() sets {key} per patient; do not pass it")
    out_dir = Path(out_dir)
    capacity = ctc_capacity(n_frames, frame_shape)
    cartridges = []
    rows = []
    for i in range(int(n_patients)):
        rng = np.random.default_rng([int(seed), 4, i])
        patient_seed = int(rng.integers(0, 2**31 - 1))
        count, mix = draw_patient(rng, mean_ctc, zero_fraction)
        count = min(count, capacity)
        cid = f"SIM{int(seed):06d}P{i + 1:04d}.1.1"
        sim = simulate_cartridge(
            out_dir, cid, n_frames=n_frames, n_ctc=count, her2_mix=mix, seed=patient_seed,
            frame_shape=frame_shape, **kw,
        )
        cartridges.append(sim)
        c = sim.counts
        rows.append([cid, patient_seed, c["ctc"], *(c[f"her2_{level}"] for level in range(4)),
                     *sim.sample.values()])
    table = out_dir / "truth" / "patients.csv"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["cartridge_id", "seed", "ctc_count", *(f"her2_{b}" for b in HER2_BINS),
                     *cartridges[0].sample])
    writer.writerows(rows)
    write_text_atomic(table, text.getvalue())
    _write_clinical(out_dir, table, seed)
    return SimulatedCohort(out_dir, table, tuple(cartridges))


def _write_clinical(out_dir: Path, patients_csv: Path, seed: int) -> None:
    """``OUT/clinical.csv``: outcome and covariates whose PFS depends on the true call."""
    import pandas as pd

    from ctcimg.rules import RULES
    from ctcimg.stats.simulate_clinical import simulate_clinical

    patients = pd.read_csv(patients_csv)
    bins = [f"her2_{b}" for b in HER2_BINS]
    patients["call_liu"] = [
        RULES["liu"].call(dict(zip(HER2_BINS, row, strict=True)))
        for row in patients[bins].itertuples(index=False)
    ]
    clinical = simulate_clinical(patients, seed)
    write_text_atomic(out_dir / "clinical.csv", clinical.to_csv(index=False))


# --------------------------------------------------------------------------- previews

_CROP = 48
_CROPS_PER_LEVEL = 6
#: display windows (12-bit, above the crop's background) per canonical channel
_DISPLAY_MAX = np.array([1200.0, 1500.0, 1200.0, 600.0], dtype=np.float32)


def _collect_crops(pixels, objects, crops) -> None:
    half = _CROP // 2
    _, h, w = pixels.shape
    for o in objects:
        if (o.kind != "ctc" or o.in_edge_zone
                or len(crops[o.her2_level]) >= _CROPS_PER_LEVEL):
            continue
        x, y = int(round(o.x_px)), int(round(o.y_px))
        if half <= x < w - half and half <= y < h - half:
            crops[o.her2_level].append(pixels[:, y - half:y + half, x - half:x + half].copy())


def _to_display(img: np.ndarray, channel: int, background: float | None = None) -> np.ndarray:
    img = img.astype(np.float32)
    bg = float(np.percentile(img, 20)) if background is None else background
    out = np.clip((img - bg) * (255.0 / _DISPLAY_MAX[channel]), 0, 255)
    return out.astype(np.uint8)


def _write_previews(truth: Path, spec, frame_number, pixels, objects, crops) -> None:
    cv2 = _opencv()

    # Frame composite: DAPI blue, CK green, CD45 red; HER2 grey panel beside it.
    bgs = [float(np.median(pixels[c, ::8, ::8])) for c in range(4)]
    rgb = np.dstack([_to_display(pixels[c], c, bgs[c]) for c in (0, 1, 2)])  # B, G, R for cv2
    her2 = cv2.cvtColor(_to_display(pixels[3], 3, bgs[3]), cv2.COLOR_GRAY2BGR)
    colours = {
        "ctc": (0, 255, 255), "ck_debris": (255, 0, 255), "ck_cd45_double": (0, 128, 255),
        "speck": (255, 255, 0), "bare_nucleus": (255, 128, 128), "nucleus_outside": (128, 255, 0),
        "ck_dim_leukocyte": (0, 0, 255), "cd45_dim_leukocyte": (128, 128, 255),
        "autofluorescent": (255, 255, 255), "stuck": (160, 160, 160),
    }
    for panel in (rgb, her2):
        for o in objects:
            key = "stuck" if o.context == "stuck" else o.kind
            if key not in colours:
                continue
            x1, y1, x2, y2 = o.bbox
            cv2.rectangle(panel, (x1 - 3, y1 - 3), (x2 + 3, y2 + 3), colours[key], 1)
            label = f"{o.her2_level}+" if o.kind == "ctc" else key
            if o.kind == "ctc" and o.context:
                label += f" {o.context}"
            cv2.putText(panel, label, (x1, max(y1 - 6, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        colours[key], 1, cv2.LINE_AA)
    sep = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    title = np.zeros((28, rgb.shape[1] * 2 + 8, 3), np.uint8)
    tags = "".join(f", {tag}" for tag in ("defocused", "dense")
                   if objects and getattr(objects[0], tag))
    cv2.putText(title, f"{spec.cartridge_id} frame {frame_number}{tags}: DAPI blue, CK green, "
                f"CD45 red | HER2 (FITC) grey; boxes = truth", (6, 19),
                cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(truth / "preview_frame.png"), np.vstack([title, np.hstack([rgb, sep, her2])]))

    # Cell gallery: a row per HER2 level, each cell as DAPI | CK | CD45 | HER2 tiles.
    zoom = 2
    tile = _CROP * zoom
    cell_w = 4 * tile + 3 * 2
    gap = 10
    label_w = 60
    head = 24
    width = label_w + _CROPS_PER_LEVEL * (cell_w + gap)
    canvas = np.full((head + 4 * (tile + gap), width), 40, np.uint8)
    for ci, name in enumerate(("DAPI", "CK", "CD45", "HER2")):
        cv2.putText(canvas, name, (label_w + ci * (tile + 2) + 4, 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_AA)
    for level in range(4):
        y = head + level * (tile + gap)
        cv2.putText(canvas, f"{level}+" if level else "0", (10, y + tile // 2),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2, cv2.LINE_AA)
        for k, crop in enumerate(crops[level]):
            x = label_w + k * (cell_w + gap)
            for c in range(4):
                disp = _to_display(crop[c], c)
                disp = cv2.resize(disp, (tile, tile), interpolation=cv2.INTER_NEAREST)
                xc = x + c * (tile + 2)
                canvas[y:y + tile, xc:xc + tile] = disp
    cv2.imwrite(str(truth / "preview_cells.png"), canvas)
