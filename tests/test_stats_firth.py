"""Firth's penalised Cox model against an independent implementation written here.

The reference below shares nothing with ctcimg.stats.cox: the Breslow partial
likelihood and its information matrix are the textbook sums over an explicit
at-risk matrix (no derivative of the penalty is coded at all), the penalised
log-likelihood ``l + 1/2 log|I|`` is maximised by scipy.optimize (quasi-Newton, then
a derivative-free polish; Brent's method in one dimension), and the profile-
likelihood limits are found by brentq on the profile penalised likelihood, with
the other coefficients re-maximised by scipy at every trial value.

No SAS-printed PHREG FIRTH output with its data was found in public sources (the
SAS/STAT documentation's Example "Firth's Correction for Monotone Likelihood" uses
the Myeloma data of its Example 1, whose printed Firth table could not be
retrieved), and R coxphf is not packaged for this machine, so the check is against
this reference. The method followed is the one SAS documents for PHREG FIRTH
("Firth's Modification for Maximum Likelihood Estimation", SAS/STAT User's Guide,
PHREG details): modified score, iteration with the unpenalised information, and
covariance = inverse information at the penalised estimate.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy import stats as st

from ctcimg.stats import MonotoneLikelihoodWarning, cox, cox_table
from ctcimg.stats.cox import _FastLikelihood, _FirthLikelihood, design_matrix

DATA = Path(__file__).parent / "data" / "survival"
CRIT = float(st.chi2.ppf(0.95, 1))


def _breslow_loglik_and_information(time, event, x, b):
    """Breslow log partial likelihood and information from the textbook sums over
    an explicit event-time x patient at-risk matrix."""
    event_times = np.unique(time[event == 1])
    at_risk = (time[None, :] >= event_times[:, None]).astype(float)
    deaths = np.array([np.sum((time == t) & (event == 1)) for t in event_times])
    w = np.exp(x @ b)
    s0 = at_risk @ w
    s1 = at_risk @ (w[:, None] * x)
    s2 = np.einsum("kn,n,ni,nj->kij", at_risk, w, x, x)
    mean = s1 / s0[:, None]
    ll = float((x[event == 1] @ b).sum() - (deaths * np.log(s0)).sum())
    cov = s2 / s0[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return ll, np.einsum("k,kij->ij", deaths, cov)


def _penalised(time, event, x, b):
    ll, info = _breslow_loglik_and_information(time, event, x, b)
    sign, logdet = np.linalg.slogdet(info)
    return ll + 0.5 * logdet if sign > 0 else -np.inf


def _maximise(fun, start):
    if len(start) == 1:  # Brent's method on a bracket around the start
        res = optimize.minimize_scalar(lambda v: -fun(np.array([v])),
                                       bracket=(start[0] - 1, start[0] + 1),
                                       options={"xtol": 1e-12})
        return np.array([res.x]), -res.fun
    res = optimize.minimize(lambda v: -fun(v), start, method="BFGS", options={"gtol": 1e-9})
    res = optimize.minimize(lambda v: -fun(v), res.x, method="Nelder-Mead",
                            options={"xatol": 1e-11, "fatol": 1e-14, "maxfev": 3000})
    return res.x, -res.fun


def _reference_fit(time, event, x):
    bhat, lmax = _maximise(lambda b: _penalised(time, event, x, b), np.zeros(x.shape[1]))
    _, info = _breslow_loglik_and_information(time, event, x, bhat)
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    limits = []
    for j in range(x.shape[1]):
        others = [i for i in range(x.shape[1]) if i != j]

        def profile(v, j=j, others=others):
            def full(rest):
                b = np.empty(x.shape[1])
                b[j] = v
                b[others] = rest
                return _penalised(time, event, x, b)
            if not others:
                return full(np.empty(0))
            return _maximise(full, bhat[others])[1]

        def h(v):
            return 2 * (lmax - profile(v)) - CRIT

        lo = optimize.brentq(h, bhat[j] - 8 * se[j], bhat[j], xtol=1e-9)
        hi = optimize.brentq(h, bhat[j], bhat[j] + 8 * se[j], xtol=1e-9)
        limits.append((lo, hi))
    return bhat, se, np.array(limits), lmax


@pytest.fixture(scope="module")
def veteran_contrived() -> pd.DataFrame:
    """The veteran data with SAS's contrived monotone covariate (time <= 65 days):
    at every event time the patient who fails has the largest value in the risk set."""
    df = pd.read_csv(DATA / "veteran.csv")
    df["contrived"] = (df["time"] <= 65).astype(int)
    return df


def test_ordinary_fit_diverges_on_the_contrived_covariate(veteran_contrived) -> None:
    with pytest.warns(MonotoneLikelihoodWarning, match="contrived"):
        cox(veteran_contrived, "time", "status", ["karno", "contrived"])


def test_firth_matches_independent_maximisation_and_profile(veteran_contrived) -> None:
    df = veteran_contrived
    covs = ["karno", "contrived"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit = cox(df, "time", "status", covs, ties="breslow", ci="profile",
                  convergence="full", firth=True)
    assert fit.firth and fit.converged
    x, _ = design_matrix(df, covs)
    time, event = df.time.to_numpy(float), df.status.to_numpy(float)
    bhat, se, limits, lmax = _reference_fit(time, event, x)
    np.testing.assert_allclose(fit.params, bhat, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fit.table.se, se, rtol=1e-5)
    assert fit.loglik == pytest.approx(lmax, abs=1e-8)
    np.testing.assert_allclose(np.log(fit.table.hr_lower), limits[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.log(fit.table.hr_upper), limits[:, 1], rtol=1e-6, atol=1e-7)
    # the penalty keeps the contrived HR finite but large, its CI clear of 1
    row = fit.table.loc["contrived"]
    assert 10 < row.hr < 1e4 and row.hr_lower > 1


def test_firth_single_level_without_events() -> None:
    """A covariate level with no events (the study's sparse ILC row): finite HR."""
    rng = np.random.default_rng(11)
    n = 45
    df = pd.DataFrame({"t": np.round(rng.exponential(12, n), 1),
                       "e": (rng.random(n) < 0.75).astype(int),
                       "histology": rng.choice(["IDC", "ILC"], n, p=[0.85, 0.15])})
    df.loc[df.histology == "ILC", "e"] = 0
    with pytest.warns(MonotoneLikelihoodWarning, match="histology"):
        cox(df, "t", "e", ["histology"], reference={"histology": "IDC"})
    fit = cox(df, "t", "e", ["histology"], reference={"histology": "IDC"}, firth=True,
              convergence="full")
    x, _ = design_matrix(df, ["histology"], {"histology": "IDC"})
    bhat, se, limits, _ = _reference_fit(df.t.to_numpy(float), df.e.to_numpy(float), x)
    # 1e-6 relative: the precision of Brent's method at a maximum (about sqrt(eps))
    assert fit.params[0] == pytest.approx(bhat[0], rel=1e-6)
    assert fit.table.se.iloc[0] == pytest.approx(se[0], rel=1e-5)
    assert np.log(fit.table.hr_lower.iloc[0]) == pytest.approx(limits[0, 0], rel=1e-6)
    assert np.log(fit.table.hr_upper.iloc[0]) == pytest.approx(limits[0, 1], rel=1e-6)
    assert fit.table.hr.iloc[0] < 0.2  # no events among ILC: a low, finite hazard ratio


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_penalised_score_is_the_gradient(veteran_contrived, ties) -> None:
    df = veteran_contrived
    x, _ = design_matrix(df, ["karno", "contrived", "age"])
    base = _FastLikelihood(df.time.to_numpy(float), df.status.to_numpy(float), x, ties)
    lik = _FirthLikelihood(base)
    b = np.array([-0.03, 1.5, 0.01])
    h = 1e-6
    numeric = [(lik.loglike(b + h * e) - lik.loglike(b - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(lik.score(b), numeric, rtol=1e-6, atol=1e-6)
    # dI/db by differencing the information
    dnum = np.stack([(base.hessian(b - h * e) - base.hessian(b + h * e)) / (2 * h)
                     for e in np.eye(3)], axis=-1)
    np.testing.assert_allclose(base.information_derivative(b), dnum, rtol=1e-5, atol=1e-5)


def test_firth_is_close_to_the_mle_without_separation(veteran_contrived) -> None:
    """With 128 events the penalty moves a well-estimated coefficient very little."""
    ml = cox(veteran_contrived, "time", "status", ["karno"], convergence="full")
    fi = cox(veteran_contrived, "time", "status", ["karno"], convergence="full", firth=True)
    assert fi.params[0] != ml.params[0]
    assert fi.params[0] == pytest.approx(ml.params[0], rel=0.01)
    assert fi.table.se.iloc[0] == pytest.approx(ml.table.se.iloc[0], rel=0.01)


def test_cox_table_auto_firth_refits_only_monotone_models(veteran_contrived) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonotoneLikelihoodWarning)
        tab = cox_table(veteran_contrived, "time", "status", ["karno", "contrived"],
                        firth="auto")
    assert not tab.univariate["karno"].firth
    assert tab.univariate["contrived"].firth and tab.multivariate.firth
    assert np.isfinite(tab.table.loc["contrived", ["uni_upper", "multi_upper"]]).all()
    assert tab.firth_terms == ("contrived",)
