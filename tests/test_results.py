"""The result folder's schema: what to_dir writes, from_dir reads back, and what it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcimg.errors import InputError
from ctcimg.results import (
    RESULT_SCHEMA,
    SUMMARY_KEYS,
    THUMBNAIL_ARRAYS,
    CartridgeResult,
    event_dtypes,
)

FILES = ("events.csv", "summary.json", "thumbnails.npz")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A small simulated cartridge, scored and written to a result folder."""
    from ctcimg.score import score_cartridge
    from ctcimg.simulate import simulate_cartridge

    root = tmp_path_factory.mktemp("results")
    sim = simulate_cartridge(root / "in", "RES0001.1.1", n_frames=2, n_ctc=16, seed=5,
                             frame_shape=(518, 692), leukocytes_per_frame=(10, 20))
    result = score_cartridge(sim.path, rule="pestrin")
    return result, result.to_dir(root / "out")


def test_written_files_follow_the_schema(scored):
    result, folder = scored
    assert {n: v.dtype for n, v in result.columns.items()} == event_dtypes()
    summary = json.loads((folder / "summary.json").read_text())
    assert list(summary) == list(SUMMARY_KEYS)
    assert summary["result_schema"] == RESULT_SCHEMA
    with np.load(folder / "thumbnails.npz") as npz:
        assert sorted(npz.files) == sorted(THUMBNAIL_ARRAYS)
    header = (folder / "events.csv").read_text().splitlines()[0].split(",")
    assert header == list(event_dtypes())


def test_from_dir_reads_back_what_to_dir_wrote(scored, tmp_path):
    result, folder = scored
    back = CartridgeResult.from_dir(folder)
    assert result.ctc_count > 0
    assert back.ctc_count == result.ctc_count and back.her2_counts == result.her2_counts
    assert back.calls == result.calls and back.call() == result.call()
    assert back.config == result.config and back.rule.name == "pestrin"
    assert back.info == json.loads(json.dumps(result.info))
    assert {n: v.dtype for n, v in back.columns.items()} == event_dtypes()
    for name, values in result.columns.items():
        if values.dtype.kind == "f":  # events.csv keeps 6 significant digits
            np.testing.assert_allclose(back.columns[name], values, rtol=1e-5, equal_nan=True,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(back.columns[name], values, err_msg=name)
    pd.testing.assert_frame_equal(back.events[["event_id", "is_ctc", "her2_score"]],
                                  result.events[["event_id", "is_ctc", "her2_score"]])
    np.testing.assert_array_equal(back.thumbnails, result.thumbnails)
    np.testing.assert_array_equal(back.thumbnail_events, result.thumbnail_events)
    again = back.to_dir(tmp_path / "again")
    for name in FILES:
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name


def _damaged(folder: Path, tmp_path: Path, edit_summary=None) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    if edit_summary is not None:
        summary = json.loads((copy / "summary.json").read_text())
        edit_summary(summary)
        (copy / "summary.json").write_text(json.dumps(summary))
    return copy


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda s: s.update(result_schema=RESULT_SCHEMA + 1), "rescore the cartridge"),
    (lambda s: s.pop("result_schema"), "no result schema"),
    (lambda s: s.pop("reject_counts"), "missing key(s) reject_counts"),
    (lambda s: s["config"]["gate"].update(min_ck_mean="x"), "config: gate.min_ck_mean"),
])
def test_incompatible_or_damaged_summary_is_refused(scored, tmp_path, edit, needle):
    copy = _damaged(scored[1], tmp_path, edit)
    with pytest.raises(InputError, match="summary.json") as err:
        CartridgeResult.from_dir(copy)
    assert needle in str(err.value)


def test_old_engine_version_is_named_in_the_refusal(scored, tmp_path):
    def old(summary):
        summary.pop("result_schema")
        summary["engine"]["version"] = "0.0.9"

    with pytest.raises(InputError, match=r"written by ctcimg 0\.0\.9 with no result schema"):
        CartridgeResult.from_dir(_damaged(scored[1], tmp_path, old))


def test_missing_column_or_thumbnails_are_named(scored, tmp_path):
    copy = _damaged(scored[1], tmp_path)
    events = pd.read_csv(copy / "events.csv", keep_default_na=False)
    events.drop(columns=["her2_signal_referenced"]).to_csv(copy / "events.csv", index=False)
    with pytest.raises(InputError, match="missing column.*her2_signal_referenced"):
        CartridgeResult.from_dir(copy)
    scored[0].to_dir(copy)
    (copy / "thumbnails.npz").unlink()
    with pytest.raises(InputError, match="no thumbnails.npz although scored with thumbnails"):
        CartridgeResult.from_dir(copy)


def test_a_result_without_thumbnails_reads_back(scored, tmp_path):
    import dataclasses

    result = scored[0]
    plain = dataclasses.replace(result, config=dataclasses.replace(result.config,
                                                                   thumbnails=False),
                                thumbnails=None, thumbnail_events=None)
    back = CartridgeResult.from_dir(plain.to_dir(tmp_path / "plain"))
    assert back.thumbnails is None and back.config.thumbnails is False
    assert back.ctc_count == result.ctc_count
