"""Tests of batch scoring: discovery, kill-and-resume, fault isolation, Dask, resume rules."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctcimg.batch import (
    BASE_COLUMNS,
    BUILTIN_CALL_COLUMNS,
    PATIENTS_FILE,
    batch_score,
    check_unique_ids,
    find_cartridges,
    write_patients_csv,
)
from ctcimg.cli import main
from ctcimg.errors import InputError
from ctcimg.simulate import simulate_cartridge

SHAPE = (256, 320)
IDS = ["BAT0001.1.1", "BAT0002.1.1", "BAT0003.1.1", "BAT0004.1.1", "BAT0005.1.1"]
RESULT_FILES = ("events.csv", "summary.json", "thumbnails.npz")


def _simulate(root: Path, ids, sub: dict | None = None) -> None:
    for i, cid in enumerate(ids):
        where = root / (sub or {}).get(cid, "")
        simulate_cartridge(where, cid, n_frames=2, n_ctc=3 + i, seed=100 + i, frame_shape=SHAPE,
                           her2_mix=(0.1, 0.2, 0.3, 0.4))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Five tiny cartridges, two of them one folder deeper, plus simulator truth/ folders."""
    root = tmp_path_factory.mktemp("archive")
    _simulate(root, IDS, sub={IDS[3]: "site_b", IDS[4]: "site_b"})
    return root


@pytest.fixture(scope="module")
def baseline(archive, tmp_path_factory) -> Path:
    """An uninterrupted local run of the whole archive."""
    out = tmp_path_factory.mktemp("baseline")
    assert main(["batch", str(archive), "-o", str(out), "--workers", "2"]) == 0
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _same_results(a: Path, b: Path) -> None:
    assert (a / PATIENTS_FILE).read_bytes() == (b / PATIENTS_FILE).read_bytes()
    for cid in IDS:
        for name in ("events.csv", "summary.json"):
            assert (a / cid / name).read_bytes() == (b / cid / name).read_bytes(), (cid, name)


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ctcimg.cli", "batch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# --------------------------------------------------------------------------- discovery


def test_find_cartridges_recurses_skips_truth_and_rejects_duplicate_ids(archive, tmp_path):
    found = find_cartridges(archive)
    assert [p.name for p in found] == sorted(IDS, key=lambda c: (c in IDS[3:], c))
    assert all("truth" not in p.parts[len(archive.parts):] for p in found)
    assert find_cartridges(archive / IDS[0]) == [archive / IDS[0]]  # a cartridge itself

    copy = tmp_path / "other_site" / IDS[0]
    shutil.copytree(archive / IDS[0], copy)
    with pytest.raises(InputError, match=f"duplicate cartridge id.*{IDS[0]}"):
        check_unique_ids([*found, copy])


def test_baseline_table_columns_and_counts(archive, baseline):
    header = (baseline / PATIENTS_FILE).read_text().splitlines()[0].split(",")
    assert header == BASE_COLUMNS + BUILTIN_CALL_COLUMNS
    rows = _rows(baseline / PATIENTS_FILE)
    assert [r["cartridge_id"] for r in rows] == IDS  # sorted by id, not by folder
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        counts = [int(row[f"her2_{b}"]) for b in ("0", "1+", "2+", "3+")]
        assert sum(counts) == int(row["ctc_count"])
        assert row["call_liu"] == ("not_evaluable" if row["ctc_count"] == "0" else row["call_liu"])
        assert row["call_liu"] in ("positive", "negative", "not_evaluable")
        assert Path(row["path"]).name == row["cartridge_id"]
        for name in RESULT_FILES:
            assert (baseline / row["cartridge_id"] / name).is_file()
    assert sum(int(r["ctc_count"]) for r in rows) > 0
    assert {r["call_riethdorf"] for r in rows} >= {"positive"}


# --------------------------------------------------------------------------- kill and resume


