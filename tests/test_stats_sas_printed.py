"""ctcimg.stats with conventions="sas" reproduces numbers SAS printed, at SAS's precision.

Every reference below was read off SAS output published by the CAMIS project
(PHUSE/PSI "Comparing Analysis Method Implementations in Software"), repository
github.com/PSIAIMS/CAMIS; the data are theirs too:

- WHAS500 (tests/data/survival/whas500.csv, from CAMIS data/whas500.sas7bdat;
  Worcester Heart Attack Study, 500 patients; time LENFOL in days, FSTAT 1 = died),
  printed outputs in images/survival/sas_cox.png, sas_logrank.png,
  sas_km_afib0.png, sas_km_afib1.png (page SAS/survival.qmd,
  https://psiaims.github.io/CAMIS/SAS/survival.html) and, for the weighted tests,
  the SAS column of Comp/r-sas weighted logrank.qmd.
- CAMIS lung_cancer.csv (tests/data/survival/camis_lung.csv: time, cnsr,
  trt01pn), RMST printed in images/rmst/rmstreg_output4.png (page SAS/rmst.qmd,
  https://psiaims.github.io/CAMIS/SAS/rmst.html).
- The 10-patient examples of Comp/r-sas_survival.qmd
  (https://psiaims.github.io/CAMIS/Comp/r-sas_survival.html), SAS column of
  images/survival/r_sas_special.png and r_sas_special_lst.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcimg.stats import cox, equality_tests, kaplan_meier, logrank, rmst

DATA = Path(__file__).parent / "data" / "survival"


@pytest.fixture(scope="module")
def whas() -> pd.DataFrame:
    d = pd.read_csv(DATA / "whas500.csv")
    d["lenfoly"] = (d.lenfol / 365.25).round(2)  # the CAMIS DATA step: years, 0.01
    return d


def printed(value: float, decimals: int) -> float:
    return round(float(value), decimals)


def test_phreg_class_afb(whas) -> None:
    # proc phreg; class afb; model lenfol*fstat(0) = afb / rl;  (sas_cox.png)
    # AFB 0: estimate -0.53899, SE 0.16544, chi-square 10.6143, P 0.0011,
    #        HR 0.583, 95% HR limits 0.422 0.807 (Wald: RL without =PL)
    d = whas.assign(afb=whas.afb.astype(str))
    fit = cox(d, "lenfol", "fstat", ["afb"], ci="wald")
    row = fit.table.loc["afb: 0 vs 1"]  # CLASS: the last level (1) is the reference
    assert printed(row.coef, 5) == -0.53899
    assert printed(row.se, 5) == 0.16544
    assert printed(row.z ** 2, 4) == 10.6143
    assert printed(row.p, 4) == 0.0011
    assert printed(row.hr, 3) == 0.583
    assert (printed(row.hr_lower, 3), printed(row.hr_upper, 3)) == (0.422, 0.807)
    assert fit.converged and fit.convergence == "gconv"


def test_phreg_reported_iterate_is_the_first_meeting_gconv(whas) -> None:
    # Independent replication of PHREG's stopping rule with a brute-force Breslow
    # partial likelihood (loops over event times; no code shared with ctcimg).
    d = whas.assign(afb=whas.afb.astype(str))
    t = d.lenfol.to_numpy(float)
    e = d.fstat.to_numpy(float)
    x = (d.afb == "0").to_numpy(float)

    def derivatives(b: float) -> tuple[float, float, float]:
        ll = g = info = 0.0
        for u in np.unique(t[e == 1]):
            risk = t >= u
            dead = (t == u) & (e == 1)
            w = np.exp(b * x[risk])
            s0, s1, s2 = w.sum(), (w * x[risk]).sum(), (w * x[risk] ** 2).sum()
            nd = dead.sum()
            ll += b * x[dead].sum() - nd * np.log(s0)
            g += x[dead].sum() - nd * s1 / s0
            info += nd * (s2 / s0 - (s1 / s0) ** 2)
        return ll, g, info

    b, iterations = 0.0, 0
    while True:
        ll, g, info = derivatives(b)
        if g * g / info / (abs(ll) + 1e-6) <= 1e-8:
            break
        b += g / info
        iterations += 1
    fit = cox(d, "lenfol", "fstat", ["afb"], ci="wald")
    assert fit.params[0] == pytest.approx(b, rel=1e-10)
    assert fit.iterations == iterations
    full = cox(d, "lenfol", "fstat", ["afb"], ci="wald", convergence="full")
    assert full.params[0] != fit.params[0]  # the reported iterate is not the limit
    assert full.params[0] == pytest.approx(fit.params[0], rel=1e-4)


def test_phreg_reports_beta_zero_when_the_start_already_meets_gconv() -> None:
    # SAS Communities, "the result depends on the convergence criteria" (2016): a
    # one-covariate PHREG printed an estimate of 0.0000 (with an SE) under the default
    # GCONV=1E-8 and 0.0217 under XCONV=1E-4: iteration 0, beta = 0, already satisfied
    # GCONV. Two groups with the same death times but one, half a day apart:
    times = np.arange(1, 1001, dtype=float)
    d = pd.DataFrame({"t": np.concatenate([times, times]), "e": 1,
                      "g": np.repeat([0, 1], 1000)})
    d.loc[1500, "t"] += 0.5
    sas = cox(d, "t", "e", ["g"], ci="wald")
    assert sas.params[0] == 0.0 and sas.iterations == 0
    assert sas.table.se.iloc[0] > 0  # an SE is still printed, from the information at 0
    full = cox(d, "t", "e", ["g"], ci="wald", convergence="full")
    assert full.params[0] != 0.0 and full.iterations > 0


def test_lifetest_test_of_equality_over_strata(whas) -> None:
    # proc lifetest; time lenfoly*fstat(0); strata afb;  (sas_logrank.png)
    tab = equality_tests(whas, "lenfoly", "fstat", "afb").set_index("Test")
    assert printed(tab.loc["Log-Rank", "Chi-Square"], 4) == 10.8943
    assert printed(tab.loc["Wilcoxon", "Chi-Square"], 4) == 8.2449
    assert printed(tab.loc["-2Log(LR)", "Chi-Square"], 4) == 11.4601
    assert [printed(p, 4) for p in tab["Pr > Chi-Square"]] == [0.0010, 0.0041, 0.0007]
    assert list(tab.DF) == [1, 1, 1]


@pytest.mark.parametrize("weights, rho, gamma, chisq, p", [
    ("peto", 0, 0, 9.8238, 0.0017),
    ("modified-peto", 0, 0, 9.7491, 0.0018),
    ("tarone", 0, 0, 9.4230, 0.0021),
    ("wilcoxon", 0, 0, 8.2593, 0.0041),
    ("fleming-harrington", 0.5, 0.5, 10.3122, 0.0013),
    ("fleming-harrington", 1, 1, 9.8019, 0.0017),
    ("fleming-harrington", 0, 1, 9.5455, 0.0020),
    ("fleming-harrington", 1, 0, 9.9, 0.0017),
    # images/weighted_log_rank/FH0.5,2.png prints 8.2428 (P 0.0041); the page's
    # comparison table quotes it as "8.32428", a transcription slip the image settles
    ("fleming-harrington", 0.5, 2, 8.2428, 0.0041),
])
def test_lifetest_weighted_tests(whas, weights, rho, gamma, chisq, p) -> None:
    # strata afb / test=peto | modpeto | taroneware | wilcoxon | fh(rho,gamma), on days
    r = logrank(whas, "lenfol", "fstat", "afb", weights=weights, rho=rho, gamma=gamma)
    decimals = len(str(chisq).split(".")[1])
    assert printed(r.statistic, decimals) == chisq
    assert printed(r.pvalue, 4) == p
    assert r.df == 1


@pytest.mark.parametrize("afb, landmarks, quartiles", [
    ("0", [(1, 0.7393, 0.0214), (3, 0.6416, 0.0245), (5, 0.5299, 0.0311)],
     [(0.75, 6.44, 6.44, None), (0.50, 5.91, 4.31, None), (0.25, 0.94, 0.51, 1.45)]),
    ("1", [(1, 0.6410, 0.0543), (3, 0.4548, 0.0599), (5, 0.3149, 0.0643)],
     [(0.75, 6.43, 4.24, None), (0.50, 2.37, 1.15, 3.77), (0.25, 0.26, 0.05, 0.90)]),
])
def test_lifetest_estimates_and_quartiles(whas, afb, landmarks, quartiles) -> None:
    # timelist=1 3 5 stderr (survival, standard error); quartile estimates with
    # LOGLOG 95% limits, "." printed as None here
    km = kaplan_meier(whas.assign(afb=whas.afb.astype(str)), "lenfoly", "fstat", "afb")
    curve = km.curves[afb]
    tab = curve.table
    for when, surv, se in landmarks:
        row = tab[tab.time <= when].iloc[-1]
        assert (printed(row.survival, 4), printed(row.se, 4)) == (surv, se)
    by_p = {q.p: q for q in curve.quantiles}
    for p, est, lower, upper in quartiles:
        q = by_p[p]  # SAS "Percent 75": the time S falls to 0.25, ctcimg p = 0.75
        assert printed(q.time, 2) == est and printed(q.lower, 2) == lower
        assert (np.isnan(q.upper) if upper is None else printed(q.upper, 2) == upper)


def _ten(last_status: int) -> pd.DataFrame:
    return pd.DataFrame({"time": [54, 75, 77, 84, 87, 92, 103, 105, 112, 118],
                         "status": [1, 1, 1, 1, 1, 0, 0, 0, 0, last_status]})


@pytest.mark.parametrize("afb, landmarks", [
    ("0", [(1, 0.739, 0.695, 0.779), (3, 0.642, 0.591, 0.687), (5, 0.530, 0.467, 0.589)]),
    ("1", [(1, 0.641, 0.524, 0.736), (3, 0.455, 0.335, 0.567), (5, 0.315, 0.195, 0.442)]),
])
def test_lifetest_pointwise_loglog_limits(whas, afb, landmarks) -> None:
    # SAS column of images/survival/r_sas_default.png (page Comp/r-sas_survival.qmd):
    # 1-, 3- and 5-year event-free rates with LIFETEST's default log-log 95% limits
    km = kaplan_meier(whas.assign(afb=whas.afb.astype(str)), "lenfoly", "fstat", "afb")
    tab = km.curves[afb].table
    for when, surv, lower, upper in landmarks:
        row = tab[tab.time <= when].iloc[-1]
        assert [printed(v, 3) for v in (row.survival, row.lower, row.upper)] == [
            surv, lower, upper]


def test_lifetest_quartile_on_a_final_plateau_is_ne() -> None:
    # r_sas_special.png, SAS: 25th 77 (54, NE); median NE (54, NE); 75th NE (87, NE)
    sas = kaplan_meier(_ten(0), "time", "status").curves["all"]
    q25, q50, q75 = sas.quantiles
    assert (q25.time, q25.lower, np.isnan(q25.upper)) == (77, 54, True)
    assert np.isnan(q50.time) and q50.lower == 54 and np.isnan(q50.upper)
    assert np.isnan(q75.time) and q75.lower == 87 and np.isnan(q75.upper)
    # R (same figure): median 102.5, the midpoint of the plateau to the last time
    r = kaplan_meier(_ten(0), "time", "status", conventions="r").curves["all"]
    from ctcimg.stats import quantile_r
    assert quantile_r(r, [0.5])[0].time == 102.5


def test_lifetest_last_event_plateau_midpoint_and_zero_survival() -> None:
    # r_sas_special_lst.png, SAS: median 102.5 (54, NE); 75th 118 (87, NE);
    # 120-day rate 0 (NE, NE), printed with standard error 0 where S = 0
    curve = kaplan_meier(_ten(1), "time", "status").curves["all"]
    _, q50, q75 = curve.quantiles
    assert (q50.time, q50.lower, np.isnan(q50.upper)) == (102.5, 54, True)
    assert (q75.time, q75.lower, np.isnan(q75.upper)) == (118, 87, True)
    last = curve.table.iloc[-1]
    assert last.survival == 0 and last.se == 0
    assert np.isnan(last.lower) and np.isnan(last.upper)
    r_last = kaplan_meier(_ten(1), "time", "status", conventions="r").curves["all"].table
    assert np.isnan(r_last.iloc[-1].se)  # R: 0 * Inf


def test_lifetest_rmst_camis_lung() -> None:
    # proc lifetest rmst(tau=350); time time*cnsr(1); strata trt01pn / diff=control('2')
    # (rmstreg_output4.png): 248.2156 (SE 9.2343), 272.9520 (11.9889);
    # difference -24.7364, SE 15.1330, chi-square 2.6719, P 0.1021
    d = pd.read_csv(DATA / "camis_lung.csv").assign(event=lambda x: 1 - x.cnsr)
    res = rmst(d, "time", "event", 350, group="trt01pn")
    assert [printed(v, 4) for v in res.table.rmst] == [248.2156, 272.9520]
    assert [printed(v, 4) for v in res.table.se] == [9.2343, 11.9889]
    diff = res.difference
    assert (printed(diff.estimate, 4), printed(diff.se, 4)) == (-24.7364, 15.1330)
    assert (printed(diff.statistic, 4), printed(diff.pvalue, 4)) == (2.6719, 0.1021)
