"""Restricted mean survival time (RMST): the area under the Kaplan-Meier curve up to tau.

``rmst = sum_i S(t_{i-1}) (min(t_i, tau) - t_{i-1})`` over the curve's steps below tau.
Its variance is Greenwood-type, as SAS PROC LIFETEST ``RMST`` and R's
``print(survfit, rmean=tau)`` (and survRM2) compute it:
``var = sum_{t_i <= tau} A_i^2 d_i / (n_i (n_i - d_i))`` with ``A_i`` the area under
the curve from t_i to tau. ``bias_correction=True`` multiplies the variance by
``D / (D - 1)`` (D events up to tau), the correction of Klein and Moeschberger.
Beyond a group's last follow-up time the curve is taken as flat up to tau (R's
``rmean`` rule); choose tau no later than the shortest group's follow-up to avoid
that extrapolation. Confidence limits are ``rmst +- z se``; for two groups the
difference (first minus second group) has ``se = sqrt(se_1^2 + se_2^2)`` and a
1-df chi-square test, as LIFETEST's "Restricted Mean Survival Time Comparisons".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from ctcimg.errors import InputError
from ctcimg.stats.km import _groups, _survival_data


@dataclass(frozen=True)
class RMSTDifference:
    """RMST of the first group minus the second, with its Wald test."""

    estimate: float
    se: float
    statistic: float
    pvalue: float
    lower: float
    upper: float


@dataclass(frozen=True, eq=False)
class RMSTResult:
    """Restricted mean survival times.

    Attributes
    ----------
    table
        One row per group: ``group``, ``n``, ``events``, ``rmst``, ``se``, ``lower``,
        ``upper``.
    difference
        For two groups, first minus second; else ``None``.
    tau, conf_level, bias_correction
        Options used.
    """

    table: pd.DataFrame
    difference: RMSTDifference | None
    tau: float
    conf_level: float
    bias_correction: bool


def _one(time: np.ndarray, event: np.ndarray, tau: float,
         bias_correction: bool) -> tuple[float, float]:
    times = np.unique(time[(event == 1) & (time <= tau)])
    n = np.array([(time >= u).sum() for u in times], dtype=float)
    d = np.array([((time == u) & (event == 1)).sum() for u in times], dtype=float)
    surv = np.cumprod(1.0 - d / n)
    edges = np.concatenate([[0.0], times, [tau]])
    heights = np.concatenate([[1.0], surv])
    areas = heights * np.diff(edges)
    rmst = float(areas.sum())
    tail = np.cumsum(areas[::-1])[::-1][1:]  # area from t_i to tau
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n > d, tail ** 2 * d / (n * (n - d)), 0.0)
    var = float(terms.sum())
    if bias_correction:
        total = d.sum()
        var = var * total / (total - 1) if total > 1 else float("nan")
    return rmst, float(np.sqrt(var))


def rmst(df: pd.DataFrame, duration: str, event: str, tau: float, group: str | None = None,
         bias_correction: bool = False, conf_level: float = 0.95) -> RMSTResult:
    """Restricted mean survival time up to ``tau``, per group (see the module docstring).

    Parameters
    ----------
    df
        One row per patient.
    duration, event
        Follow-up time and event indicator (1 = event).
    tau
        Truncation time (> 0).
    group
        Optional grouping column.
    bias_correction
        Multiply each variance by D / (D - 1).
    conf_level
        Level of the normal confidence limits.

    Returns
    -------
    RMSTResult
    """
    t, e = _survival_data(df, duration, event, group)
    if not np.isfinite(tau) or tau <= 0:
        raise InputError(f"tau must be a positive time, got {tau!r}")
    z = float(st.norm.ppf(1 - (1 - conf_level) / 2))
    rows = []
    for g in _groups(df, group):
        mask = np.ones(len(df), bool) if group is None else (df[group] == g).to_numpy()
        est, se = _one(t[mask], e[mask], float(tau), bias_correction)
        rows.append({"group": str(g), "n": int(mask.sum()), "events": int(e[mask].sum()),
                     "rmst": est, "se": se, "lower": est - z * se, "upper": est + z * se})
    table = pd.DataFrame(rows)
    diff = None
    if len(table) == 2:
        est = float(table.rmst[0] - table.rmst[1])
        se = float(np.hypot(table.se[0], table.se[1]))
        chi2 = (est / se) ** 2
        diff = RMSTDifference(est, se, chi2, float(st.chi2.sf(chi2, 1)), est - z * se,
                              est + z * se)
    return RMSTResult(table, diff, float(tau), conf_level, bias_correction)
