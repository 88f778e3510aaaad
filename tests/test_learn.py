"""Learning a lab's CTC decision: reviewer labels, training, the safe model file, scoring."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ctcimg.errors import InputError
from ctcimg.gate import HARD_RULES, REJECT_REASONS
from ctcimg.io.metadata import ReviewerEvent
from ctcimg.learn import (
    Agreement,
    _from_sklearn,
    evaluate_gate_model,
    load_gate_model,
    model_features,
    read_labelled,
    train_gate_model,
)
from ctcimg.score import reviewer_labels, score_cartridge
from ctcimg.segment import FEATURE_COLUMNS

# --------------------------------------------------------------------------- reviewer labels


def _reviewer(frame, x, y, assigned):
    return ReviewerEvent(event_id=0, frame=frame, x_px=x, y_px=y, bbox=(x, y, x, y),
                         assigned=assigned, numselected=1)


def test_reviewer_labels_pair_nearest_first_one_to_one_within_the_limit():
    frames = np.array([1, 1, 1, 2])
    x = np.array([10.0, 14.0, 100.0, 10.0])
    y = np.array([10.0, 10.0, 100.0, 10.0])
    reviewed = [
        _reviewer(1, 13.0, 10.0, True),   # nearest to event 1 (1 px), not event 0 (3 px)
        _reviewer(1, 12.0, 10.0, False),  # event 1 is taken: gets event 0 (2 px)
        _reviewer(1, 100.0, 120.0, True),  # 20 px from event 2: beyond the limit
        _reviewer(3, 10.0, 10.0, True),   # a frame without events
    ]
    labels = reviewer_labels(reviewed, frames, x, y, limit_px=12.5)
    assert labels.tolist() == ["false", "true", "", ""]


def test_agreement_kappa_matches_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(1)
    reviewer = rng.random(300) < 0.3
    decision = np.where(rng.random(300) < 0.85, reviewer, ~reviewer)
    agreement = Agreement.of(reviewer, decision)
    assert agreement.kappa == pytest.approx(cohen_kappa_score(reviewer, decision), abs=1e-12)
    assert agreement.sensitivity == pytest.approx(np.mean(decision[reviewer]))
    assert agreement.precision == pytest.approx(np.mean(reviewer[decision]))
    assert Agreement.of(np.ones(4, bool), np.ones(4, bool)).kappa is None  # one class


# --------------------------------------------------------------------------- synthetic tables


def _events_table(rng, n, ctc_fraction=0.5, label=True):
    """An events table like ctcimg score writes: every event passes the hard rules; the
    reviewers call CTCs the larger events (diameter >= 10 µm)."""
    table = {name: rng.normal(50.0, 10.0, n) for name in FEATURE_COLUMNS}
    diameter = np.where(rng.random(n) < ctc_fraction, rng.uniform(10.5, 16, n),
                        rng.uniform(6, 9.5, n))
    table.update(diameter_um=diameter, ck_area_um2=np.full(n, 80.0), ck_mean=np.full(n, 300.0),
                 dapi_area_um2=np.full(n, 30.0), cd45_mean=np.full(n, 5.0),
                 cd45_ring=np.full(n, 2.0), in_cartridge_edge=np.zeros(n, bool),
                 nucleus_in_ck_fraction=np.ones(n), ck_covered_by_nucleus_fraction=np.full(n, 0.4),
                 nucleus_offset_um=np.full(n, 0.5), circularity=np.full(n, 0.9),
                 aspect_ratio=np.full(n, 1.1), frame=np.arange(n) % 5 + 1,
                 event_id=np.arange(1, n + 1))
    frame = pd.DataFrame(table)
    if label:
        frame["reviewer_assigned"] = np.where(diameter >= 10.0, "true", "false")
    return frame


def _write_tables(tmp_path, tables):
    paths = []
    for i, table in enumerate(tables):
        folder = tmp_path / f"CART{i}.1.1"
        folder.mkdir()
        table.to_csv(folder / "events.csv", index=False)
        paths.append(folder)
    return paths


def test_model_features_exclude_positions_ids_labels_and_her2():
    features = model_features([*FEATURE_COLUMNS, "event_id", "frame", "x_um", "her2_signal",
                               "reviewer_assigned", "is_ctc", "ctc_probability"])
    assert "diameter_um" in features and "cd45_mean" in features
    for excluded in ("label", "x_px", "y_px", "bbox_row0", "bbox_col1", "event_id", "frame",
                     "x_um", "her2_mean", "her2_max", "her2_signal", "reviewer_assigned",
                     "is_ctc", "ctc_probability"):
        assert excluded not in features


def test_training_learns_a_rule_the_gate_does_not_know_and_records_it(tmp_path):
    rng = np.random.default_rng(2)
    paths = _write_tables(tmp_path, [_events_table(rng, 120) for _ in range(4)])
    report = train_gate_model(paths)
    model = report.model
    assert report.model_agreement.kappa > 0.95
    assert report.rule_agreement.kappa < 0.5  # the gate counts every event >= 6 µm
    assert report.importance[0][0] == "diameter_um"
    assert report.confusion.sum() == 480
    info = model.to_dict()
    assert info["training"]["n_cartridges"] == 4 and info["training"]["n_events"] == 480
    assert info["label_source"] == "reviewer_assigned"
    assert len({c["sha256"] for c in info["training"]["cartridges"]}) == 4
    assert info["cross_validation"]["model"]["kappa"] == pytest.approx(
        report.model_agreement.kappa, abs=1e-4)
    text = str(report)
    assert "Cohen's kappa" in text and "rule gate" in text and "diameter_um" in text

    saved = model.save(tmp_path / "gate-model.json")
    loaded = load_gate_model(saved)
    X = _events_table(rng, 200, label=False)[list(model.features)].to_numpy()
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    (tmp_path / "test").mkdir()
    test = read_labelled(_write_tables(tmp_path / "test", [_events_table(rng, 150)]))
    model_agreement, rule_agreement, counts = evaluate_gate_model(loaded, test)
    assert model_agreement.accuracy > 0.97 and rule_agreement.accuracy < 0.7
    assert counts["reviewer"].iloc[0] == int((test.table["reviewer_label"] == 1).sum())


def test_reviewer_is_ctc_wins_over_reviewer_assigned_where_given(tmp_path):
    rng = np.random.default_rng(3)
    tables = [_events_table(rng, 80) for _ in range(2)]
    tables[0]["reviewer_is_ctc"] = ""
    tables[0].loc[:9, "reviewer_is_ctc"] = "1"
    tables[0].loc[:9, "reviewer_assigned"] = "false"
    labelled = read_labelled(_write_tables(tmp_path, tables))
    assert (labelled.table["reviewer_label"].iloc[:10] == 1).all()
    assert labelled.label_source == "reviewer_is_ctc+reviewer_assigned"


def test_evaluator_equals_scikit_learn_predict_proba_with_missing_values():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 6))
    X[rng.random(X.shape) < 0.15] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 - X[:, 2] * 0.5) > 0.4)
    y = np.where(np.isnan(X[:, 2]), rng.random(600) < 0.8, y).astype(int)
    fitted = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=12,
                                            early_stopping=False, random_state=0).fit(X, y)
    model = _from_sklearn(fitted, [f"f{i}" for i in range(6)], 0.5, {})
    X_test = rng.normal(size=(500, 6)) * 1.5
    X_test[rng.random(X_test.shape) < 0.2] = np.nan
    assert model.depth >= 3
    np.testing.assert_allclose(model.predict_proba(X_test), fitted.predict_proba(X_test)[:, 1],
                               rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- bad input


def test_training_refuses_bad_input_with_clear_messages(tmp_path):
    rng = np.random.default_rng(5)
    unlabelled = _write_tables(tmp_path, [_events_table(rng, 60, label=False)])
    with pytest.raises(InputError, match="no label column"):
        read_labelled(unlabelled)

    one_class = [_events_table(rng, 60, ctc_fraction=1.0) for _ in range(2)]
    (tmp_path / "b").mkdir()
    with pytest.raises(InputError, match="one class only"):
        train_gate_model(_write_tables(tmp_path / "b", one_class))

    few = [_events_table(rng, 20) for _ in range(2)]
    (tmp_path / "c").mkdir()
    with pytest.raises(InputError, match="too few labels.*at least 30"):
        train_gate_model(_write_tables(tmp_path / "c", few))

    mismatched = [_events_table(rng, 60), _events_table(rng, 60).drop(columns="ck_std")]
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="feature columns differ.*missing ck_std"):
        read_labelled(_write_tables(tmp_path / "d", mismatched))

    bad_value = _events_table(rng, 60)
    bad_value.loc[3, "reviewer_assigned"] = "maybe"
    (tmp_path / "e").mkdir()
    with pytest.raises(InputError, match="'maybe' \\(line 5\\)"):
        read_labelled(_write_tables(tmp_path / "e", [bad_value]))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_model_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "gate-model.json"
    crafted.write_bytes(pickle.dumps(_RunsCode(marker)))
    pickle.loads(crafted.read_bytes())  # the file does run code under pickle ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InputError, match="pickle.*never unpickles") as err:
        load_gate_model(crafted)  # ... and ctcimg refuses it
    assert str(crafted) in str(err.value) and not marker.exists()
    protocol0 = tmp_path / "old.json"
    protocol0.write_bytes(pickle.dumps(_RunsCode(marker), protocol=0))
    with pytest.raises(InputError, match="not valid JSON"):
        load_gate_model(protocol0)
    assert not marker.exists()


@pytest.fixture(scope="module")
def model_text(tmp_path_factory):
    rng = np.random.default_rng(6)
    paths = _write_tables(tmp_path_factory.mktemp("model"),
                          [_events_table(rng, 70) for _ in range(2)])
    return train_gate_model(paths).model.to_json()


@pytest.mark.parametrize("break_it, message", [
    (lambda d: d.update(format="other"), "format must be 'ctcimg-gate-model'"),
    (lambda d: d.update(format_version=2), "format_version 2"),
    (lambda d: d.pop("training"), "training must be an object"),
    (lambda d: d.update(threshold=1.5), "threshold must lie between 0 and 1"),
    (lambda d: d["features"].append("her2_signal"), "non-feature column"),
    (lambda d: d["classifier"]["trees"][0]["feature"].__setitem__(0, 999),
     "feature index out of range"),
    (lambda d: d["classifier"]["trees"][0]["left"].__setitem__(0, 0),
     "children must come after their parent"),
    (lambda d: d["classifier"]["trees"][1].pop("value"), "must have exactly the keys"),
    (lambda d: d["training"]["cartridges"][0].update(sha256="xyz"), "sha256"),
])
def test_a_malformed_model_file_is_refused_naming_the_problem(tmp_path, model_text, break_it,
                                                            message):
    content = json.loads(model_text)
    break_it(content)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        load_gate_model(path)


def test_nan_in_a_model_file_is_refused(tmp_path, model_text):
    (tmp_path / "intact.json").write_text(model_text)
    assert load_gate_model(tmp_path / "intact.json").threshold == 0.5
    text = json.dumps(json.loads(model_text)).replace('"threshold": 0.5', '"threshold": NaN')
    path = tmp_path / "nan.json"
    path.write_text(text)
    with pytest.raises(InputError, match="NaN is not allowed"):
        load_gate_model(path)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A tiny simulated lab that also counts CTCs whose nucleus is partly outside the CK,
    scored: three training cartridges and one held-out cartridge."""
    from ctcimg.simulate import simulate_cartridge

    root = tmp_path_factory.mktemp("lab")
    folders = []
    for i, (frames, seed) in enumerate([(14, 31), (14, 32), (14, 33), (10, 34)]):
        sim = simulate_cartridge(root / "images", f"LAB{i}.1.1", n_frames=frames, n_ctc=30,
                                 seed=seed, frame_shape=(400, 560), decoys=24.0,
                                 leukocytes_per_frame=(10, 20), reviewer="partial_nucleus")
        result = score_cartridge(sim.path, thumbnails=False)
        folders.append(result.to_dir(root / "results" / sim.id))
    return root, folders


