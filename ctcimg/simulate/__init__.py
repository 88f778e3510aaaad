"""Synthetic CellSearch cartridges with known truth: the demo, the tests and the benchmarks.

No real CellTracks Analyzer II export is public, so this package writes the same layout
(DESIGN.md §2) from a seeded model of the optics and the cells, one module per job:

* :mod:`~ctcimg.simulate.spec`: what determines a cartridge (:class:`CartridgeSpec`), its
  validation (:func:`cartridge_spec`), the frame grid and how many CTCs fit;
* :mod:`~ctcimg.simulate.plan`: the cartridge-level draws: which CTCs (HER2 levels, touching
  clusters) and decoys go to which frame, and the reviewer's random errors;
* :mod:`~ctcimg.simulate.optics`: optics on the 12-bit scale: smooth per-channel background
  with vignetting and a linear gradient (varying per frame), the bright cartridge edge in
  frames of the outer grid rows/columns, a Gaussian PSF, shot and read noise, 12-bit
  saturation;
* :mod:`~ctcimg.simulate.bodies`: objects: CTCs (CK+ DAPI+ CD45−, 7–20 µm, HER2
  membrane-dominant at four levels, some in touching clusters, some cut by the frame
  border), many leukocytes (DAPI+ CD45+), and decoys a naive pipeline would count (CK
  debris, CK+CD45+ doubles, sub-4 µm specks, bare nuclei, CK blobs with the nucleus beside
  them);
* :mod:`~ctcimg.simulate.confounders`: what real cartridges have and the default model lacks
  (DESIGN.md §5), each phenomenon described there with its published source: CK-dim and
  CD45-dim leukocytes, CTC–leukocyte doublets and clusters, defocused and dense frames,
  autofluorescent particles, per-sample background and nonspecific FITC;
* :mod:`~ctcimg.simulate.placement`: which bodies a frame holds and where they go (free
  space, touching clusters, CTCs cut by the frame border, a dense frame's carpet);
* :mod:`~ctcimg.simulate.render`: one frame and its truth (:func:`render_frame`);
* :mod:`~ctcimg.simulate.reviewer`: the simulated lab's reviewer definitions
  (:data:`REVIEWERS`);
* :mod:`~ctcimg.simulate.truth`: the truth record (:class:`SimulatedObject`, the columns of
  ``objects.csv``, ``cartridge.json``);
* :mod:`~ctcimg.simulate.cartridge`: writing a cartridge (:func:`simulate_cartridge`): frame
  TIFFs, the export's metadata through the format writers beside their readers
  (:mod:`ctcimg.io.celltracks`, :mod:`ctcimg.io.celltracks_xp`), truth and previews
  (:mod:`~ctcimg.simulate.preview`);
* :mod:`~ctcimg.simulate.cohort`: cohorts of patients with heavy-tailed CTC counts, their
  ``patients.csv`` and a ``clinical.csv`` (:func:`simulate_cohort`).

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

from ctcimg.simulate.bodies import DECOY_RATE, HER2_LEVEL_SIGNAL, HER2_LOG_SPREAD
from ctcimg.simulate.cartridge import SimulatedCartridge, simulate_cartridge
from ctcimg.simulate.cohort import SimulatedCohort, draw_patient, simulate_cohort
from ctcimg.simulate.confounders import (
    CONFOUNDER_KINDS,
    CONFOUNDER_RATE,
    CONTEXTS,
    sample_conditions,
)
from ctcimg.simulate.render import render_frame
from ctcimg.simulate.reviewer import PRESENTED_KINDS, REVIEWERS
from ctcimg.simulate.spec import LAYOUTS, CartridgeSpec, cartridge_spec, ctc_capacity, default_grid
from ctcimg.simulate.truth import CONFOUNDER_COLUMNS, KINDS, OBJECT_COLUMNS, SimulatedObject

__all__ = [
    "CONFOUNDER_COLUMNS",
    "CONFOUNDER_KINDS",
    "CONFOUNDER_RATE",
    "CONTEXTS",
    "CartridgeSpec",
    "DECOY_RATE",
    "HER2_LEVEL_SIGNAL",
    "HER2_LOG_SPREAD",
    "KINDS",
    "LAYOUTS",
    "OBJECT_COLUMNS",
    "PRESENTED_KINDS",
    "REVIEWERS",
    "SimulatedCartridge",
    "SimulatedCohort",
    "SimulatedObject",
    "cartridge_spec",
    "ctc_capacity",
    "default_grid",
    "draw_patient",
    "render_frame",
    "sample_conditions",
    "simulate_cartridge",
    "simulate_cohort",
]
