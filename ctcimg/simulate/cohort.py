"""Cohorts of simulated patients: heavy-tailed CTC counts, varied HER2 mixes, an outcome table.

Patient *i* of a cohort draws from the stream ``[seed, 4, i]``: its cartridge seed, its
true CTC count (zero-inflated negative binomial) and HER2 mix (Dirichlet)
(:func:`draw_patient`). ``truth/patients.csv`` lists the truth per patient;
``clinical.csv`` holds outcome and covariates whose PFS depends on the true CTC-HER2 call
(:func:`ctcimg.stats.simulate_clinical.simulate_clinical`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcimg.channels import FRAME_HEIGHT, FRAME_WIDTH, HER2_BINS
from ctcimg.io.atomic import write_text_atomic
from ctcimg.simulate.cartridge import SimulatedCartridge, simulate_cartridge
from ctcimg.simulate.spec import ctc_capacity


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
        One :class:`~ctcimg.simulate.SimulatedCartridge` per patient, in patient order.
    """

    path: Path
    patients_csv: Path
    cartridges: tuple[SimulatedCartridge, ...]


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
        Per cartridge, as in :func:`~ctcimg.simulate.simulate_cartridge`.
    mean_ctc, zero_fraction
        Count distribution, see :func:`draw_patient`. Counts are capped at
        :func:`~ctcimg.simulate.ctc_capacity` (what fits in the frames).
    **kw
        Passed on to :func:`~ctcimg.simulate.simulate_cartridge` (``bits``, ``compression``,
        ``preview``, ``confounders`` …).

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