def test_model_beats_the_rule_gate_on_a_held_out_cartridge_of_the_lab(lab, tmp_path):
    root, folders = lab
    report = train_gate_model(folders[:3])
    model_agreement, rule_agreement, _ = evaluate_gate_model(report.model,
                                                             read_labelled(folders[3:]))
    assert rule_agreement.kappa < 0.9  # the lab counts what the gate calls nucleus_outside
    assert model_agreement.kappa > rule_agreement.kappa + 0.05
    assert model_agreement.accuracy > rule_agreement.accuracy
    assert model_agreement.precision > 0.95  # the misses are cells the hard rules reject


def test_scoring_with_a_model_applies_hard_rules_first(lab, tmp_path):
    root, folders = lab
    model = train_gate_model(folders[:3]).model
    path = model.save(tmp_path / "gate-model.json")
    cartridge = root / "images" / folders[3].name
    plain = score_cartridge(cartridge, thumbnails=False)
    learned = score_cartridge(cartridge, thumbnails=True, gate_model=path)
    events, before = learned.events, plain.events
    hard = before["reject_reason"].isin(HARD_RULES)
    assert (events["reject_reason"][hard] == before["reject_reason"][hard]).all()
    assert events["ctc_probability"][hard].isna().all()
    decided = events[~hard]
    assert decided["ctc_probability"].between(0, 1).all()
    assert (decided["is_ctc"] == (decided["ctc_probability"] >= 0.5)).all()
    assert set(decided["reject_reason"]) <= {"", "classifier"}
    assert before["ctc_probability"].isna().all()
    assert learned.info["gate_model"]["sha256"] == load_gate_model(path).sha256
    assert learned.config.gate_model == os.path.abspath(path)
    assert plain.info["gate_model"] is None and plain.config.gate_model is None
    assert "classifier" in REJECT_REASONS
    assert learned.summary()["reject_counts"]["classifier"] == int(
        (events["reject_reason"] == "classifier").sum())
    assert set(learned.thumbnail_events) >= set(events.loc[events["is_ctc"], "event_id"])

    from html import escape

    from ctcimg.report.data import load_result
    from ctcimg.report.html import build_payload, write_report

    folder = learned.to_dir(tmp_path / "result")
    payload = build_payload(load_result(folder))
    at = payload["fields"].index("probability")
    assert all(0 <= row[at] <= 1 for row in payload["ctcs"])
    shown = {row[0]: row[at] for row in payload["rejected"].get("classifier", [])}
    assert shown, "the classifier's rejections form a group of their own"
    probability = events.set_index("event_id")["ctc_probability"]
    assert all(abs(p - probability[i]) < 1e-3 for i, p in shown.items())
    description = escape(REJECT_REASONS["classifier"].split(" (")[0])
    assert description in write_report(folder).read_text()


