"""Kaplan-Meier details: conventions, standard errors, quantile rules, log-rank input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctcimg.errors import InputError
from ctcimg.stats import confidence_band, kaplan_meier, logrank, quantile_r


def test_hand_computed_curve_and_greenwood() -> None:
    # times 1, 2, 2(censored), 3, 4: S = 4/5, 3/4 * 4/5 ... by hand
    df = pd.DataFrame({"t": [1, 2, 2, 3, 4], "e": [1, 1, 0, 1, 0]})
    tab = kaplan_meier(df, "t", "e", conf_type="log").curves["all"].table
    np.testing.assert_array_equal(tab.time, [1, 2, 3, 4])
    np.testing.assert_array_equal(tab.n_risk, [5, 4, 2, 1])
    np.testing.assert_array_equal(tab.n_censor, [0, 1, 0, 1])
    s = np.cumprod([4 / 5, 3 / 4, 1 / 2, 1])
    np.testing.assert_allclose(tab.survival, s)
    var_log = np.cumsum([1 / (5 * 4), 1 / (4 * 3), 1 / (2 * 1), 0])
    np.testing.assert_allclose(tab.se_log, np.sqrt(var_log))
    np.testing.assert_allclose(tab.se, s * np.sqrt(var_log))  # Greenwood, on the S scale
    z = st.norm.ppf(0.975)
    np.testing.assert_allclose(tab.lower, s * np.exp(-z * np.sqrt(var_log)))


def test_flat_stretch_at_half_gives_midpoint_median() -> None:
    df = pd.DataFrame({"t": [1, 2, 3, 4], "e": [1, 1, 1, 1]})  # S = .75, .5, .25, 0
    curve = kaplan_meier(df, "t", "e").curves["all"]
    assert curve.median.time == 2.5
    assert [q.time for q in curve.quantiles] == [1.5, 2.5, 3.5]  # R: 1.5 2.5 3.5
    assert quantile_r(curve, [0.5])[0].time == 2.5


def test_conventions_choose_the_band() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"t": rng.exponential(10, 40).round(1), "e": rng.random(40) < 0.8})
    df["e"] = df["e"].astype(int)
    sas = kaplan_meier(df, "t", "e")
    r = kaplan_meier(df, "t", "e", conventions="r")
    assert (sas.conf_type, r.conf_type) == ("log-log", "log")
    assert kaplan_meier(df, "t", "e", "e", conf_type="plain", conventions="r").conf_type == "plain"
    s = sas.curves["all"].table
    assert not np.allclose(s.lower, r.curves["all"].table.lower, equal_nan=True)
    ok = s.survival.between(0, 1, inclusive="neither")
    assert (s.lower[ok] <= s.survival[ok]).all() and (s.survival[ok] <= s.upper[ok]).all()
    assert "median" in str(sas) and list(sas.median.columns) == ["n", "events", "median",
                                                                 "lower", "upper"]
    assert list(sas.table.columns)[0] == "group"


def test_confidence_band_undefined_points() -> None:
    lo, hi = confidence_band(np.array([1.0, 0.5, 0.0]), np.array([0.0, 0.2, np.inf]), "log-log")
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and np.isnan(lo[2])
    assert 0 < lo[1] < 0.5 < hi[1] < 1
    with pytest.raises(ValueError):
        confidence_band(np.array([0.5]), np.array([0.1]), "arcsine")


def test_logrank_two_groups_matches_manual_computation() -> None:
    df = pd.DataFrame({"t": [1, 2, 3, 4, 5, 6], "e": [1, 1, 1, 1, 0, 1],
                       "g": ["a", "b", "a", "b", "a", "b"]})
    res = logrank(df, "t", "e", "g")
    # event times 1..4 and 6, risk sets (a, b): (3,3), (2,3), (2,2), (1,2), (0,1)
    na = np.array([3, 2, 2, 1, 0])
    nb = np.array([3, 3, 2, 2, 1])
    da = np.array([1, 0, 1, 0, 0])
    n = na + nb
    exp_a = (na / n).sum()
    var = (na * nb / n**2 * (n - 1) / np.maximum(n - 1, 1)).sum()
    assert res.expected[0] == pytest.approx(exp_a)
    assert res.statistic == pytest.approx((da.sum() - exp_a) ** 2 / var)
    assert res.df == 1 and res.pvalue == pytest.approx(st.chi2.sf(res.statistic, 1))


def test_bad_input() -> None:
    df = pd.DataFrame({"t": [1.0, -2.0], "e": [1, 0], "g": ["a", "b"]})
    with pytest.raises(InputError, match="non-negative"):
        kaplan_meier(df, "t", "e")
    with pytest.raises(InputError, match="0 or 1"):
        kaplan_meier(df.assign(t=[1, 2], e=[1, 2]), "t", "e")
    with pytest.raises(InputError, match="two groups"):
        logrank(df.assign(t=[1, 2], g="a"), "t", "e", "g")
