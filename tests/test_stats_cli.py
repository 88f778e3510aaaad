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
from ctcimg.stats import cox, load_cohort, logrank, simulate_clinical, table1

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
    # km_ctc, forest, km and the two subgroup panels
    assert html.count("data:image/png;base64,") == 5
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


def _all_patients(p: Path, c: Path) -> pd.DataFrame:
    """The all-patients analysis set rebuilt by hand from the two input files."""
    pats = pd.read_csv(p, dtype={"cartridge_id": str})
    clin = pd.read_csv(c, dtype={"patient_id": str})
    df = pats.loc[pats.status == "ok"].merge(clin, left_on="cartridge_id",
                                              right_on="patient_id")
    df["detected"] = np.where(df.ctc_count >= 1, "yes", "no")
    df["ge5"] = np.where(df.ctc_count >= 5, "yes", "no")
    return df


def test_all_patients_part(files, tmp_path, capsys) -> None:
    p, c, _ = files
    out = tmp_path / "rep"
    code, stdout, err = _run(capsys, p, c, "-o", out, "--covariates", "hormone_receptor",
                             "age", "--ctc-cutoffs", "1", "5")
    assert code == 0, err
    names = {f.name for f in out.iterdir()}
    assert {"table_s1.csv", "cox_ctc_cutoffs.csv", "km_ctc.png", "km_ctc.svg", "forest.png",
            "forest.svg"} <= names
    md = (out / "report.md").read_text()
    assert "## All patients" in md and "## CTC-HER2 (patients with CTCs)" in md
    assert md.index("## All patients") < md.index("Table 1.")
    ref = _all_patients(p, c)
    # Table S1: every analysable patient, 0-CTC ones included, in one of the two columns
    s1 = pd.read_csv(out / "table_s1.csv")
    hr = s1.loc[s1.variable == "hormone_receptor"]
    assert hr["detected n"].sum() == (ref.detected == "yes").sum()
    assert hr["none n"].sum() == (ref.detected == "no").sum() > 0
    expected = table1(ref.assign(ctc_detected=ref.detected), "ctc_detected",
                      ["hormone_receptor"], ["age"], groups=["yes", "no"])
    np.testing.assert_allclose(s1.p.dropna(), expected.p.dropna(), rtol=1e-12)
    # log-rank for CTC = 0 vs >= 1 over the same patients
    lr = logrank(ref, "pfs_months", "progressed", "detected")
    assert f"log-rank P = {lr.pvalue:.4g}" in stdout
    # one univariate Cox per cut-off, over all patients
    cut = pd.read_csv(out / "cox_ctc_cutoffs.csv")
    assert list(cut.term) == ["CTC count >= 1 vs < 1", "CTC count >= 5 vs < 5"]
    for term, col in zip(cut.term, ("detected", "ge5"), strict=True):
        fit = cox(ref, "pfs_months", "progressed", [col], reference={col: "no"})
        row = cut.set_index("term").loc[term]
        r = fit.table.iloc[0]
        assert row["HR (95% CI)"] == f"{r.hr:.3f} ({r.hr_lower:.3f}-{r.hr_upper:.3f})"
        n1 = int((ref[col] == "yes").sum())
        assert row["n/events"].startswith(f"{n1}/")
    # CTC count >= 5 from patients.csv is a covariate of the CTC-HER2 models
    tab = pd.read_csv(out / "cox.csv", index_col=0)
    assert "ctc_ge_5: yes vs no" in tab.index and "ctc_ge_1: yes vs no" not in tab.index
    det = ref.loc[ref.call_liu != "not_evaluable"].copy()
    det["ctc_her2"] = det.call_liu
    fit = cox(det, "pfs_months", "progressed",
              ["ctc_her2", "hormone_receptor", "age", "ge5"],
              reference={"ctc_her2": "negative", "ge5": "no"})
    np.testing.assert_allclose(tab.multi_hr.to_numpy(), fit.table.hr.to_numpy(), rtol=1e-10)
    assert "CTC count >= 5 vs < 5" in md


def test_no_cutoffs_and_no_ctc_count(files, tmp_path, capsys) -> None:
    p, c, _ = files
    out = tmp_path / "rep"
    code, _, err = _run(capsys, p, c, "-o", out, "--covariates", "age", "--ctc-cutoffs")
    assert code == 0, err
    assert not (out / "cox_ctc_cutoffs.csv").exists() and (out / "table_s1.csv").exists()
    assert "ctc_ge_" not in (out / "cox.csv").read_text()
    pd.read_csv(p).drop(columns=["ctc_count"]).to_csv(p, index=False)
    out2 = tmp_path / "rep2"
    code, _, err = _run(capsys, p, c, "-o", out2, "--covariates", "age")
    assert code == 0, err
    md = (out2 / "report.md").read_text()
    assert "All-patients part omitted: the patients table has no ctc_count column" in md
    assert not (out2 / "table_s1.csv").exists() and (out2 / "cox.csv").exists()


def test_bad_cutoff(files, tmp_path, capsys) -> None:
    p, c, _ = files
    code, _, err = _run(capsys, p, c, "-o", tmp_path / "rep", "--ctc-cutoffs", "0", "5")
    assert code == 2 and "cut-offs must be whole numbers >= 1" in err
    assert "Traceback" not in err and not (tmp_path / "rep").exists()


def test_ctc_count_disagreeing_with_call(files, tmp_path, capsys) -> None:
    pats = pd.read_csv(files[0], dtype=str, keep_default_na=False)
    row = int(np.flatnonzero((pats.status == "ok") & (pats.call_liu == "positive"))[0])

    def zero_with_call(p, _):
        pats.loc[row, "ctc_count"] = "0"
        pats.to_csv(p, index=False)
    _bad_case(files, tmp_path, capsys, zero_with_call,
              ["patients.csv", "not_evaluable exactly when ctc_count is 0", f"row {row + 1}"],
              target="patients")


def test_negative_ctc_count(files, tmp_path, capsys) -> None:
    def negative(p, _):
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        df.loc[4, "ctc_count"] = "-2"
        df.to_csv(p, index=False)
    _bad_case(files, tmp_path, capsys, negative,
              ["patients.csv", "ctc_count must be a whole number >= 0", "row 5"],
              target="patients")


def test_level_without_events_uses_firth(files, tmp_path, capsys) -> None:
    p, c, clin = files
    clin["histology"] = np.where(np.arange(len(clin)) % 12 == 0, "ILC", "IDC")
    clin.loc[clin.histology == "ILC", "progressed"] = 0
    clin.to_csv(c, index=False)
    out = tmp_path / "rep"
    code, _, err = _run(capsys, p, c, "-o", out, "--covariates", "histology", "age")
    assert code == 0, err
    md = (out / "report.md").read_text()
    assert "monotone likelihood" in md and "Firth's penalised partial likelihood" in md
    assert "| histology: IDC vs ILC (Firth) |" in md
    tab = pd.read_csv(out / "cox.csv", index_col=0)
    assert tab.loc["histology: IDC vs ILC", "firth"]
    assert not tab.loc["age", "firth"]
    assert np.isfinite(tab.loc["histology: IDC vs ILC", ["uni_upper", "multi_upper"]]).all()
    # matplotlib's SVG keeps each text as a comment beside its glyph paths
    svg = (out / "forest.svg").read_text()
    assert "<!-- histology: IDC vs ILC \u2020 -->" in svg and "<!-- age -->" in svg
