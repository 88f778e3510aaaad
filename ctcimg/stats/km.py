"""Kaplan-Meier estimates, confidence bands, quantiles, and the log-rank test.

Standard errors. Two are exported per time point:

``se``
    Greenwood standard error of the survival probability S(t) itself,
    ``S * sqrt(sum d / (n (n - d)))`` (what SAS PROC LIFETEST prints as "Standard
    Error" and what R's ``summary(survfit)`` reports as ``std.err``).
``se_log``
    ``sqrt(sum d / (n (n - d)))``, the standard error of log S(t), i.e. of the
    cumulative hazard. This is what an R ``survfit`` object stores in ``$std.err``.

Confidence bands (``conf_type``), with z the normal quantile, as R
``survfit``'s ``conf.type`` and SAS's ``CONFTYPE=``:

``"plain"``   S +- z se, clipped to [0, 1];
``"log"``     S exp(+-z se_log), upper clipped at 1 (R's default);
``"log-log"`` S^exp(+-z se_log / log S) (SAS's default; undefined where S is 0 or 1).

Quantiles and the median use the confidence-band intersection method of
Brookmeyer and Crowley as implemented by R (``quantile.survfit``): the estimate is
the first time the curve reaches 1 - p (the midpoint of a flat stretch lying
exactly at 1 - p), and the limits are the times the lower and upper bands reach it.
``conventions="r"`` selects the "log" band, ``"sas"`` (default) "log-log".

Where SAS PROC LIFETEST prints something else, ``conventions="sas"`` follows SAS:

- a quartile whose curve sits exactly at 1 - p on a final plateau (it never drops
  below 1 - p) is missing ("NE"): LIFETEST takes the smallest time with S < 1 - p,
  and only when a later event ends the plateau the midpoint of the plateau; R
  returns the midpoint up to the last follow-up time;
- the survival standard error is 0 where the curve has reached 0 (R: NaN).

The log-rank family (:func:`logrank`) has LIFETEST's weights (``TEST=``) and its
exponential-model likelihood-ratio test (-2 Log(LR)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from ctcimg.errors import InputError
from ctcimg.stats._survival_input import present_levels, require_complete, survival_arrays
from ctcimg.stats.cox import _resolve

CONF_TYPES: tuple[str, ...] = ("log-log", "log", "plain")
_TOL = np.sqrt(np.finfo(float).eps)


@dataclass(frozen=True)
class Quantile:
    """A survival-time quantile with its confidence limits (NaN when not reached)."""

    p: float
    time: float
    lower: float
    upper: float


@dataclass(frozen=True, eq=False)
class KMCurve:
    """Kaplan-Meier estimate for one group.

    Attributes
    ----------
    group
        Group label (``"all"`` without grouping).
    table
        One row per distinct time (events and censorings): ``time``, ``n_risk``,
        ``n_event``, ``n_censor``, ``survival``, ``se`` (Greenwood, of S),
        ``se_log`` (of log S; R's ``survfit$std.err``), ``lower``, ``upper``.
    median
        Median with its Brookmeyer-Crowley confidence limits: the first times the
        curve and its lower and upper bands fall to 0.5 (R ``print.survfit``).
    quantiles
        25th, 50th and 75th percentile survival times, same rule (see
        :func:`quantile_r` for R ``quantile.survfit``'s variant).
    n, events
        Patients and events.
    """

    group: str
    table: pd.DataFrame
    median: Quantile
    quantiles: tuple[Quantile, ...]
    n: int
    events: int


@dataclass(frozen=True, eq=False)
class KMResult:
    """Kaplan-Meier curves per group.

    Attributes
    ----------
    curves
        Group label -> :class:`KMCurve`, in group order.
    conf_type, conf_level
        Band transform and level used.
    group
        Grouping column, or ``None``.
    """

    curves: dict[str, KMCurve]
    conf_type: str
    conf_level: float
    group: str | None

    @property
    def table(self) -> pd.DataFrame:
        """All curves stacked, with a leading ``group`` column."""
        return pd.concat([c.table.assign(group=g) for g, c in self.curves.items()],
                         ignore_index=True)[["group", *next(iter(self.curves.values())).table]]

    @property
    def median(self) -> pd.DataFrame:
        """One row per group: ``n``, ``events``, ``median``, ``lower``, ``upper``."""
        return pd.DataFrame([{"group": g, "n": c.n, "events": c.events, "median": c.median.time,
                              "lower": c.median.lower, "upper": c.median.upper}
                             for g, c in self.curves.items()]).set_index("group")

    def summary(self) -> str:
        """R ``print(survfit)``-style table of medians."""
        lvl = f"{100 * self.conf_level:g}%"
        lines = [f"Kaplan-Meier, {self.conf_type} {lvl} CI (Brookmeyer-Crowley)",
                 f"{'group':15} {'n':>5} {'events':>7} {'median':>9} {'lower':>9} {'upper':>9}"]
        for g, c in self.curves.items():
            m = c.median
            lines.append(f"{str(g):15} {c.n:5d} {c.events:7d} {m.time:9.4g} {m.lower:9.4g} "
                         f"{m.upper:9.4g}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def confidence_band(surv: np.ndarray, se_log: np.ndarray, conf_type: str,
                    conf_level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise confidence limits for S(t) (see the module docstring).

    Parameters
    ----------
    surv
        Survival estimates.
    se_log
        Standard errors of log S (R's ``survfit$std.err``).
    conf_type
        ``"log-log"``, ``"log"`` or ``"plain"``.
    conf_level
        Confidence level.

    Returns
    -------
    (lower, upper)
        NaN where the transform is undefined (S = 0; and S = 1 for log-log).
    """
    z = st.norm.ppf(1 - (1 - conf_level) / 2)
    s = np.asarray(surv, dtype=float)
    se = np.asarray(se_log, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "plain":
            half = z * se * s
            lower = np.where(np.isnan(half), np.nan, np.maximum(s - half, 0.0))
            upper = np.where(np.isnan(half), np.nan, np.minimum(s + half, 1.0))
        elif conf_type == "log":
            xx = np.where(s == 0, np.nan, s)
            lower = np.exp(np.log(xx) - z * se)
            upper = np.minimum(np.exp(np.log(xx) + z * se), 1.0)
            upper = np.where(np.isnan(xx), np.nan, upper)
        elif conf_type == "log-log":
            xx = np.where((s == 0) | (s == 1), np.nan, s)
            shift = z * se / np.log(xx)
            lower = np.exp(-np.exp(np.log(-np.log(xx)) - shift))
            upper = np.exp(-np.exp(np.log(-np.log(xx)) + shift))
        else:
            raise ValueError(f"conf_type must be one of {', '.join(CONF_TYPES)}")
    return lower, upper


def _first_reach(x: np.ndarray, y: np.ndarray, p: float) -> float:
    """First time a cumulative curve ``y`` (1 - S, starting with 0 at time 0) reaches p.

    Follows R's ``quantile.survfit``: repeated values (censorings) are dropped, NaN
    values ignored; a value within sqrt(machine eps) of p marks a flat stretch
    exactly at p, whose midpoint is returned (up to the last follow-up time if the
    stretch never ends); NaN if p is never reached.
    """
    if np.all(np.isnan(y)) or np.nanmax(y) < p:
        return float("nan")
    xmax = float(x[-1])
    key = np.where(np.isnan(y), np.inf, y)
    keep = np.zeros(len(y), dtype=bool)
    keep[np.unique(key, return_index=True)[1]] = True
    xs, ys = x[keep], y[keep]
    pos = np.flatnonzero(~np.isnan(ys))
    vals = ys[pos]

    def first_at_least(v: np.ndarray) -> int | None:
        hit = v >= p
        if not hit.any():
            return None
        return int(pos[np.flatnonzero(hit)[np.argmin(v[hit])]])

    i1 = first_at_least(vals + _TOL)
    i2 = first_at_least(vals - _TOL)
    if i1 is None:
        return float("nan")
    if not np.isnan(ys[-1]) and abs(p - ys[-1]) < _TOL:
        return float((xs[i1] + xmax) / 2)
    if i2 is None:
        return float("nan")
    return float((xs[i1] + xs[i2]) / 2)


def _first_below(x: np.ndarray, y: np.ndarray, level: float, plateau_ne: bool = False) -> float:
    """First time a survival-type curve ``y`` falls to ``level`` (print.survfit's rule).

    NaN entries are ignored. If the curve sits exactly at ``level`` (within
    sqrt(machine eps)) and later drops further, the midpoint of that flat stretch is
    returned; if it never drops further, the start of the stretch, or NaN with
    ``plateau_ne`` (SAS LIFETEST). This is the Brookmeyer-Crowley limit when applied
    to a confidence band.
    """
    keep = ~np.isnan(y) & (y < level + _TOL)
    if not keep.any():
        return float("nan")
    xs, ys = x[keep], y[keep]
    if abs(ys[0] - level) < _TOL:
        if np.any(ys < ys[0]):
            return float((xs[0] + xs[np.flatnonzero(ys < ys[0])[0]]) / 2)
        if plateau_ne:
            return float("nan")
    return float(xs[0])


def _quantile(table: pd.DataFrame, p: float, sas: bool) -> Quantile:
    x = table["time"].to_numpy(float)
    level = 1.0 - p
    return Quantile(p, *(_first_below(x, table[c].to_numpy(float), level, sas and c == "survival")
                         for c in ("survival", "lower", "upper")))


def quantile_r(curve: KMCurve, probs: Sequence[float] = (0.25, 0.5, 0.75)) -> list[Quantile]:
    """Quantiles exactly as R's ``quantile.survfit`` computes them.

    R has two rules. ``print.survfit`` (and :attr:`KMCurve.median` here) takes the
    first time each curve falls to 1 - p. ``quantile.survfit`` instead inverts the
    curve by value, which differs when a confidence band is not monotone (it can
    rise after a drop in the number at risk) or when a curve ends on a flat stretch
    exactly at 1 - p. This function reproduces the latter, for comparison with R.

    Parameters
    ----------
    curve
        A Kaplan-Meier curve.
    probs
        Probabilities p (the quantile is where S reaches 1 - p).

    Returns
    -------
    list of Quantile
    """
    t = curve.table
    x = np.concatenate([[0.0], t["time"].to_numpy(float)])

    def cum(col: str) -> np.ndarray:
        return np.concatenate([[0.0], 1.0 - t[col].to_numpy(float)])

    return [Quantile(p, *(_first_reach(x, cum(c), p) for c in ("survival", "lower", "upper")))
            for p in probs]


def _curve(time: np.ndarray, event: np.ndarray, conf_type: str, conf_level: float,
           label: str, sas: bool) -> KMCurve:
    times = np.unique(time)
    idx = np.searchsorted(times, time)
    n_event = np.bincount(idx, weights=event, minlength=len(times))
    n_total = np.bincount(idx, minlength=len(times))
    n_censor = n_total - n_event
    n_risk = n_total[::-1].cumsum()[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - n_event / n_risk)
        inc = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
        se_log = np.sqrt(np.cumsum(inc))
        se = surv * se_log
    if sas:
        se = np.where(surv == 0, 0.0, se)
    lower, upper = confidence_band(surv, se_log, conf_type, conf_level)
    table = pd.DataFrame({"time": times, "n_risk": n_risk.astype(int),
                          "n_event": n_event.astype(int), "n_censor": n_censor.astype(int),
                          "survival": surv, "se": se, "se_log": se_log,
                          "lower": lower, "upper": upper})
    qs = tuple(_quantile(table, p, sas) for p in (0.25, 0.5, 0.75))
    return KMCurve(label, table, qs[1], qs, int(len(time)), int(event.sum()))


def _groups(df: pd.DataFrame, group: str | None) -> list:
    return ["all"] if group is None else present_levels(df[group])


def _survival_data(df: pd.DataFrame, duration: str, event: str, group: str | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Times and events of ``df``, checked (with the group column, if any, complete)."""
    require_complete(df, [duration, event, *([group] if group else [])])
    return survival_arrays(df, duration, event)


def kaplan_meier(
    df: pd.DataFrame,
    duration: str,
    event: str,
    group: str | None = None,
    conf_type: str | None = None,
    *,
    conventions: str = "sas",
    conf_level: float = 0.95,
) -> KMResult:
    """Kaplan-Meier survival curves, optionally per group.

    Parameters
    ----------
    df
        One row per patient.
    duration, event
        Follow-up time and event indicator (1 = event, 0 = censored).
    group
        Optional grouping column (categories in order if Categorical, else sorted).
    conf_type
        ``"log-log"``, ``"log"`` or ``"plain"``; default from ``conventions``.
    conventions
        ``"sas"`` (log-log, PROC LIFETEST's default; the default here) or ``"r"``
        (log, R survfit's default).
    conf_level
        Confidence level of the bands and the quantile limits.

    Returns
    -------
    KMResult
    """
    conf_type = _resolve(conventions, conf_type=conf_type)["conf_type"]
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {', '.join(CONF_TYPES)}")
    t, e = _survival_data(df, duration, event, group)
    curves = {}
    for g in _groups(df, group):
        mask = np.ones(len(df), bool) if group is None else (df[group] == g).to_numpy()
        curves[str(g)] = _curve(t[mask], e[mask], conf_type, conf_level, str(g),
                                conventions == "sas")
    return KMResult(curves, conf_type, conf_level, group)


#: ``weights=`` of :func:`logrank` -> SAS LIFETEST's name in "Test of Equality over Strata"
TEST_NAMES: dict[str, str] = {
    "logrank": "Log-Rank", "wilcoxon": "Wilcoxon", "tarone": "Tarone", "peto": "Peto",
    "modified-peto": "Modified Peto", "fleming-harrington": "Fleming", "lr": "-2Log(LR)",
}


@dataclass(frozen=True, eq=False)
class LogrankResult:
    """A k-sample test of equal survival (log-rank family or exponential LR).

    Attributes
    ----------
    statistic, df, pvalue
        Chi-square statistic, degrees of freedom (k - 1) and P value.
    groups
        Group labels.
    observed, expected
        Events observed and expected per group (for ``"lr"``: expected under a
        common exponential rate, events x follow-up share).
    variance
        k x k covariance matrix of the weighted observed - expected (NaN for "lr").
    weights, rho, gamma
        The test (see :func:`logrank`) and the Fleming-Harrington exponents.
    """

    statistic: float
    df: int
    pvalue: float
    groups: tuple[str, ...]
    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray
    weights: str = "logrank"
    rho: float = 0.0
    gamma: float = 0.0

    @property
    def name(self) -> str:
        """The test's name as SAS prints it (``Fleming(rho,gamma)`` with exponents)."""
        if self.weights == "fleming-harrington":
            return f"Fleming({self.rho:g},{self.gamma:g})"
        return TEST_NAMES[self.weights]

    def __str__(self) -> str:
        lines = [f"{'group':15} {'N obs':>7} {'expected':>9}"]
        for g, o, x in zip(self.groups, self.observed, self.expected, strict=True):
            lines.append(f"{g:15} {o:7.0f} {x:9.2f}")
        lines.append(f"{self.name} chi-square = {self.statistic:.4f} on {self.df} df, "
                     f"p = {self.pvalue:.4g}")
        return "\n".join(lines)


def _test_weights(n: np.ndarray, d: np.ndarray, weights: str, rho: float,
                  gamma: float) -> np.ndarray:
    """Weight per distinct event time (pooled sample), as SAS LIFETEST ``TEST=``."""
    if weights == "logrank":
        return np.ones_like(n)
    if weights == "wilcoxon":  # Gehan
        return n.copy()
    if weights == "tarone":
        return np.sqrt(n)
    peto = np.cumprod(1.0 - d / (n + 1.0))  # Peto-Peto survival, including t_i
    if weights == "peto":
        return peto
    if weights == "modified-peto":
        return peto * n / (n + 1.0)
    if weights == "fleming-harrington":
        km_left = np.concatenate([[1.0], np.cumprod(1.0 - d / n)[:-1]])  # S(t_i -)
        return km_left ** rho * (1.0 - km_left) ** gamma
    raise ValueError(f"weights must be one of {', '.join(TEST_NAMES)}")


def logrank(df: pd.DataFrame, duration: str, event: str, group: str,
            weights: str = "logrank", rho: float = 0.0, gamma: float = 0.0) -> LogrankResult:
    """Test equal survival in the levels of ``group`` (SAS LIFETEST ``STRATA / TEST=``).

    The weighted log-rank statistic is ``U' V^- U`` on k - 1 df, with
    ``U_j = sum_i w_i (d_ij - n_ij d_i / n_i)`` over the distinct event times and
    ``V_jl = sum_i w_i^2 d_i (n_i - d_i) / (n_i - 1) n_ij (delta_jl n_i - n_il) / n_i^2``.
    Weights ``w_i``:

    ``"logrank"``             1 (R ``survdiff``, rho = 0)
    ``"wilcoxon"``            n_i, Gehan's generalised Wilcoxon (SAS's "Wilcoxon")
    ``"tarone"``              sqrt(n_i), Tarone-Ware
    ``"peto"``                S~(t_i) = prod_{t_l <= t_i} (1 - d_l / (n_l + 1)), Peto-Peto
    ``"modified-peto"``       S~(t_i) n_i / (n_i + 1), Andersen's modified Peto-Peto
    ``"fleming-harrington"``  S(t_i-)^rho (1 - S(t_i-))^gamma with the pooled
                              Kaplan-Meier S (rho, gamma; gamma = 0 is R ``survdiff(rho=)``)

    ``"lr"`` is instead LIFETEST's -2 Log(LR): the likelihood-ratio test of equal
    rates in exponential models, ``2 (D log(T / D) - sum_j D_j log(T_j / D_j))`` with
    D_j events and T_j total follow-up time of group j.

    Parameters
    ----------
    df
        One row per patient.
    duration, event
        Follow-up time and event indicator.
    group
        Grouping column (two or more levels).
    weights
        The test (above).
    rho, gamma
        Fleming-Harrington exponents.

    Returns
    -------
    LogrankResult
        With named fields ``statistic``, ``df``, ``pvalue`` (like scipy.stats).
    """
    if weights not in TEST_NAMES:
        raise ValueError(f"weights must be one of {', '.join(TEST_NAMES)}")
    t, e = _survival_data(df, duration, event, group)
    group_levels = _groups(df, group)
    if len(group_levels) < 2:
        raise InputError(f"log-rank test needs at least two groups in {group!r}")
    g = np.array([group_levels.index(v) for v in df[group]])
    labels = tuple(str(v) for v in group_levels)
    if weights == "lr":
        return _exponential_lr(t, e, g, labels)
    return _weighted_logrank(t, e, g, labels, weights, float(rho), float(gamma))


def _exponential_lr(time: np.ndarray, event: np.ndarray, g: np.ndarray,
                    labels: tuple[str, ...]) -> LogrankResult:
    """LIFETEST's -2 Log(LR) for the groups ``g`` (indices into ``labels``)."""
    k = len(labels)
    observed = np.bincount(g, weights=event, minlength=k)
    follow = np.bincount(g, weights=time, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        part = np.where(observed > 0, observed * np.log(follow / observed), 0.0)
    total_d, total_t = observed.sum(), follow.sum()
    stat = float(2 * (total_d * np.log(total_t / total_d) - part.sum())) if total_d else 0.0
    dof = k - 1
    return LogrankResult(stat, dof, float(st.chi2.sf(stat, dof)), labels, observed,
                         total_d * follow / total_t, np.full((k, k), np.nan), "lr")


def _weighted_logrank(time: np.ndarray, event: np.ndarray, g: np.ndarray,
                      labels: tuple[str, ...], weights: str, rho: float,
                      gamma: float) -> LogrankResult:
    """The weighted log-rank statistic of :func:`logrank` for the groups ``g``."""
    k = len(labels)
    observed = np.bincount(g, weights=event, minlength=k)
    times = np.unique(time[event == 1])
    ti = np.searchsorted(times, time)
    at = np.zeros((len(times), k))  # at risk per event time and group: time >= t_i
    for j in range(k):
        tj = np.sort(time[g == j])
        at[:, j] = len(tj) - np.searchsorted(tj, times, side="left")
    dead = np.zeros((len(times), k))
    ev = event == 1
    np.add.at(dead, (ti[ev], g[ev]), 1.0)
    n = at.sum(axis=1)
    d = dead.sum(axis=1)
    w = _test_weights(n, d, weights, rho, gamma)
    frac = at / n[:, None]
    expected = (d[:, None] * frac).sum(axis=0)
    diff = ((dead - d[:, None] * frac) * w[:, None]).sum(axis=0)
    factor = w ** 2 * np.where(n > 1, d * (n - d) / np.where(n > 1, n - 1, 1), 0.0)
    var = (np.einsum("t,ti->i", factor, frac)[:, None] * np.eye(k)
           - np.einsum("t,ti,tj->ij", factor, frac, frac))
    idx = np.flatnonzero(expected > 0)[:-1]
    sub = var[np.ix_(idx, idx)]
    stat = float(diff[idx] @ np.linalg.solve(sub, diff[idx])) if idx.size else 0.0
    dof = int(idx.size)
    return LogrankResult(stat, dof, float(st.chi2.sf(stat, dof)) if dof else 1.0, labels,
                         observed, expected, var, weights, rho, gamma)


def equality_tests(df: pd.DataFrame, duration: str, event: str, group: str,
                   tests: Sequence[str] = ("logrank", "wilcoxon", "lr")) -> pd.DataFrame:
    """SAS LIFETEST's "Test of Equality over Strata" table (default: its three tests).

    Returns
    -------
    pandas.DataFrame
        Columns ``Test``, ``Chi-Square``, ``DF``, ``Pr > Chi-Square``.
    """
    rows = []
    for name in tests:
        r = logrank(df, duration, event, group, weights=name)
        rows.append({"Test": r.name, "Chi-Square": r.statistic, "DF": r.df,
                     "Pr > Chi-Square": r.pvalue})
    return pd.DataFrame(rows)


def groups_of(df: pd.DataFrame, group: str | None) -> list:
    """Group levels in display order (categories if Categorical, else sorted)."""
    return _groups(df, group)


__all__: Sequence[str] = ["kaplan_meier", "logrank", "equality_tests", "KMResult", "KMCurve",
                          "LogrankResult", "Quantile", "confidence_band", "quantile_r"]
