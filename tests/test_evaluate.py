"""Matching scored events to the simulator's truth (ctcimg.evaluate)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctcimg.evaluate import evaluate, match_events, read_truth, visible_centroids

FRAME = (100, 120)  # rows, columns


def test_visible_centroid_of_a_disc_cut_by_the_frame_border():
    x, y = visible_centroids(np.array([60.0, -5.0, 60.0, -30.0]),
                             np.array([50.0, 50.0, 103.0, 50.0]),
                             np.array([10.0, 10.0, 10.0, 10.0]), FRAME, samples=201)
    assert (x[0], y[0]) == (60.0, 50.0)  # wholly inside: its centre
    # the slow way: the pixels of the disc inside the frame
    yy, xx = np.mgrid[0:100, 0:120]
    for i, (cx, cy) in enumerate([(-5.0, 50.0), (60.0, 103.0)], start=1):
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 100.0
        assert x[i] == pytest.approx(xx[disc].mean(), abs=0.3)
        assert y[i] == pytest.approx(yy[disc].mean(), abs=0.3)
    assert np.isnan(x[3]) and np.isnan(y[3])  # wholly outside


def _truth_dir(tmp_path, rows):
    pd.DataFrame(rows).to_csv(tmp_path / "objects.csv", index=False)
    (tmp_path / "cartridge.json").write_text(json.dumps(
        {"parameters": {"frame_shape": list(FRAME), "pixel_size_um": 0.5}}))
    return tmp_path


def _events(rows):
    base = {"frame": 1, "is_ctc": True, "her2_score": "0"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_a_cut_ctc_matches_the_event_of_its_visible_part_and_one_centred_outside_counts_apart(
        tmp_path):
    ctc = {"frame": 1, "kind": "ctc", "her2_level": 0, "diameter_um": 10.0, "in_edge_zone": 0}
    truth = read_truth(_truth_dir(tmp_path, [
        {**ctc, "x_px": 2.0, "y_px": 50.0},     # cut, centre inside: event 6 px inward
        {**ctc, "x_px": -6.0, "y_px": 20.0},    # centre outside: its sliver is found
        {**ctc, "x_px": 60.0, "y_px": 50.0},    # inside, missed
    ]))
    assert list(truth["centre_in_frame"]) == [True, False, True]
    events = _events([{"x_px": 5.6, "y_px": 50.0}, {"x_px": 1.5, "y_px": 20.0}])
    # the plain centres are too far (3.6 px = 1.8 µm vs 7.5 px for the sliver)
    plain = truth.drop(columns=["x_visible_px", "y_visible_px"])
    assert list(match_events(events, plain, 0.5, max_distance_um=2.0)) == [0, -1, -1]
    assert list(match_events(events, truth, 0.5, max_distance_um=2.0)) == [0, 1, -1]
    accuracy = evaluate(events, truth, 0.5)
    assert (accuracy.n_true_ctc, accuracy.true_positive) == (2, 1)
    assert (accuracy.n_outside_ctc, accuracy.outside_found) == (1, 1)
    assert accuracy.precision == 1.0


def test_truth_calls_over_the_counted_ctcs_leave_out_the_edge_band_and_other_frames(tmp_path):
    from ctcimg.evaluate import truth_calls

    ctc = {"frame": 1, "kind": "ctc", "diameter_um": 10.0, "y_px": 50.0}
    truth = read_truth(_truth_dir(tmp_path, [
        {**ctc, "x_px": 60.0, "her2_level": 0, "in_edge_zone": 0},
        {**ctc, "x_px": 30.0, "her2_level": 3, "in_edge_zone": 1},   # on the edge band
        {**ctc, "x_px": -8.0, "her2_level": 3, "in_edge_zone": 0},   # centred outside
    ]))
    assert truth_calls(truth)["riethdorf"] == "positive"
    assert truth_calls(truth, counted_only=True)["riethdorf"] == "negative"
    assert truth_calls(truth.iloc[1:], counted_only=True)["riethdorf"] == "not_evaluable"


def test_signal_calls_bin_each_true_ctc_by_its_own_staining_not_its_drawn_level(tmp_path):
    from ctcimg.evaluate import signal_calls, signal_levels, truth_calls
    from ctcimg.simulate import HER2_LEVEL_SIGNAL

    means = [HER2_LEVEL_SIGNAL[level] for level in range(4)]
    midpoints = [float(np.sqrt(a * b)) for a, b in zip(means[:-1], means[1:], strict=True)]
    below = [m * 0.99 for m in midpoints]
    above = [m * 1.01 for m in midpoints]
    assert signal_levels(below).tolist() == [0, 1, 2]
    assert signal_levels(above).tolist() == [1, 2, 3]
    assert signal_levels(means).tolist() == [0, 1, 2, 3]

    ctc = {"frame": 1, "kind": "ctc", "diameter_um": 10.0, "y_px": 50.0, "in_edge_zone": 0}
    truth = read_truth(_truth_dir(tmp_path, [
        {**ctc, "x_px": 20.0, "her2_level": 2, "her2_signal": above[2]},  # a 2+ stained as 3+
        {**ctc, "x_px": 50.0, "her2_level": 2, "her2_signal": means[2]},
        {**ctc, "x_px": 80.0, "her2_level": 0, "her2_signal": means[0]},
    ]))
    assert truth_calls(truth)["riethdorf"] == "negative"
    assert signal_calls(truth)["riethdorf"] == "positive"
    assert signal_calls(truth.iloc[1:])["riethdorf"] == "negative"
    assert signal_calls(truth)["pestrin"] == truth_calls(truth)["pestrin"] == "positive"
