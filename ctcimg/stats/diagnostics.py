"""Proportional-hazards check of a Cox fit: the Schoenfeld-residual score test (R cox.zph).

For a time transform g (``"km"``: 1 - S(t-) of the pooled Kaplan-Meier curve,
``"rank"``: the rank of t among all follow-up times, ``"identity"``: t), centred on
its mean over the events, the model is extended by the terms ``x * g(t)`` and their
coefficients are score-tested at (beta-hat, 0), as R ``survival`` 3.x ``cox.zph``:
``u_j = sum_deaths g_k (x_k - xbar_k)_j`` and the 2p x 2p information
``sum_k [[V_k, g_k V_k], [g_k V_k, g_k^2 V_k]]`` (V_k the weighted covariance of x in
the risk set; with Efron ties, one pseudo risk set per tied death). The test of a
term uses its own rows of u with all p model coefficients; the global test all terms.
A categorical covariate is one term (its dummy columns together, df = levels - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from ctcimg.stats.cox import CoxResult, _FastLikelihood

TRANSFORMS: tuple[str, ...] = ("km", "rank", "identity")


@dataclass(frozen=True, eq=False)
class ZphResult:
    """Proportional-hazards tests of a Cox model.

    Attributes
    ----------
    table
        One row per covariate plus ``GLOBAL``: ``chisq``, ``df``, ``p``.
    transform
        Time transform used.
    """

    table: pd.DataFrame
    transform: str

    def __str__(self) -> str:
        lines = [f"Proportional hazards (Schoenfeld residuals, {self.transform} time)",
                 f"{'':24} {'chisq':>9} {'df':>3} {'p':>8}"]
        for name, r in self.table.iterrows():
            lines.append(f"{name!s:24} {r.chisq:9.4f} {int(r.df):3d} {r.p:8.4f}")
        return "\n".join(lines)


def _time_transform(time: np.ndarray, status: np.ndarray, transform: str) -> np.ndarray:
    if transform == "identity":
        return time.copy()
    if transform == "rank":
        return st.rankdata(time)
    if transform == "km":
        times = np.unique(time)
        n_risk = len(time) - np.searchsorted(np.sort(time), times, side="left")
        deaths = np.array([((time == u) & (status == 1)).sum() for u in times])
        surv = np.cumprod(1.0 - deaths / n_risk)
        before = np.searchsorted(times, time, side="left")  # KM times strictly below t
        return 1.0 - np.concatenate([[1.0], surv])[before]
    raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}")


def cox_zph(fit: CoxResult, transform: str = "km") -> ZphResult:
    """Test the proportional-hazards assumption of a Cox fit, per covariate and globally.

    Parameters
    ----------
    fit
        A Cox model (:func:`ctcimg.stats.cox`); not a Firth fit.
    transform
        ``"km"`` (R's default), ``"rank"`` or ``"identity"``.

    Returns
    -------
    ZphResult
    """
    time, status, x = fit.time, fit.status, fit.x
    p = x.shape[1]
    g_all = _time_transform(time, status, transform)
    g_all = g_all - g_all[status == 1].mean()
    lik = _FastLikelihood(time, status, x, fit.ties)
    order = np.argsort(time, kind="stable")
    b = fit.params
    eta = lik.x @ b
    w = np.exp(eta - eta.max())

    def suffix(a: np.ndarray) -> np.ndarray:
        return np.cumsum(a[::-1], axis=0)[::-1][lik.start]

    s0, s1, s2 = suffix(w), suffix(w[:, None] * lik.x), suffix(w[:, None, None] * lik.xx)
    wd = w[lik.ev]
    t0 = np.bincount(lik.inv, weights=wd, minlength=lik.k)
    t1 = np.zeros((lik.k, p))
    np.add.at(t1, lik.inv, wd[:, None] * lik.x[lik.ev])
    t2 = np.zeros((lik.k, p, p))
    np.add.at(t2, lik.inv, wd[:, None, None] * lik.xx[lik.ev])
    f, k = lik.frac, lik.k_idx  # one row per death (pseudo risk set for Efron)
    a = s0[k] - f * t0[k]
    mean = (s1[k] - f[:, None] * t1[k]) / a[:, None]
    var = (s2[k] - f[:, None, None] * t2[k]) / a[:, None, None] \
        - mean[:, :, None] * mean[:, None, :]
    g = g_all[order][lik.ev]
    u = np.concatenate([np.zeros(p), (g[:, None] * (lik.x[lik.ev] - mean)).sum(axis=0)])
    v_sum = var.sum(axis=0)
    v_g = np.einsum("k,kij->ij", g, var)
    v_gg = np.einsum("k,kij->ij", g * g, var)
    imat = np.block([[v_sum, v_g], [v_g, v_gg]])
    rows = {}
    for covariate in dict.fromkeys(t.covariate for t in fit.terms):
        cols = [j for j, t in enumerate(fit.terms) if t.covariate == covariate]
        kk = np.r_[np.arange(p), np.array(cols) + p]
        stat = float(u[kk] @ np.linalg.solve(imat[np.ix_(kk, kk)], u[kk]))
        rows[covariate] = (stat, len(cols), float(st.chi2.sf(stat, len(cols))))
    stat = float(u @ np.linalg.solve(imat, u))
    rows["GLOBAL"] = (stat, p, float(st.chi2.sf(stat, p)))
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["chisq", "df", "p"])
    table["df"] = table["df"].astype(int)
    return ZphResult(table, transform)