def test_batch_rescores_when_the_model_changes(lab, tmp_path):
    from ctcimg.batch import batch_score

    root, folders = lab
    model = train_gate_model(folders[:3]).model
    path = model.save(tmp_path / "gate-model.json")
    cartridge = [root / "images" / folders[3].name]
    out = tmp_path / "results"
    first = list(batch_score(cartridge, out, workers=0, thumbnails=False, gate_model=path))
    again = list(batch_score(cartridge, out, workers=0, thumbnails=False, gate_model=path))
    other = train_gate_model(folders[:2]).model
    assert other.sha256 != model.sha256
    other.save(path)  # same path, another model: judged by its checksum
    changed = list(batch_score(cartridge, out, workers=0, thumbnails=False, gate_model=path))
    plain = list(batch_score(cartridge, out, workers=0, thumbnails=False))
    assert first[0].ok and not first[0].skipped
    assert again[0].skipped
    assert not changed[0].skipped and changed[0].summary["gate_model"]["sha256"] == other.sha256
    assert not plain[0].skipped
    assert first[0].summary["gate_model"]["sha256"] == model.sha256


def test_summary_reports_ctcimg_vs_operator_on_presented_events(lab):
    root, folders = lab
    summary = json.loads((folders[0] / "summary.json").read_text())
    events = pd.read_csv(folders[0] / "events.csv", dtype={"reviewer_assigned": str})
    labels = events["reviewer_assigned"].fillna("")
    presented = labels != ""
    versus = summary["reviewer"]["vs_operator"]
    assert summary["reviewer"]["presented_matched"] == int(presented.sum()) > 20
    assert versus["tp"] == int(((labels == "true") & events["is_ctc"]).sum())
    assert versus["fp"] == int(((labels == "false") & events["is_ctc"]).sum())
    assert 0 < versus["sensitivity"] <= 1 and versus["kappa"] is not None


