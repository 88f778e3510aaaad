"""Accuracy floors on a small simulated cohort (benchmarks/accuracy.py has the real goals)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctcimg.evaluate import evaluate, matched_ctc_signals, read_truth, truth_calls
from ctcimg.her2 import calibrate
from ctcimg.score import score_cartridge
from ctcimg.simulate import simulate_cohort


@pytest.fixture(scope="module")
def scored_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    cohort = simulate_cohort(root, 4, seed=314, n_frames=4, mean_ctc=30, zero_fraction=0.25)
    return [(score_cartridge(sim.path, thumbnails=False), read_truth(sim.truth))
            for sim in cohort.cartridges]


def test_ctc_detection_decoy_rejection_and_her2_floors(scored_cohort):
    total = None
    for result, truth in scored_cohort:
        one = evaluate(result.events, truth, result.info["pixel_size_um"])
        total = one if total is None else total + one
    assert total.n_true_ctc >= 30
    assert total.sensitivity >= 0.9
    assert total.precision >= 0.9
    for kind, (rejected, count) in total.decoys.items():
        assert rejected / count >= 0.9, kind
    assert total.her2_exact >= 0.9


def test_patient_calls_agree_with_truth(scored_cohort):
    agree = [result.calls == truth_calls(truth) for result, truth in scored_cohort]
    assert np.mean(agree) >= 0.75


def test_calibration_on_matched_truth_levels(scored_cohort):
    pairs = [matched_ctc_signals(r.events, t, r.info["pixel_size_um"]) for r, t in scored_cohort]
    fitted = calibrate(np.concatenate([p[0] for p in pairs]),
                       np.concatenate([p[1] for p in pairs]), n_folds=3)
    assert fitted.exact_agreement >= 0.9
    assert fitted.kappa_quadratic >= 0.9


@pytest.fixture(scope="module")
def confounder_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("confounders")
    cohort = simulate_cohort(root, 3, seed=2718, n_frames=6, mean_ctc=30, zero_fraction=0.0,
                             confounders=2.0)
    return [(score_cartridge(sim.path, thumbnails=False), read_truth(sim.truth))
            for sim in cohort.cartridges]


def test_confounders_ck_dim_leukocytes_and_particles_are_rejected(confounder_cohort):
    """Leukocytes with nonspecific CK (CD45 on the membrane, outside a nucleus-sized event)
    and autofluorescent particles are not CTCs; CTCs with leukocytes stuck to them are."""
    total = None
    for result, truth in confounder_cohort:
        one = evaluate(result.events, truth, result.info["pixel_size_um"])
        total = one if total is None else total + one
    for kind in ("ck_dim_leukocyte", "autofluorescent", "leukocyte"):
        rejected, count = total.decoys[kind]
        assert count >= 5 and rejected / count >= 0.95, kind
    assert total.false_positives["ck_dim_leukocyte"] + total.false_positives[
        "stuck_ck_dim_leukocyte"] <= 1
    doublets = total.rows["doublet"]
    assert doublets.total >= 5 and doublets.sensitivity >= 0.8
    # confounders x2 (defocused frames, leukocyte clusters) cost sensitivity: 0.87 measured;
    # benchmarks/accuracy.py reports the held-out figures against the real goals
    assert total.sensitivity >= 0.8 and total.precision >= 0.9


def test_leukocyte_reference_follows_each_samples_nonspecific_fitc(confounder_cohort):
    """The referenced HER2 signal of 0-level CTCs stays near their level signal whatever
    the sample's nonspecific FITC (which the plain signal carries in full)."""
    import json

    offsets = []
    for result, truth in confounder_cohort:
        nonspecific = json.loads((Path(result.path).parent / "truth" / result.cartridge_id
                                  / "cartridge.json").read_text())["her2_nonspecific"]
        signal, level = matched_ctc_signals(result.events, truth, result.info["pixel_size_um"],
                                            "her2_signal_referenced")
        plain, _ = matched_ctc_signals(result.events, truth, result.info["pixel_size_um"])
        if (level == 0).sum() >= 3:
            offsets.append((nonspecific, float(np.median(plain[level == 0])),
                            float(np.median(signal[level == 0]))))
    assert offsets
    for nonspecific, plain, referenced in offsets:
        assert abs(referenced - 8.0) < max(10.0, 0.25 * nonspecific)
        if nonspecific > 30:
            assert plain - referenced > 0.6 * nonspecific