def test_killed_batch_resumes_each_cartridge_done_once_identical(archive, baseline, tmp_path):
    out = tmp_path / "results"
    proc = _cli(str(archive), "-o", str(out), "--workers", "1", start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("*/summary.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no result appeared"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # workers notice their parent is gone
    finished = {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns)
                for p in out.glob("*/summary.json")}
    assert 1 <= len(finished) < len(IDS)
    assert not (out / PATIENTS_FILE).exists()

    outcomes = list(batch_score(archive, out, workers=2))
    write_patients_csv(outcomes, out / PATIENTS_FILE)
    assert sorted(o.cartridge_id for o in outcomes) == IDS
    assert all(o.ok for o in outcomes)
    assert {o.cartridge_id for o in outcomes if o.skipped} == set(finished)
    for cid, stamp in finished.items():  # kept, not rewritten
        summary = out / cid / "summary.json"
        assert (summary.stat().st_ino, summary.stat().st_mtime_ns) == stamp
    _same_results(out, baseline)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- fault isolation


def test_corrupt_cartridge_fails_alone_without_traceback(tmp_path):
    root = tmp_path / "archive"
    _simulate(root, ["C1.1.1", "C2.1.1", "C3.1.1"])
    bad = root / "C2.1.1" / "processed" / "C2.1.1_002.tif"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    out = tmp_path / "results"
    proc = _cli(str(root), "-o", str(out), "--workers", "2")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert "tifffile" not in stderr  # no library log lines beside our one-line error
    assert "C2.1.1_002.tif" in stderr and "1 cartridge(s) failed" in stderr
    rows = {r["cartridge_id"]: r for r in _rows(out / PATIENTS_FILE)}
    assert [rows[c]["status"] for c in ("C1.1.1", "C2.1.1", "C3.1.1")] == ["ok", "failed", "ok"]
    assert "TiffError" in rows["C2.1.1"]["error"] and "C2.1.1_002.tif" in rows["C2.1.1"]["error"]
    assert rows["C2.1.1"]["ctc_count"] == "" and rows["C2.1.1"]["call_liu"] == ""
    assert int(rows["C3.1.1"]["ctc_count"]) > 0
    assert "Traceback" in (out / "C2.1.1" / "error.txt").read_text()
    assert not (out / "C2.1.1" / "summary.json").exists()
    assert (out / "C3.1.1" / "summary.json").is_file()

    bad.write_bytes(data)  # repaired: the rerun scores only the failed cartridge
    outcomes = {o.cartridge_id: o for o in batch_score(root, out, workers=0)}
    assert [outcomes[c].skipped for c in ("C1.1.1", "C2.1.1", "C3.1.1")] == [True, False, True]
    assert all(o.ok for o in outcomes.values())
    assert not (out / "C2.1.1" / "error.txt").exists()


def test_unexpected_exception_is_reported_with_type(tmp_path, archive):
    from ctcimg.batch import TaskOptions, score_task
    from ctcimg.config import ScoringConfig

    # an out_root that is a file: writing results raises a plain OSError, not a CtcimgError
    blocker = tmp_path / "file"
    blocker.write_text("x")
    options = TaskOptions(config=ScoringConfig())
    result = score_task(str(archive / IDS[0]), str(blocker), options)
    assert result["status"] == "failed" and result["summary"] is None
    assert result["error"].startswith(("NotADirectoryError", "FileExistsError"))


# --------------------------------------------------------------------------- Dask


def test_dask_local_cluster_gives_identical_results(archive, baseline, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=None) as cluster:
        code = main(["batch", str(archive), "-o", str(out),
                     "--scheduler", cluster.scheduler_address])
    assert code == 0
    _same_results(out, baseline)


# --------------------------------------------------------------------------- resume rules


def test_resume_skips_unchanged_and_redoes_changed_inputs_or_parameters(archive, tmp_path):
    from ctcimg.her2 import Her2Profile

    root = tmp_path / "archive"
    for cid in IDS[:2]:
        shutil.copytree(archive / cid, root / cid)
    out = tmp_path / "results"
    a, b = (root / cid / "processed" / f"{cid}_001.tif" for cid in IDS[:2])

    def run(**kw) -> dict[str, bool]:
        outcomes = list(batch_score(root, out, workers=0, **kw))  # the resume logic alone
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        return {o.cartridge_id: o.skipped for o in outcomes}

    assert run() == {IDS[0]: False, IDS[1]: False}
    assert run() == {IDS[0]: True, IDS[1]: True}

    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, content unchanged
    assert run(verify_checksums=True) == {IDS[0]: True, IDS[1]: True}
    assert run() == {IDS[0]: False, IDS[1]: True}  # size/mtime differ -> redone

    shutil.copyfile(b, a)  # a frame really changed, same size
    assert run(verify_checksums=True) == {IDS[0]: False, IDS[1]: True}

    assert run(rule="pestrin") == {IDS[0]: False, IDS[1]: False}
    assert run(rule="pestrin") == {IDS[0]: True, IDS[1]: True}
    profile = tmp_path / "profile.json"
    Her2Profile(edges=(10.0, 60.0, 200.0), name="lab").save(profile)
    assert run(rule="pestrin", her2_profile=profile) == {IDS[0]: False, IDS[1]: False}
    assert run(rule="pestrin", her2_profile=profile) == {IDS[0]: True, IDS[1]: True}

    import json

    summary = json.loads((out / IDS[0] / "summary.json").read_text())
    assert summary["rule"] == "pestrin"
    assert summary["config"]["her2_profile"]["edges"] == [10.0, 60.0, 200.0]


def test_resume_compares_the_whole_config(archive, tmp_path):
    from ctcimg.config import ScoringConfig
    from ctcimg.gate import GateParams
    from ctcimg.segment import SegmentParams

    root = tmp_path / "archive"
    shutil.copytree(archive / IDS[0], root / IDS[0])
    out = tmp_path / "results"

    def skipped(**kw) -> bool:
        (outcome,) = batch_score(root, out, workers=0, **kw)
        assert outcome.ok, outcome.error
        return outcome.skipped

    assert not skipped()
    lab = tmp_path / "lab.toml"
    lab.write_text("[gate]\nmax_diameter_um = 30.0\n")
    assert not skipped(config=lab)  # a gate threshold changed
    assert skipped(config=ScoringConfig(gate=GateParams(max_diameter_um=30.0)))
    # a segmentation parameter changed: not up to date, though the gate is the same
    assert not skipped(config=ScoringConfig(gate=GateParams(max_diameter_um=30.0),
                                            segment=SegmentParams(ring_px=4)))
    assert skipped(config=ScoringConfig(gate=GateParams(max_diameter_um=30.0),
                                        segment=SegmentParams(ring_px=4)))
    summary = json.loads((out / IDS[0] / "summary.json").read_text())
    assert summary["config"]["segment"]["ring_px"] == 4
    # the CLI composes --config with an explicit option; the result's summary is a config
    assert main(["batch", str(root), "-o", str(out), "--workers", "0", "--config",
                 str(out / IDS[0] / "summary.json")]) == 0
    assert _rows(out / PATIENTS_FILE)[0]["status"] == "ok"
    assert skipped(config=out / IDS[0] / "summary.json")
    assert not skipped(config=out / IDS[0] / "summary.json", rule="riethdorf")


def test_custom_rule_gets_its_own_column(archive, baseline, tmp_path):
    from ctcimg.batch import patients_table

    outcomes = list(batch_score([archive / IDS[0]], tmp_path, workers=0,
                                rule="strict: 3+ count >= 2"))
    table = patients_table(outcomes, rule="strict: 3+ count >= 2")
    assert list(table.columns)[-1] == "call_strict"
    row = table.iloc[0]
    expected = ("not_evaluable" if row["ctc_count"] == 0 else
                "positive" if row["her2_3+"] >= 2 else "negative")
    assert row["call_strict"] == expected


def test_report_option_writes_each_report(archive, tmp_path):
    pytest.importorskip("ctcimg.report")
    with pytest.raises(InputError, match="thumbnails"):
        batch_score([archive / IDS[0]], tmp_path, report=True, thumbnails=False)
    outcomes = list(batch_score([archive / IDS[0]], tmp_path, workers=0, report=True))
    assert outcomes[0].ok, outcomes[0].error
    assert (tmp_path / IDS[0] / "report.html").stat().st_size > 0


def test_failed_report_keeps_the_scored_result(archive, tmp_path, monkeypatch):
    import ctcimg.batch

    def broken(out):
        raise ValueError("no browser")

    monkeypatch.setattr(ctcimg.batch, "_write_report", broken)
    [outcome] = batch_score([archive / IDS[0]], tmp_path, workers=0, report=True)
    assert outcome.status == "failed" and outcome.error == "ValueError: no browser"
    assert (tmp_path / IDS[0] / "summary.json").is_file()  # the scoring itself stands
    assert "no browser" in (tmp_path / IDS[0] / "error.txt").read_text()
