"""cox_zph, concordance, weighted log-rank and RMST agree with R ``survival``.

Reference values: scripts/r/survival_checks_reference.R (cox.zph, concordance(),
survdiff(rho=), summary(survfit, rmean=)) stored in tests/data/survival/*_checks.json;
no R is needed at test time. Tolerance 1e-6 relative. Weights that R survival has
no function for (Gehan, Tarone-Ware, Peto, modified Peto, Fleming-Harrington with
gamma > 0) are checked against SAS-printed values in test_stats_sas_printed.py and,
for k groups, against the brute-force implementation at the end of this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctcimg.stats import cox, cox_zph, logrank, rmst

DATA = Path(__file__).parent / "data" / "survival"
RTOL = 1e-6
LEVELS = {
    "lung": {"sex": ["male", "female"]},
    "veteran": {"trt": ["standard", "test"],
                "celltype": ["squamous", "smallcell", "adeno", "large"]},
    "colon": {"rx": ["Obs", "Lev", "Lev+5FU"]},
}
DATASETS = ("lung", "veteran", "ovarian", "colon", "whas500", "camis_lung")


def _load(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((DATA / f"{name}_checks.json").read_text())
    df = pd.read_csv(DATA / f"{name}.csv")
    if name == "camis_lung":
        df["event"] = 1 - df.cnsr
    for col, levels in LEVELS.get(name, {}).items():
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    return ref, df


def _cases(kind: str) -> list:
    out = []
    for name in DATASETS:
        ref = json.loads((DATA / f"{name}_checks.json").read_text())
        out += [pytest.param(name, i, id=f"{name}-{i}") for i in range(len(ref[kind]))]
    return out


def _list(v) -> list:
    return [v] if isinstance(v, (str, int, float)) else list(v)


@pytest.mark.parametrize("name, i", _cases("zph"))
def test_cox_zph_matches_r(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["zph"][i]
    fit = cox(df, ref["time"], ref["event"], _list(r["covariates"]), ties=r["ties"],
              conventions="r")
    z = cox_zph(fit, r["transform"])
    assert list(z.table.index) == _list(r["terms"])
    np.testing.assert_allclose(z.table.chisq, _list(r["chisq"]), rtol=RTOL)
    np.testing.assert_array_equal(z.table.df, _list(r["df"]))
    np.testing.assert_allclose(z.table.p, _list(r["p"]), rtol=RTOL)


@pytest.mark.parametrize("name, i", _cases("concordance"))
def test_concordance_matches_r(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["concordance"][i]
    fit = cox(df, ref["time"], ref["event"], _list(r["covariates"]), ties=r["ties"],
              conventions="r")
    assert fit.concordance == pytest.approx(r["concordance"], rel=RTOL)
    from ctcimg.stats import concordance
    counts = concordance(fit.time, fit.status, fit.x @ fit.params)
    for key in ("concordant", "discordant", "tied_x"):
        assert counts[key] == pytest.approx(r[key], rel=RTOL), key


@pytest.mark.parametrize("name, i", _cases("survdiff"))
def test_fleming_harrington_rho_matches_survdiff(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["survdiff"][i]
    res = logrank(df, ref["time"], ref["event"], r["group"], weights="fleming-harrington",
                  rho=r["rho"])
    assert res.df == r["df"]
    assert res.statistic == pytest.approx(r["chisq"], rel=RTOL)
    assert res.pvalue == pytest.approx(r["p"], rel=RTOL)
    if r["rho"] == 0:  # survdiff's obs and exp are weighted when rho > 0
        np.testing.assert_allclose(res.observed, _list(r["observed"]), rtol=RTOL)
        np.testing.assert_allclose(res.expected, _list(r["expected"]), rtol=RTOL)
        plain = logrank(df, ref["time"], ref["event"], r["group"])
        assert plain.statistic == pytest.approx(r["chisq"], rel=RTOL)


@pytest.mark.parametrize("name, i", _cases("rmean"))
def test_rmst_matches_survfit_rmean(name: str, i: int) -> None:
    ref, df = _load(name)
    r = ref["rmean"][i]
    res = rmst(df, ref["time"], ref["event"], r["tau"], group=r["group"])
    assert list(res.table.group) == [str(g) for g in _list(r["groups"])]
    np.testing.assert_allclose(res.table.rmst, _list(r["rmean"]), rtol=RTOL)
    np.testing.assert_allclose(res.table.se, _list(r["se"]), rtol=RTOL)


def _brute_force_test(t, e, g, weight) -> float:
    """Weighted k-sample log-rank by the textbook formula, one event time at a time."""
    levels = sorted(set(g))
    k = len(levels)
    u = np.zeros(k)
    v = np.zeros((k, k))
    peto = 1.0
    km = 1.0
    for time in sorted(set(t[e == 1])):
        risk = t >= time
        n = risk.sum()
        d = ((t == time) & (e == 1)).sum()
        nj = np.array([(risk & (g == lv)).sum() for lv in levels], float)
        dj = np.array([((t == time) & (e == 1) & (g == lv)).sum() for lv in levels], float)
        peto *= 1 - d / (n + 1)
        w = weight(n, peto, km)
        km *= 1 - d / n
        u += w * (dj - nj * d / n)
        if n > 1:
            v += w * w * d * (n - d) / (n - 1) * (np.diag(nj / n) - np.outer(nj, nj) / n ** 2)
    return float(u[:-1] @ np.linalg.solve(v[:-1, :-1], u[:-1]))


@pytest.mark.parametrize("weights, rho, gamma, weight", [
    ("wilcoxon", 0, 0, lambda n, peto, km: n),
    ("tarone", 0, 0, lambda n, peto, km: np.sqrt(n)),
    ("peto", 0, 0, lambda n, peto, km: peto),
    ("modified-peto", 0, 0, lambda n, peto, km: peto * n / (n + 1)),
    ("fleming-harrington", 0.5, 2, lambda n, peto, km: km ** 0.5 * (1 - km) ** 2),
])
def test_weighted_tests_for_k_groups_equal_the_textbook_formula(weights, rho, gamma,
                                                                 weight) -> None:
    _, df = _load("veteran")
    res = logrank(df, "time", "status", "celltype", weights=weights, rho=rho, gamma=gamma)
    g = df.celltype.cat.codes.to_numpy()
    expected = _brute_force_test(df.time.to_numpy(float), df.status.to_numpy(float), g, weight)
    assert res.df == 3
    assert res.statistic == pytest.approx(expected, rel=1e-10)
    assert res.pvalue == pytest.approx(st.chi2.sf(expected, 3), rel=1e-10)


def test_exponential_likelihood_ratio_equals_two_fitted_models() -> None:
    # -2 Log(LR): twice the log-likelihood gain of group-specific exponential rates
    _, df = _load("veteran")
    res = logrank(df, "time", "status", "celltype", weights="lr")

    def loglik(t, e):  # exponential MLE rate d / T: l = d log(d / T) - d
        d, total = e.sum(), t.sum()
        return d * np.log(d / total) - d

    groups = [loglik(s.time.to_numpy(float), s.status.to_numpy(float))
              for _, s in df.groupby("celltype", observed=True)]
    pooled = loglik(df.time.to_numpy(float), df.status.to_numpy(float))
    assert res.statistic == pytest.approx(2 * (sum(groups) - pooled), rel=1e-12)
    assert res.df == 3


def test_rmst_bad_tau_and_bias_correction() -> None:
    _, df = _load("lung")
    from ctcimg.errors import InputError
    with pytest.raises(InputError, match="tau must be a positive time"):
        rmst(df, "time", "status", 0, group="sex")
    plain = rmst(df, "time", "status", 365)
    corrected = rmst(df, "time", "status", 365, bias_correction=True)
    d = int(df[(df.time <= 365)].status.sum())
    assert corrected.table.se[0] == pytest.approx(plain.table.se[0] * np.sqrt(d / (d - 1)))
    assert plain.difference is None
