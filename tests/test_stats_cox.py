"""Cox model behaviour beyond the R comparison: likelihood, labels, tables, printing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctcimg.errors import InputError
from ctcimg.stats import cox, cox_table
from ctcimg.stats.cox import _FastLikelihood, _Likelihood, design_matrix

DATA = Path(__file__).parent / "data" / "survival"


@pytest.fixture(scope="module")
def veteran() -> pd.DataFrame:
    df = pd.read_csv(DATA / "veteran.csv")
    df["celltype"] = pd.Categorical(df["celltype"],
                                    categories=["squamous", "smallcell", "adeno", "large"])
    return df


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_fast_likelihood_equals_statsmodels(veteran, ties) -> None:
    x, _ = design_matrix(veteran, ["trt", "celltype", "karno", "age"])
    t = veteran.time.to_numpy(float)
    e = veteran.status.to_numpy(float)
    ref, fast = _Likelihood(t, e, x, ties), _FastLikelihood(t, e, x, ties)
    for b in (np.zeros(x.shape[1]), np.linspace(-0.3, 0.2, x.shape[1]) / 10):
        assert fast.loglike(b) == pytest.approx(ref.loglike(b), rel=1e-12)
        np.testing.assert_allclose(fast.score(b), ref.score(b), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(fast.hessian(b), ref.hessian(b), rtol=1e-9)


def test_profile_limits_solve_the_likelihood_ratio_equation(veteran) -> None:
    fit = cox(veteran, "time", "status", ["karno", "celltype"], ties="breslow", ci="profile",
              conventions="r")
    x, _ = design_matrix(veteran, ["karno", "celltype"])
    lik = _Likelihood(veteran.time.to_numpy(float), veteran.status.to_numpy(float), x,
                      "breslow")
    crit = st.chi2.ppf(0.95, 1)
    for j in range(x.shape[1]):
        for col in ("hr_lower", "hr_upper"):
            b = np.log(fit.table[col].iloc[j])
            free = np.ones(x.shape[1], bool)
            free[j] = False
            start = fit.params.copy()
            start[j] = b
            _, ll, converged, _ = lik.maximize(start, free)
            assert converged
            assert 2 * (fit.loglik - ll) == pytest.approx(crit, abs=1e-7)
    # profile and Wald limits differ (asymmetric on the log scale)
    wald = cox(veteran, "time", "status", ["karno", "celltype"], ties="breslow", ci="wald",
               conventions="r")
    assert not np.allclose(fit.table.hr_lower, wald.table.hr_lower, rtol=1e-4)
    np.testing.assert_allclose(fit.table.coef, wald.table.coef)


def test_categorical_rows_and_reference(veteran) -> None:
    fit = cox(veteran, "time", "status", ["trt", "celltype"], ci="wald", conventions="r")
    assert list(fit.table.index) == [
        "trt: test vs standard", "celltype: smallcell vs squamous",
        "celltype: adeno vs squamous", "celltype: large vs squamous"]
    other = cox(veteran, "time", "status", ["celltype"], ci="wald", conventions="r",
                reference={"celltype": "large"})
    assert "celltype: squamous vs large" in other.table.index
    # SAS's CLASS default is the last level: the same rows as reference="large"
    sas = cox(veteran, "time", "status", ["celltype"], ci="wald")
    assert list(sas.table.index) == list(other.table.index)
    # changing the reference only reparametrises: same likelihood
    assert other.loglik == pytest.approx(
        cox(veteran, "time", "status", ["celltype"], ci="wald", conventions="r").loglik,
        rel=1e-12)
    for col in ("coef", "se", "hr", "hr_lower", "hr_upper", "p"):
        assert col in fit.table.columns


def test_conventions_presets(veteran) -> None:
    sas = cox(veteran, "time", "status", ["karno"])
    r = cox(veteran, "time", "status", ["karno"], conventions="r")
    assert (sas.ties, sas.ci) == ("breslow", "profile")
    assert (r.ties, r.ci) == ("efron", "wald")
    assert cox(veteran, "time", "status", ["karno"], conventions="r", ties="breslow").ties \
        == "breslow"


def test_summary_and_cox_table(veteran) -> None:
    tab = cox_table(veteran, "time", "status", ["trt", "karno"], ci="wald")
    uni = cox(veteran, "time", "status", ["karno"], ci="wald")
    assert tab.table.loc["karno", "uni_hr"] == pytest.approx(uni.table.loc["karno", "hr"])
    assert tab.table.loc["karno", "multi_hr"] == pytest.approx(
        tab.multivariate.table.loc["karno", "hr"])
    assert tab.table.loc["karno", "uni_hr"] != pytest.approx(tab.table.loc["karno", "multi_hr"])
    text = str(tab.multivariate)
    assert "n = 137, events = 128" in text and "Likelihood ratio test" in text
    assert "karno" in str(tab) and "multivariate" in str(tab)


def test_bad_input(veteran) -> None:
    bad = veteran.copy()
    bad.loc[3, "karno"] = np.nan
    with pytest.raises(InputError, match="rows 4"):
        cox(bad, "time", "status", ["karno"])
    with pytest.raises(InputError, match="missing column"):
        cox(veteran, "time", "status", ["nope"])
    with pytest.raises(InputError, match="no events"):
        cox(veteran.assign(status=0), "time", "status", ["karno"])


def test_monotone_likelihood_and_convergence_are_reported(veteran) -> None:
    from ctcimg.stats import ConvergenceWarning, MonotoneLikelihoodWarning
    # a level whose patients are all censored: its coefficient runs off to -inf
    df = veteran.assign(marker=np.where(veteran.index % 9 == 0, "rare", "common"))
    df.loc[df.marker == "rare", "status"] = 0
    with pytest.warns(MonotoneLikelihoodWarning, match="marker: rare vs common"):
        fit = cox(df, "time", "status", ["marker", "karno"], ci="wald", conventions="r")
    assert fit.table.loc["marker: rare vs common", "coef"] < -5
    assert issubclass(MonotoneLikelihoodWarning, RuntimeWarning)
    assert issubclass(ConvergenceWarning, RuntimeWarning)
    ok = cox(veteran, "time", "status", ["karno"])
    assert ok.converged and 0 < ok.iterations <= 25 and 0.5 < ok.concordance < 1