def test_cli_train_and_score_with_the_model(lab, tmp_path):
    root, folders = lab
    model_path = tmp_path / "gate-model.json"
    done = subprocess.run([sys.executable, "-m", "ctcimg", "train", *map(str, folders[:3]),
                           "-o", str(model_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Cohen's kappa" in done.stdout and model_path.exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = subprocess.run([sys.executable, "-m", "ctcimg", "score",
                           str(root / "images" / folders[3].name), "-o", str(tmp_path / "r"),
                           "--gate-model", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "malformed gate model" in done.stderr
    assert not (tmp_path / "r").exists()
    done = subprocess.run([sys.executable, "-m", "ctcimg", "train", str(folders[0]),
                           "-o", str(tmp_path / "m.json"), "--label", "no_such_column"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no label column (no_such_column)" in done.stderr


# --------------------------------------------------------------------------- simulated labs


def test_a_simulated_lab_labels_every_presented_candidate_by_its_definition(tmp_path):
    from ctcimg.io.cellsearch import read_cartridge
    from ctcimg.simulate import PRESENTED_KINDS, render_frame, simulate_cartridge

    sim = simulate_cartridge(tmp_path, n_frames=4, n_ctc=30, seed=8, frame_shape=(300, 400),
                             decoys=6.0, reviewer="no_small")
    objects = pd.read_csv(sim.truth / "objects.csv")
    meta = json.loads((sim.truth / "cartridge.json").read_text())
    presented = objects[objects["kind"].isin(PRESENTED_KINDS)]
    on_band = {o.object_id for f in range(1, 5) for o in render_frame(sim.spec, f)[1]
               if o.beyond_edge_band_px <= o.diameter_um / 2 / 0.64}
    expected = ((presented["kind"] == "ctc") & (presented["diameter_um"] >= 9.0)
                & ~presented["object_id"].isin(on_band))
    assert presented["object_id"].isin(on_band).any()  # the lab never counts those
    assert (presented["reviewer_assigned"] == expected.astype(int)).all()
    assert 0 < expected.sum() < (presented["kind"] == "ctc").sum()  # some CTCs are small
    events = read_cartridge(sim.path).reviewer_events
    assert len(events) == len(presented)
    assert sum(e.assigned for e in events) == int(expected.sum())
    assert meta["reviewer"]["name"] == "no_small" and meta["reviewer_noise"] == []
    with pytest.raises(ValueError, match="unknown reviewer"):
        simulate_cartridge(tmp_path, n_frames=1, n_ctc=0, reviewer="lenient")


def test_scoring_refuses_a_model_whose_features_this_engine_does_not_measure(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(9)
    X = rng.normal(size=(100, 2))
    fitted = HistGradientBoostingClassifier(max_iter=5).fit(X, X[:, 0] > 0)
    info = {"ctcimg_version": "9.9", "label_source": "reviewer_assigned",
            "training": {"n_events": 100, "n_ctc": 50, "n_cartridges": 1,
                         "cartridges": [{"name": "X.1.1", "sha256": "0" * 64,
                                         "n_labelled": 100}]},
            "cross_validation": {}, "important_features": []}
    model = _from_sklearn(fitted, ["diameter_um", "cd45_membrane_v9"], 0.5, info)
    path = model.save(tmp_path / "old-model.json")
    with pytest.raises(InputError, match="cd45_membrane_v9.*retrain"):
        score_cartridge(tmp_path / "never-read", gate_model=path)
