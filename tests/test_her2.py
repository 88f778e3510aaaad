"""HER2 profiles (JSON, bins) and calibration from reviewer scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctcimg.cli import main
from ctcimg.errors import InputError
from ctcimg.her2 import DEFAULT_PROFILE, Her2Profile, calibrate, read_labelled_events


def test_profile_bins_edges_inclusive_from_below():
    profile = Her2Profile(edges=(10, 50, 100))
    assert profile.score([-5, 9.99, 10, 49, 50, 99, 100, 1e4]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_profile_json_round_trip(tmp_path):
    path = tmp_path / "p.json"
    Her2Profile(edges=(11.5, 60, 170), name="lab7").save(path)
    loaded = Her2Profile.load(path)
    assert loaded.edges == (11.5, 60.0, 170.0) and loaded.name == "lab7"


@pytest.mark.parametrize(("content", "needle"), [
    ({"edges": [50, 10, 100]}, "out of order"),
    ({"edges": [10, 10, 100]}, "out of order"),
    ({"edges": [10, 50]}, "three"),
    ({"edges": [10, "a", 100]}, "numbers"),
    ({"edges": [10, 50, 100], "bins": ["0", "1", "2", "3"]}, "bins"),
    ({"thresholds": [1, 2, 3]}, "edges"),
])
def test_invalid_profiles_name_the_file(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=needle) as err:
        Her2Profile.load(path)
    assert str(path) in str(err.value)


def test_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{edges: oops")
    with pytest.raises(InputError, match="JSON"):
        Her2Profile.load(path)


def _labelled(rng, n_per_bin=40, edges=(25, 80, 200)):
    centres = [8, 50, 140, 380]
    signal = np.concatenate([rng.lognormal(np.log(c), 0.15, n_per_bin) for c in centres])
    truth = Her2Profile(edges=edges).score(signal)
    return signal, truth


def test_calibration_recovers_known_edges_and_reports_agreement():
    rng = np.random.default_rng(5)
    signal, score = _labelled(rng)
    result = calibrate(signal, score)
    # any edge between the neighbouring clusters separates them; check it lands there
    for edge, (low, high) in zip(result.profile.edges, [(8, 50), (50, 140), (140, 380)],
                                 strict=True):
        assert low < edge < high
    assert result.exact_agreement >= 0.97
    assert result.kappa_quadratic >= 0.97
    assert result.confusion.sum() == len(score)
    assert "kappa" in result.summary()


def test_calibration_needs_every_bin():
    signal = np.array([1.0, 2, 3, 50, 60, 70, 300, 310])
    score = np.array([0, 0, 0, 1, 1, 1, 3, 3])
    with pytest.raises(InputError, match="2\\+"):
        calibrate(signal, score)


def _write_events(path, signal, reviewer):
    pd.DataFrame({"event_id": range(1, len(signal) + 1), "her2_signal": signal,
                  "reviewer_score": reviewer}).to_csv(path, index=False)


def test_read_labelled_events_accepts_labels_and_skips_blank_and_not_ctc(tmp_path):
    path = tmp_path / "e.csv"
    _write_events(path, [1, 2, 3, 4, 5, 6], ["0", "1+", "", "3", "not_ctc", "2+"])
    signal, score = read_labelled_events(path)
    assert signal.tolist() == [1, 2, 4, 6] and score.tolist() == [0, 1, 3, 2]


def test_labels_outside_0_to_3_name_the_line(tmp_path):
    path = tmp_path / "e.csv"
    _write_events(path, [1, 2, 3], ["0", "4", "2"])
    with pytest.raises(InputError, match="line\\(s\\) 3") as err:
        read_labelled_events(path)
    assert str(path) in str(err.value)


def test_csv_without_needed_columns(tmp_path):
    path = tmp_path / "e.csv"
    pd.DataFrame({"her2_signal": [1.0]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="reviewer_score"):
        read_labelled_events(path)


def test_cli_calibrate_writes_profile_and_prints_kappa(tmp_path, capsys):
    rng = np.random.default_rng(9)
    signal, score = _labelled(rng)
    labelled = tmp_path / "events.csv"
    _write_events(labelled, signal, score)
    out = tmp_path / "profile.json"
    assert main(["calibrate", str(labelled), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Cohen's kappa" in printed and "confusion" in printed
    assert Her2Profile.load(out).edges != DEFAULT_PROFILE.edges


@pytest.mark.parametrize("bad", ["labels", "columns", "csv"])
def test_cli_calibrate_bad_input_writes_nothing(tmp_path, capsys, bad):
    labelled = tmp_path / "events.csv"
    if bad == "labels":
        _write_events(labelled, [1.0, 2.0], ["0", "7"])
    elif bad == "columns":
        pd.DataFrame({"signal": [1.0]}).to_csv(labelled, index=False)
    else:
        labelled.write_bytes(b"\xff\xfe\x00bad")
    out = tmp_path / "profile.json"
    assert main(["calibrate", str(labelled), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(labelled) in err
    assert not out.exists()


def test_profile_reference_round_trips_and_is_validated(tmp_path):
    profile = Her2Profile(edges=(5.0, 40.0, 150.0), reference="leukocytes", name="lab")
    profile.save(tmp_path / "p.json")
    loaded = Her2Profile.load(tmp_path / "p.json")
    assert loaded.reference == "leukocytes" and loaded.signal_column == "her2_signal_referenced"
    with pytest.raises(InputError, match="unknown reference"):
        Her2Profile(edges=(5.0, 40.0, 150.0), reference="erythrocytes")


def test_leukocyte_reference_needs_enough_leukocytes():
    from ctcimg.her2 import MIN_REFERENCE_LEUKOCYTES, leukocyte_reference

    rng = np.random.default_rng(0)
    signal = rng.normal(30.0, 4.0, 500)
    ref = leukocyte_reference(signal, np.ones(500, bool))
    assert ref.median == pytest.approx(np.median(signal), abs=1e-3)
    assert ref.spread == pytest.approx(4.0, rel=0.15)
    few = leukocyte_reference(signal, np.arange(500) < MIN_REFERENCE_LEUKOCYTES - 1)
    assert few.median is None and few.n == MIN_REFERENCE_LEUKOCYTES - 1


def test_leukocyte_reference_is_a_median_over_frames():
    """A crowded frame with many low-reading leukocytes does not outvote the others."""
    from ctcimg.her2 import leukocyte_reference

    signal = np.concatenate([np.full(30, 50.0), np.full(30, 52.0), np.full(400, 20.0)])
    frame = np.repeat([1, 2, 3], [30, 30, 400])
    ref = leukocyte_reference(signal, np.ones(len(signal), bool), frame)
    assert ref.median == 50.0 and ref.n == 460
    assert leukocyte_reference(signal, np.ones(len(signal), bool)).median == 20.0
