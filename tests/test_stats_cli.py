"""'ctcimg stats' and the loaders: clear errors on bad input, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcimg.cli import main
from ctcimg.errors import InputError
from ctcimg.stats import load_cohort, simulate_clinical

CALLS = ("call_liu", "call_pestrin", "call_riethdorf")


def _patients(n: int = 60, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    calls = rng.choice(["positive", "negative", "not_evaluable"], n, p=[0.35, 0.5, 0.15])
    status = np.array(["ok"] * n, dtype=object)
    status[[3, 17]] = "failed"
    df = pd.DataFrame({
        "cartridge_id": [f"0114{i:04d}.1.1" for i in range(n)], "path": "/data/x",
        "status": status, "error": "",
        "ctc_count": np.where(calls == "not_evaluable", 0, rng.integers(1, 20, n)),
        "her2_0": 1, "her2_1+": 1, "her2_2+": 1, "her2_3+": 1,
        "pct_0": 25.0, "pct_1+": 25.0, "pct_2+": 25.0, "pct_3+": 25.0,
    })
    for c in CALLS:
        df[c] = calls
    df.loc[df.status == "failed", list(CALLS)] = ""
    df.loc[df.status == "failed", "error"] = "TiffError: truncated"
    return df


@pytest.fixture()
def files(tmp_path) -> tuple[Path, Path, pd.DataFrame]:
    pats = _patients()
    clin = simulate_clinical(pats, seed=5)
    p, c = tmp_path / "patients.csv", tmp_path / "clinical.csv"
    pats.to_csv(p, index=False)
    clin.to_csv(c, index=False)
    return p, c, clin


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["stats", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_written(files, tmp_path, capsys) -> None:
    p, c, _ = files
    out = tmp_path / "rep"
    code, stdout, err = _run(capsys, p, c, "-o", out, "--subgroup", "hormone_receptor",
                             "--subgroup", "interval_gt_1y")
    assert code == 0, err
    names = {f.name for f in out.iterdir()}
    assert {"report.md", "report.html", "km.png", "km.svg", "km_by_hormone_receptor.png",
            "km_by_interval_gt_1y.svg", "table1.csv", "cox.csv", "km_medians.csv"} <= names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html and "<script" not in html
    md = (out / "report.md").read_text()
    assert "2 cartridge failed" in md and "not evaluable" in md
    assert "CTC-HER2+ vs CTC-HER2-" in md and "Table 1" in md and "log-rank" in md
    # SAS's three default tests and the checks after the Cox fit
    assert "Test of Equality over Strata" in md
    assert all(f"| {name} |" in md for name in ("Log-Rank", "Wilcoxon", "-2Log(LR)"))
    assert "Proportional-hazards check" in md and "| GLOBAL |" in md
    assert "concordance 0." in md and "Newton-Raphson iterations" in md
    assert "excluded: 2 cartridge failed" in stdout
    t1 = pd.read_csv(out / "table1.csv")
    assert set(t1.variable) >= {"hormone_receptor", "age", "visceral_metastases"}
    assert t1.test.dropna().str.contains("chi-square|Fisher|Mann-Whitney").all()


def test_existing_report_dir_is_updated(files, tmp_path, capsys) -> None:
    p, c, _ = files
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _run(capsys, p, c, "-o", out, "--covariates", "age")[0] == 0
    assert (out / "keep.txt").read_text() == "mine" and (out / "report.html").exists()


def _bad_case(files, tmp_path, capsys, mutate, expect: list[str], target: str = "clinical"):
    p, c, clin = files
    if target == "clinical":
        mutate(c, clin)
    else:
        mutate(p, None)
    out = tmp_path / "rep"
    code, stdout, err = _run(capsys, p, c, "-o", out)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("ctcimg stats: error: ")
    for word in expect:
        assert word in err, err
    assert not out.exists()
    assert not list(tmp_path.glob(".rep*"))


def test_unmatched_ids(files, tmp_path, capsys) -> None:
    def drop(c, clin):
        clin.drop(index=[5, 9]).to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, drop,
              ["patients.csv", "01140005.1.1", "01140009.1.1", "rows 6, 10"])


def test_unknown_clinical_id(files, tmp_path, capsys) -> None:
    def extra(c, clin):
        pd.concat([clin, clin.iloc[[0]].assign(patient_id="ghost")]).to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, extra, ["clinical.csv", "ghost", "row 61"])


def test_missing_values(files, tmp_path, capsys) -> None:
    def blank(c, clin):
        clin.loc[2, "pfs_months"] = np.nan
        clin.loc[7, "age"] = np.nan
        clin.to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, blank,
              ["clinical.csv", "missing values", "'pfs_months'", "'age'", "rows 3, 8"])


def test_negative_times(files, tmp_path, capsys) -> None:
    def neg(c, clin):
        clin.loc[4, "pfs_months"] = -1.5
        clin.to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, neg, ["clinical.csv", "negative", "row 5"])


def test_event_not_binary(files, tmp_path, capsys) -> None:
    def two(c, clin):
        clin.loc[[0, 11], "progressed"] = 2
        clin.to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, two, ["clinical.csv", "0 (censored) or 1", "rows 1, 12"])


def test_bad_csv(files, tmp_path, capsys) -> None:
    def garbage(c, clin):
        c.write_text('patient_id,pfs_months,progressed\n"a,1,1\nb,2,0,7,7\n')
    _bad_case(files, tmp_path, capsys, garbage, ["clinical.csv", "cannot read as CSV"])


def test_binary_file(files, tmp_path, capsys) -> None:
    def binary(c, clin):
        c.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    _bad_case(files, tmp_path, capsys, binary, ["clinical.csv", "cannot read as CSV"])


def test_missing_column(files, tmp_path, capsys) -> None:
    def nocol(c, clin):
        clin.drop(columns=["progressed"]).to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, nocol, ["clinical.csv", "missing column", "'progressed'"])


def test_bad_patients_table(files, tmp_path, capsys) -> None:
    def bad_call(p, _):
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        df.loc[1, "call_liu"] = "maybe"
        df.to_csv(p, index=False)
    _bad_case(files, tmp_path, capsys, bad_call, ["patients.csv", "call_liu", "row 2"],
              target="patients")


def test_missing_file(files, tmp_path, capsys) -> None:
    p, _, _ = files
    code, _, err = _run(capsys, p, tmp_path / "nope.csv", "-o", tmp_path / "rep")
    assert code == 2 and "nope.csv" in err and "not found" in err
    assert not (tmp_path / "rep").exists()


def test_explicit_exclusions_are_reported(files, tmp_path, capsys) -> None:
    p, c, clin = files
    clin.loc[2, "pfs_months"] = np.nan
    clin.drop(index=[9]).to_csv(c, index=False)
    out = tmp_path / "rep"
    code, stdout, err = _run(capsys, p, c, "-o", out, "--exclude-missing",
                             "--exclude-unmatched")
    assert code == 0, err
    md = (out / "report.md").read_text()
    assert "missing pfs_months" in md and "01140002.1.1" in md
    assert "no clinical data" in md and "01140009.1.1" in md


def test_load_cohort_api(files) -> None:
    p, c, _ = files
    cohort = load_cohort(p, c, covariates=["age"])
    pats = _patients()
    ok = (pats.status == "ok") & (pats.call_liu != "not_evaluable")
    assert len(cohort.data) == ok.sum()
    assert set(cohort.data.ctc_her2.astype(str)) == {"positive", "negative"}
    counts = cohort.exclusion_counts()
    assert counts["cartridge failed"] == 2
    assert counts["not evaluable (0 CTCs)"] == ((pats.status == "ok")
                                               & (pats.call_liu == "not_evaluable")).sum()
    with pytest.raises(InputError) as info:
        load_cohort(p, c, time="pfs_days")
    assert info.value.path == c


def test_subprocess_exit_code(files, tmp_path) -> None:
    p, c, clin = files
    clin.loc[0, "progressed"] = 3
    clin.to_csv(c, index=False)
    res = subprocess.run([sys.executable, "-m", "ctcimg.cli", "stats", str(p), str(c), "-o",
                          str(tmp_path / "rep")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "clinical.csv" in res.stderr
    assert not (tmp_path / "rep").exists()


def test_non_numeric_time(files, tmp_path, capsys) -> None:
    def text(c, clin):
        clin["pfs_months"] = clin["pfs_months"].astype(object)
        clin.loc[6, "pfs_months"] = "about 3"
        clin.to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, text, ["clinical.csv", "must be a number", "row 7"])


def test_duplicate_ids(files, tmp_path, capsys) -> None:
    def dup(c, clin):
        clin.loc[8, "patient_id"] = clin.loc[1, "patient_id"]
        clin.to_csv(c, index=False)
    _bad_case(files, tmp_path, capsys, dup, ["clinical.csv", "duplicate", "rows 2, 9"])
