"""Accuracy floors on a small simulated cohort (benchmarks/accuracy.py has the real goals)."""

from __future__ import annotations

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
