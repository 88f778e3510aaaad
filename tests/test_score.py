"""Scoring a cartridge end to end: accuracy on the demo fixture, outputs, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcimg.cli import main
from ctcimg.evaluate import evaluate, read_truth, truth_calls
from ctcimg.gate import REJECT_REASONS
from ctcimg.results import CartridgeResult
from ctcimg.score import score_cartridge
from ctcimg.segment import FEATURE_COLUMNS

DEMO = Path(__file__).parent.parent / "fixtures" / "demo"
DEMO_CARTRIDGE = DEMO / "SIM000001.1.1"
DEMO_TRUTH = DEMO / "truth" / "SIM000001.1.1"


@pytest.fixture(scope="module")
def demo_result():
    return score_cartridge(DEMO_CARTRIDGE)


def test_demo_ctcs_found_and_decoys_rejected(demo_result):
    truth = read_truth(DEMO_TRUTH)
    accuracy = evaluate(demo_result.events, truth, demo_result.info["pixel_size_um"])
    assert accuracy.n_true_ctc + accuracy.n_edge_ctc == int((truth["kind"] == "ctc").sum()) > 20
    assert accuracy.sensitivity >= 0.85
    assert accuracy.precision >= 0.9
    for kind, (rejected, total) in accuracy.decoys.items():
        assert total > 0
        assert rejected / total >= 0.9, kind
    assert accuracy.her2_exact >= 0.9


def test_demo_patient_calls_match_truth(demo_result):
    expected = truth_calls(read_truth(DEMO_TRUTH))
    assert demo_result.calls == expected


def test_events_table_has_every_documented_column(demo_result):
    events = demo_result.events
    for column in ["event_id", "frame", "x_px", "y_px", "x_um", "y_um", *FEATURE_COLUMNS,
                   "in_cartridge_edge", "is_ctc", "reject_reason", "her2_signal", "her2_score"]:
        assert column in events.columns, column
    assert events["event_id"].tolist() == list(range(1, len(events) + 1))
    np.testing.assert_allclose(events["x_um"], events["x_px"] * 0.64)
    ctcs = events[events["is_ctc"]]
    assert set(ctcs["reject_reason"]) == {""}
    assert set(ctcs["her2_score"]) <= {"0", "1+", "2+", "3+"}
    rejected = events[~events["is_ctc"]]
    assert set(rejected["reject_reason"]) <= set(REJECT_REASONS)
    assert set(rejected["her2_score"]) == {""}
    counts = demo_result.her2_counts
    assert sum(counts.values()) == demo_result.ctc_count == len(ctcs)
    assert sum(demo_result.her2_percent.values()) == pytest.approx(100, abs=0.05)


def test_thumbnails_for_every_ctc(demo_result):
    ids = set(demo_result.thumbnail_events.tolist())
    assert set(demo_result.ctcs["event_id"]) <= ids
    assert demo_result.thumbnails.shape[1:] == (4, 48, 48)
    assert demo_result.thumbnails.dtype == np.uint8
    # a CTC's CK tile is bright in the middle, dark at the corners
    first = list(demo_result.thumbnail_events).index(int(demo_result.ctcs["event_id"].iloc[0]))
    ck = demo_result.thumbnails[first, 1].astype(float)
    assert ck[20:28, 20:28].mean() > ck[:6, :6].mean() + 30


def test_rejected_thumbnails_stop_at_the_cap_in_event_order(monkeypatch, demo_result):
    events = demo_result.events
    rejected = events[~events["is_ctc"] & (events["reject_reason"] != "ck_negative")
                      & np.isfinite(events["her2_mean"])]
    assert set(demo_result.thumbnail_events) == set(events["event_id"][events["is_ctc"]]) \
        | set(rejected["event_id"])  # below the cap: every candidate
    cap = len(rejected[rejected["frame"] <= 2]) + 3  # the cap is reached in frame 3
    monkeypatch.setattr("ctcimg.score.MAX_REJECTED_THUMBNAILS", cap)
    capped = score_cartridge(DEMO_CARTRIDGE)
    expected = set(events["event_id"][events["is_ctc"]]) | set(rejected["event_id"][:cap])
    assert capped.thumbnail_events.tolist() == sorted(expected)
    same = np.isin(demo_result.thumbnail_events, capped.thumbnail_events)
    np.testing.assert_array_equal(demo_result.thumbnails[same], capped.thumbnails)


@pytest.mark.parametrize("threads", [2, 3])
def test_frames_side_by_side_give_the_one_by_one_result(monkeypatch, tmp_path, threads):
    monkeypatch.setattr("ctcimg.score.MAX_REJECTED_THUMBNAILS", 20)  # the cap within frame 3
    results = {}
    for label, count in (("side_by_side", threads), ("one_by_one", 1)):
        monkeypatch.setattr("ctcimg.kernels.threads.thread_count", lambda count=count: count)
        results[label] = score_cartridge(DEMO_CARTRIDGE).to_dir(tmp_path / label)
    for name in ("events.csv", "summary.json", "thumbnails.npz"):
        assert (results["side_by_side"] / name).read_bytes() == \
            (results["one_by_one"] / name).read_bytes(), name


def test_scoring_is_reproducible(tmp_path, demo_result):
    again = score_cartridge(DEMO_CARTRIDGE)
    first, second = demo_result.to_dir(tmp_path / "a"), again.to_dir(tmp_path / "b")
    for name in ("events.csv", "summary.json", "thumbnails.npz"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_summary_records_counts_calls_config_and_checksums(tmp_path, demo_result):
    out = demo_result.to_dir(tmp_path / "out")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ctc_count"] == demo_result.ctc_count
    assert list(summary["her2_counts"]) == ["0", "1+", "2+", "3+"]
    assert set(summary["calls"]) >= {"liu", "pestrin", "riethdorf"}
    assert summary["engine"]["name"] == "ctcimg"
    assert {"segment", "gate", "her2_profile", "rule"} <= set(summary["config"])
    assert len(summary["input_checksums"]) == 7  # six frames and the XML
    events = pd.read_csv(out / "events.csv", keep_default_na=False)
    assert len(events) == summary["n_events"]
    assert summary["reviewer"]["reviewer_ctcs"] > 0
    assert summary["reviewer"]["matched"] >= 0.8 * summary["reviewer"]["reviewer_ctcs"]


def test_custom_rule_and_profile_change_the_call(tmp_path):
    from ctcimg.her2 import Her2Profile

    everything_3plus = Her2Profile(edges=(-1e6, -1e5, -1e4))
    result = score_cartridge(DEMO_CARTRIDGE, her2_profile=everything_3plus,
                             rule="all3: 3+ fraction >= 1", thumbnails=False)
    assert result.her2_counts["3+"] == result.ctc_count > 0
    assert result.call() == "positive"
    assert result.calls["all3"] == "positive"
    assert result.thumbnails is None


# --- command line ---------------------------------------------------------------------------


def test_cli_score_writes_results_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["score", str(DEMO_CARTRIDGE), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"CTCs      {summary['ctc_count']}" in printed
    assert (out / "events.csv").exists() and (out / "thumbnails.npz").exists()
    # the closing line lists exactly the files in the folder
    listed = printed.strip().splitlines()[-1].split("(")[1].rstrip(")").split(", ")
    assert sorted(listed) == sorted(f.name for f in out.iterdir())


def test_cli_score_json_and_default_out_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["score", str(DEMO_CARTRIDGE), "--json", "--rule", "pestrin"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = tmp_path / "ctcimg-results" / "SIM000001.1.1" / "summary.json"
    assert printed == json.loads(written.read_text())
    assert printed["rule"] == "pestrin" and printed["call"] == printed["calls"]["pestrin"]


def _fails_cleanly(args, capsys, out: Path, needle: str):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and needle in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_score_unreadable_cartridge(tmp_path, capsys):
    broken = tmp_path / "broken"
    (broken / "processed").mkdir(parents=True)
    (broken / "processed" / "broken_001.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "res"
    _fails_cleanly(["score", str(broken), "-o", str(out)], capsys, out, "broken_001.tif")


def test_cli_score_profile_with_bins_out_of_order(tmp_path, capsys):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"bins": ["0", "1+", "2+", "3+"], "edges": [80, 20, 200]}))
    out = tmp_path / "res"
    _fails_cleanly(["score", str(DEMO_CARTRIDGE), "-o", str(out), "--her2-profile",
                    str(profile)], capsys, out, "out of order")


def test_cli_score_unknown_rule(tmp_path, capsys):
    out = tmp_path / "res"
    _fails_cleanly(["score", str(DEMO_CARTRIDGE), "-o", str(out), "--rule", "most"],
                   capsys, out, "unknown rule")


def test_leukocyte_reference_recorded_and_a_referenced_profile_bins_the_referenced_signal(
        demo_result, tmp_path):
    from ctcimg.her2 import Her2Profile

    events = demo_result.events
    reference = demo_result.info["her2_reference"]
    leukocytes = events[(events["reject_reason"] == "ck_negative")
                        & (events["cd45_mean"] - events["cd45_ring"] > 40)
                        & events["diameter_um"].between(6, 16)
                        & (events["dapi_area_um2"] >= 3)]
    assert reference["n"] == len(leukocytes) > 100
    per_frame = leukocytes.groupby("frame")["her2_signal"].agg(["median", "size"])
    assert reference["median"] == pytest.approx(
        np.median(per_frame.loc[per_frame["size"] >= 5, "median"]), abs=1e-3)
    np.testing.assert_allclose(events["her2_signal_referenced"],
                               events["her2_signal"] - reference["median"], atol=1e-3)
    # edges shifted by the reference median bin the referenced signal exactly like the
    # plain edges bin the plain signal
    shift = reference["median"]
    referenced = Her2Profile(edges=tuple(e - shift for e in (22.0, 75.0, 190.0)),
                             reference="leukocytes")
    profile_path = tmp_path / "profile.json"
    referenced.save(profile_path)
    again = score_cartridge(DEMO_CARTRIDGE, her2_profile=profile_path, thumbnails=False)
    assert again.her2_profile.reference == "leukocytes"
    assert again.her2_counts == demo_result.her2_counts
    assert json.loads(profile_path.read_text())["signal"] == "her2_signal_referenced"


def test_referenced_profile_refuses_a_cartridge_without_leukocytes(tmp_path, capsys):
    from conftest import make_cartridge

    from ctcimg.her2 import Her2Profile

    folder, _ = make_cartridge(tmp_path)
    profile = tmp_path / "p.json"
    Her2Profile(edges=(10.0, 50.0, 150.0), reference="leukocytes").save(profile)
    code = main(["score", str(folder), "--her2-profile", str(profile), "-o",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "leukocytes" in err and str(folder) in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _reference_thumbnail(frame: np.ndarray, x: float, y: float) -> np.ndarray:
    """The thumbnail by its definition, from the restored frame (C, H, W)."""
    crop = np.zeros((4, 48, 48), np.float32)
    row0, col0 = int(round(y)) - 24, int(round(x)) - 24
    r0, r1 = max(row0, 0), min(row0 + 48, frame.shape[1])
    c0, c1 = max(col0, 0), min(col0 + 48, frame.shape[2])
    crop[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = frame[:, r0:r1, c0:c1]
    inside = frame[:, r0:r1, c0:c1].reshape(4, -1)
    black = np.sort(inside, axis=1)[:, (inside.shape[1] - 1) // 10]
    gain = np.array([255 / 1500, 255 / 1500, 255 / 600, 255 / 600], np.float32)
    return np.clip((crop - black[:, None, None]) * gain[:, None, None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_thumbnails_equal_their_definition_inside_and_at_the_frame_edge(dtype):
    from ctcimg.io.tiff import StoredFrame
    from ctcimg.score import _thumbnails

    rng = np.random.default_rng(5)
    top = 4095 if dtype == np.float32 else np.iinfo(dtype).max
    # a few distinct values below the 10th percentile, so that neighbouring ranks differ
    pages = tuple(np.where(rng.random((100, 130)) < 0.12, rng.integers(0, top * 0.9, (100, 130)),
                           top).astype(dtype) for _ in range(4))
    affine = np.array([[4095 / top, 0.5, 2.0, 1.0], [3.0, 0.0, -1.0, 0.0],
                       [-np.inf, -np.inf, 0.0, -np.inf]], np.float32)
    frame = StoredFrame(pages, affine)
    x = np.array([60.0, 3.4, 128.6, 24.5, 70.2, 105.5])
    y = np.array([50.0, 40.0, 97.0, 24.5, 1.0, 75.5])  # inside, left, corner, edge-on, top
    restored = frame.restore()
    for crop, xi, yi in zip(_thumbnails(frame, x, y), x, y, strict=True):
        np.testing.assert_array_equal(crop, _reference_thumbnail(restored, xi, yi))


def test_her2_signal_keeps_the_ring_in_out_of_focus_frames():
    from ctcimg.score import her2_signal

    features = {"her2_mean": np.array([100.0, 100.0, 100.0]),
                "her2_core_mean": np.array([120.0, np.nan, 120.0]),
                "her2_ring": np.array([30.0, 30.0, np.nan]),
                "frame_blur_px2": np.array([0.5, 0.5, 0.5])}
    np.testing.assert_array_equal(her2_signal(features, 6.5), [90.0, 70.0, 120.0])
    features["frame_blur_px2"] = np.array([12.0, 12.0, 3.0])  # two from a defocused frame
    np.testing.assert_array_equal(her2_signal(features, 6.5), [120.0, 100.0, 120.0])
    np.testing.assert_array_equal(her2_signal(features), [90.0, 70.0, 120.0])  # no limit


def test_out_of_focus_frames_are_segmented_again_with_the_out_of_focus_cut(tmp_path):
    """Frames more out of focus than the gate's defocus_blur_px2 get the events of the
    out-of-focus nucleus cut (SegmentParams.out_of_focus), the others those of the in-focus
    one; their thumbnails follow the events."""
    from ctcimg.gate import GateParams
    from ctcimg.io.cellsearch import read_cartridge
    from ctcimg.segment import SegmentParams, segment_frame
    from ctcimg.simulate import simulate_cartridge

    sim = simulate_cartridge(tmp_path, n_frames=6, n_ctc=30, seed=14, confounders=2.0)
    result = score_cartridge(sim.path)
    events = result.events
    cartridge = read_cartridge(sim.path)
    params = SegmentParams()
    threshold = GateParams().defocus_blur_px2
    again = 0
    for index, number in enumerate(cartridge.frame_numbers):
        frame_events = events[events["frame"] == number]
        blur = frame_events["frame_blur_px2"].to_numpy()
        assert np.unique(blur).size <= 1
        out_of_focus = blur.size > 0 and blur[0] > threshold
        in_focus = segment_frame(cartridge[index], cartridge.pixel_size_um, params)
        used = (segment_frame(cartridge[index], cartridge.pixel_size_um, params.out_of_focus())
                if out_of_focus else in_focus)
        for column in ("x_px", "y_px", "area_px", "dapi_area_um2"):
            np.testing.assert_array_equal(frame_events[column].to_numpy(), used[column])
        again += out_of_focus and len(used["x_px"]) != len(in_focus["x_px"])
    assert again >= 1  # the out-of-focus cut changes at least one frame of this cartridge
    # summary.json lists those frames for review, with their blur and CTCs
    listed = result.info["out_of_focus_frames"]
    blurred = events.loc[events["frame_blur_px2"] > threshold]
    assert [f["frame"] for f in listed] == sorted(blurred["frame"].unique().tolist())
    assert [f["ctcs"] for f in listed] == [
        int(blurred.loc[blurred["frame"] == f["frame"], "is_ctc"].sum()) for f in listed]
    assert all(f["blur_px2"] > threshold for f in listed)
    assert "out of focus" in str(result)
    result.to_dir(tmp_path / "result")
    assert CartridgeResult.from_dir(tmp_path / "result").info["out_of_focus_frames"] == listed
    ids = result.thumbnail_events
    assert np.all(np.diff(ids) > 0)
    ctc_ids = events.loc[events["is_ctc"], "event_id"].to_numpy()
    assert np.isin(ctc_ids, ids).all()
    # the same in-focus and out-of-focus limits: no frame segmented again
    same = SegmentParams(defocus_split_nucleus_min_um2=params.split_nucleus_min_um2,
                         defocus_split_nucleus_h=params.split_nucleus_h,
                         defocus_split_nucleus_min_distance_um=params.split_nucleus_min_distance_um,
                         defocus_split_by_cytoplasm=params.split_by_cytoplasm)
    assert same.out_of_focus() == same
    plain = score_cartridge(sim.path, segment_params=same, thumbnails=False).events
    expected = [segment_frame(cartridge[i], cartridge.pixel_size_um, same)["x_px"]
                for i in range(len(cartridge))]
    np.testing.assert_array_equal(plain["x_px"].to_numpy(), np.concatenate(expected))
    assert len(plain) < len(events)


def test_out_of_focus_limits_are_checked():
    from ctcimg.errors import InputError
    from ctcimg.segment import SegmentParams

    limits = SegmentParams(defocus_split_nucleus_h=0.05).out_of_focus()
    assert limits.split_nucleus_h == 0.05
    assert limits.split_nucleus_min_um2 == SegmentParams().defocus_split_nucleus_min_um2
    with pytest.raises(InputError, match="defocus_split_nucleus_h"):
        SegmentParams(defocus_split_nucleus_h=0.0)
    with pytest.raises(InputError, match="defocus_split_nucleus_min_um2"):
        SegmentParams(defocus_split_nucleus_min_um2=-1.0)
