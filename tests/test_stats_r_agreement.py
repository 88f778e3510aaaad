"""ctcimg.stats agrees with R ``survival`` (reference values: scripts/r/survival_reference.R).

The JSON files hold R's results and the CSV files the exact data R used, so these
tests need no R. Tolerance: 1e-6 relative (NA in R must be NaN here, Inf must be inf).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcimg.stats import cox, kaplan_meier, logrank, quantile_r

DATA = Path(__file__).parent / "data" / "survival"
DATASETS = ("lung", "veteran", "ovarian", "aml", "colon")
RTOL = 1e-6


def _num(values) -> np.ndarray:
    special = {"NA": np.nan, "NaN": np.nan, "Inf": np.inf, "-Inf": -np.inf}
    return np.array([special.get(v, v) if isinstance(v, str) else v
                     for v in np.atleast_1d(values)], dtype=float)


def assert_close(actual, expected, what: str) -> None:
    a = np.atleast_1d(np.asarray(actual, dtype=float))
    b = _num(expected)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs R {b.shape}"
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: NaN pattern")
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=f"{what}: Inf pattern")
    ok = np.isfinite(b)
    np.testing.assert_allclose(a[ok], b[ok], rtol=RTOL, atol=0, err_msg=what)


def _load(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((DATA / f"{name}.json").read_text())
    df = pd.read_csv(DATA / f"{name}.csv")
    for col, levels in ref["levels"].items():
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    return ref, df


def _cases(kind: str) -> list:
    out = []
    for name in DATASETS:
        ref = json.loads((DATA / f"{name}.json").read_text())
        out += [pytest.param(name, i, id=f"{name}-{i}") for i in range(len(ref[kind]))]
    return out


def _covs(c) -> list[str]:
    return [c] if isinstance(c, str) else list(c)


@pytest.mark.parametrize("name, i", _cases("cox"))
def test_cox_matches_coxph(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["cox"][i]
    fit = cox(df, ref["time"], ref["event"], _covs(r["covariates"]), ties=r["ties"],
              ci="profile", conventions="r")
    tab = fit.table
    what = f"{name} {r['ties']} {r['covariates']}"
    assert len(tab) == len(_num(r["coef"]))
    for col, key in [("coef", "coef"), ("se", "se"), ("hr", "hr"), ("p", "p"),
                     ("hr_lower", "profile_lower"), ("hr_upper", "profile_upper")]:
        assert_close(tab[col], r[key], f"{what}: {col}")
    assert_close([fit.loglik_null, fit.loglik], [r["loglik_null"], r["loglik"]],
                 f"{what}: loglik")
    for mine, key in [(fit.lr_test, "lr"), (fit.wald_test, "wald"), (fit.score_test, "score")]:
        assert mine.df == r[key]["df"]
        assert_close([mine.statistic, mine.pvalue], [r[key]["statistic"], r[key]["p"]],
                     f"{what}: {key} test")
    assert fit.n == r["n"] and fit.events == r["nevent"]
    wald = cox(df, ref["time"], ref["event"], _covs(r["covariates"]), ties=r["ties"], ci="wald",
               conventions="r")
    assert_close(wald.table["hr_lower"], r["wald_lower"], f"{what}: Wald lower")
    assert_close(wald.table["hr_upper"], r["wald_upper"], f"{what}: Wald upper")
    assert_close(wald.table["hr_lower"], r["confint_lower"], f"{what}: confint()")


@pytest.mark.parametrize("name, i", _cases("km"))
def test_kaplan_meier_matches_survfit(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["km"][i]
    km = kaplan_meier(df, ref["time"], ref["event"], r["group"], conf_type=r["conf_type"],
                      conventions="r")
    assert [str(c["group"]) for c in r["curves"]] == list(km.curves)
    for c in r["curves"]:
        curve = km.curves[str(c["group"])]
        t = curve.table
        what = f"{name} {r['group']} {r['conf_type']} {c['group']}"
        for col, key in [("time", "time"), ("n_risk", "n_risk"), ("n_event", "n_event"),
                         ("n_censor", "n_censor"), ("survival", "surv"),
                         ("se_log", "std_err"), ("lower", "lower"), ("upper", "upper")]:
            assert_close(t[col], c[key], f"{what}: {col}")
        # summary.survfit's std.err is on the survival scale: surv * survfit$std.err
        with np.errstate(invalid="ignore"):  # 0 * Inf where S reaches 0, NaN as in R
            r_se = _num(c["surv"]) * _num(c["std_err"])
        assert_close(t["se"], r_se, f"{what}: se")
        m = curve.median
        assert_close([m.time, m.lower, m.upper],
                     [c["median"], c["median_lower"], c["median_upper"]],
                     f"{what}: median (print.survfit)")
        q = quantile_r(curve, (0.25, 0.5, 0.75))
        assert_close([x.time for x in q], c["quantile"], f"{what}: quantile")
        assert_close([x.lower for x in q], c["quantile_lower"], f"{what}: quantile lower")
        assert_close([x.upper for x in q], c["quantile_upper"], f"{what}: quantile upper")


@pytest.mark.parametrize("name, i", _cases("logrank"))
def test_logrank_matches_survdiff(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["logrank"][i]
    res = logrank(df, ref["time"], ref["event"], r["group"])
    assert list(res.groups) == [str(g) for g in _num_or_str(r["groups"])]
    assert res.df == r["df"]
    what = f"{name} {r['group']}"
    assert_close(res.statistic, r["chisq"], f"{what}: chisq")
    assert_close(res.pvalue, r["p"], f"{what}: p")
    assert_close(res.observed, r["observed"], f"{what}: observed")
    assert_close(res.expected, r["expected"], f"{what}: expected")
    assert_close(np.ravel(res.variance), np.ravel(r["var"]), f"{what}: variance")


def _num_or_str(values) -> list:
    return [values] if isinstance(values, str) else list(values)


def test_reference_data_cover_the_required_cases() -> None:
    seen = {"ties": set(), "conf": set(), "datasets": set()}
    for name in DATASETS:
        ref, _ = _load(name)
        seen["datasets"].add(name)
        seen["ties"] |= {r["ties"] for r in ref["cox"]}
        seen["conf"] |= {r["conf_type"] for r in ref["km"]}
        assert ref["logrank"], name
    assert seen["ties"] == {"breslow", "efron"}
    assert seen["conf"] == {"log", "log-log", "plain"}
