"""Cox proportional-hazards regression with Wald and profile-likelihood CIs.

The partial likelihood, its gradient and Hessian come from statsmodels ``PHReg``
(Breslow or Efron handling of tied event times). The maximisation is a damped
Newton iteration run to full convergence, so estimates agree with R ``coxph`` to
far better than 1e-6.

Profile-likelihood confidence limits (SAS PROC PHREG ``RISKLIMITS=PL``) are found
per coefficient by root-finding on the profile log-likelihood: the coefficient is
fixed at ``b``, the others are maximised, and the limits are where
``2 * (loglik_max - loglik_profile(b)) = chi2_1(1 - alpha)``.

Conventions: ``conventions="sas"`` (default) means Breslow ties and profile CIs, as
in PROC PHREG with RISKLIMITS=PL (the reference study); ``conventions="r"`` means
Efron ties and Wald CIs, as R ``coxph``/``confint``. Explicit ``ties``/``ci`` win.

Which iterate is reported (``convergence``)
    ``"gconv"`` (SAS, the default under ``conventions="sas"``): PROC PHREG's
    Newton-Raphson rule. Start at beta = 0; at each iterate beta_i compute the
    gradient g_i and information I_i of the log partial likelihood l; stop at the
    first i with ``g_i' I_i^-1 g_i / (|l(beta_i)| + 1e-6) <= 1e-8`` (GCONV=1E-8, the
    relative gradient criterion) and report beta_i itself; otherwise take the full
    Newton step beta_{i+1} = beta_i + I_i^-1 g_i, halving it while it lowers l. At
    most 25 iterations (MAXITER=25). SAS prints that iterate, which can differ from
    the fully converged estimate in the 5th significant digit.
    ``"full"`` (R, the default under ``conventions="r"``): iterate to full
    convergence (steps < 1e-11), as ``coxph`` with a tight ``eps``.

Categorical covariates (CLASS variables): under ``conventions="sas"`` the
reference level is the *last* level (PHREG's default, ``REF=LAST``), under ``"r"``
the first (R's treatment contrasts). ``reference=`` wins.

Firth's penalised likelihood (``firth=True``; Heinze & Schemper 2001, as SAS PHREG
``FIRTH`` and R ``coxphf``) maximises ``l(beta) + 1/2 log|I(beta)|`` with the modified
score ``U_r + 1/2 trace(I^-1 dI/dbeta_r)``, iterating with the unpenalised information
``I``; the covariance is ``I^-1`` at the penalised estimate, profile-likelihood limits
are those of the penalised likelihood, and the likelihood-ratio test and log-
likelihoods reported are penalised (the score test stays the unpenalised log-rank-type
test at 0). Under ``convergence="gconv"`` the same GCONV rule is applied to the
penalised score and log-likelihood. Estimates stay finite where a level has no events.

Every result says whether the fit converged and after how many iterations; a fit
that did not converge raises :class:`ConvergenceWarning`, a coefficient running off
to infinity (monotone likelihood: a level with no events, separation) raises
:class:`MonotoneLikelihoodWarning`; both are ``RuntimeWarning`` subclasses.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from ctcimg.errors import InputError
from ctcimg.stats._survival_input import present_levels, require_complete, survival_arrays

CONVENTIONS: dict[str, dict[str, str]] = {
    "sas": {"ties": "breslow", "ci": "profile", "conf_type": "log-log", "convergence": "gconv",
            "reference": "last"},
    "r": {"ties": "efron", "ci": "wald", "conf_type": "log", "convergence": "full",
          "reference": "first"},
}

#: PROC PHREG defaults: GCONV=1E-8 (relative gradient criterion) and MAXITER=25
GCONV = 1e-8
MAXITER_SAS = 25


class ConvergenceWarning(RuntimeWarning):
    """The Newton-Raphson iteration of a Cox fit stopped before converging."""


class MonotoneLikelihoodWarning(RuntimeWarning):
    """A Cox coefficient diverges: the partial likelihood keeps rising towards infinity.

    Typical cause: a covariate level with no events (or only events), i.e. separation.
    Firth's penalised likelihood (``cox(..., firth=True)``) gives finite estimates.
    """


@dataclass(frozen=True)
class Term:
    """One column of the design matrix.

    Attributes
    ----------
    label
        Row label, e.g. ``age`` or ``ctc_her2: positive vs negative``.
    covariate
        Source column in the data.
    level, reference
        For a categorical covariate, the level coded 1 and the reference level.
    """

    label: str
    covariate: str
    level: str | None = None
    reference: str | None = None


def _is_categorical(s: pd.Series) -> bool:
    return (isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object
            or pd.api.types.is_string_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype))


def design_matrix(
    df: pd.DataFrame,
    covariates: Sequence[str],
    reference: Mapping[str, object] | None = None,
    default_reference: str = "first",
) -> tuple[np.ndarray, tuple[Term, ...]]:
    """Numeric design matrix with treatment (dummy) coding of categorical columns.

    Parameters
    ----------
    df
        Data, complete in ``covariates``.
    covariates
        Columns; numeric ones enter as they are, categorical ones (object, string,
        category, bool) as one 0/1 column per non-reference level.
    reference
        Reference level per categorical covariate.
    default_reference
        Where no reference is given: ``"first"`` or ``"last"`` level (the categories'
        order of a pandas Categorical, else sorted order).

    Returns
    -------
    (numpy.ndarray, tuple of Term)
    """
    reference = dict(reference or {})
    cols: list[np.ndarray] = []
    terms: list[Term] = []
    for name in covariates:
        s = df[name]
        if _is_categorical(s):
            levels = present_levels(s)
            fallback = (levels[-1] if default_reference == "last" else levels[0]) \
                if levels else None
            ref = reference.get(name, fallback)
            if ref not in levels:
                raise InputError(f"reference level {ref!r} of {name!r} not in data "
                                 f"(levels: {', '.join(map(str, levels))})")
            if len(levels) < 2:
                raise InputError(f"covariate {name!r} has a single level {levels}")
            for lev in levels:
                if lev == ref:
                    continue
                cols.append((s == lev).to_numpy(dtype=float))
                terms.append(Term(f"{name}: {lev} vs {ref}", name, str(lev), str(ref)))
        else:
            cols.append(pd.to_numeric(s).to_numpy(dtype=float))
            terms.append(Term(name, name))
    x = np.column_stack(cols) if cols else np.empty((len(df), 0))
    return x, tuple(terms)


@dataclass(frozen=True)
class GlobalTest:
    """A global chi-square test of all coefficients = 0."""

    statistic: float
    df: int
    pvalue: float


@dataclass(frozen=True, eq=False)
class CoxResult:
    """Fitted Cox model.

    Attributes
    ----------
    table
        One row per term (index = label): ``coef``, ``se``, ``hr``, ``hr_lower``,
        ``hr_upper`` (by :attr:`ci`), ``z``, ``p`` (Wald).
    terms
        Design-matrix columns.
    params, cov
        Coefficients and their covariance (inverse observed information).
    loglik_null, loglik
        Partial log-likelihood at 0 and at the estimate.
    lr_test, wald_test, score_test
        Global tests (score = log-rank for one binary covariate).
    n, events
        Patients and events used.
    ties, ci, alpha
        Options used.
    converged, iterations
        Whether the Newton-Raphson iteration met its criterion, and how many
        iterations it took (see ``convergence`` in the module docstring).
    convergence
        ``"gconv"`` (SAS's reported iterate) or ``"full"``.
    firth
        Whether Firth's penalised partial likelihood was maximised.
    concordance
        Harrell's C of the linear predictor (R ``concordance(fit)``).
    time, status, x
        The data the model was fitted to (x: design matrix), for diagnostics
        such as :func:`ctcimg.stats.cox_zph`.
    monotone
        Labels of the terms whose estimate diverges (monotone likelihood; empty for
        a Firth fit, whose estimates are finite).
    """

    table: pd.DataFrame
    terms: tuple[Term, ...]
    params: np.ndarray
    cov: np.ndarray
    loglik_null: float
    loglik: float
    lr_test: GlobalTest
    wald_test: GlobalTest
    score_test: GlobalTest
    n: int
    events: int
    ties: str
    ci: str
    alpha: float
    converged: bool
    iterations: int
    convergence: str
    firth: bool
    concordance: float
    time: np.ndarray
    status: np.ndarray
    x: np.ndarray
    monotone: tuple[str, ...] = ()

    def summary(self) -> str:
        """Text summary in the style of R ``summary(coxph)``."""
        level = f"{100 * (1 - self.alpha):g}%"
        ci_name = "profile likelihood" if self.ci == "profile" else "Wald"
        lines = [f"Cox proportional hazards{' (Firth penalised)' if self.firth else ''}: "
                 f"n = {self.n}, events = {self.events}; ties = {self.ties}; {level} CI: "
                 f"{ci_name}; {'converged' if self.converged else 'NOT converged'} after "
                 f"{self.iterations} iterations; concordance {self.concordance:.4f}"]
        width = max([len(t.label) for t in self.terms] + [4])
        head = (f"{'':{width}}  {'coef':>9} {'HR':>9} {'se(coef)':>9} {'z':>7} {'P':>9}"
                f" {'lower':>9} {'upper':>9}")
        lines.append(head)
        for label, r in self.table.iterrows():
            lines.append(f"{label:{width}}  {r.coef:9.4f} {r.hr:9.4f} {r.se:9.4f} {r.z:7.3f}"
                         f" {r.p:9.3g} {r.hr_lower:9.4f} {r.hr_upper:9.4f}")
        for name, t in (("Likelihood ratio test", self.lr_test), ("Wald test", self.wald_test),
                        ("Score (logrank) test", self.score_test)):
            lines.append(f"{name:21} = {t.statistic:.4g} on {t.df} df, p = {t.pvalue:.3g}")
        lines.append(f"Log-likelihood: null {self.loglik_null:.4f}, fitted {self.loglik:.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _Likelihood:
    """Partial log-likelihood, score and Hessian of one data set (statsmodels PHReg)."""

    def __init__(self, time: np.ndarray, event: np.ndarray, x: np.ndarray, ties: str):
        from statsmodels.duration.hazard_regression import PHReg

        self.model = PHReg(time, x, status=event, ties=ties)
        self.p = x.shape[1]

    def loglike(self, b: np.ndarray) -> float:
        return float(self.model.loglike(b))

    def score(self, b: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.score(b), dtype=float)

    def hessian(self, b: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.hessian(b), dtype=float)

    def maximize(self, start: np.ndarray, free: np.ndarray | None = None,
                 max_iter: int = 100) -> tuple[np.ndarray, float, bool, int]:
        """Newton-Raphson with step halving over the ``free`` coordinates, run to full
        convergence. Returns the estimate, its log-likelihood, whether it converged
        and the number of iterations."""
        b = np.array(start, dtype=float)
        idx = np.arange(self.p) if free is None else np.flatnonzero(free)
        ll = self.loglike(b)
        if idx.size == 0:
            return b, ll, True, 0
        for it in range(1, max_iter + 1):
            g = self.score(b)[idx]
            h = self.hessian(b)[np.ix_(idx, idx)]
            try:
                step = np.linalg.solve(-h, g)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(-h, g, rcond=None)[0]
            t = 1.0
            while True:
                trial = b.copy()
                trial[idx] += t * step
                ll_new = self.loglike(trial)
                if np.isfinite(ll_new) and ll_new >= ll - 1e-12 * max(1.0, abs(ll)):
                    break
                t /= 2
                if t < 1e-10:
                    return b, ll, False, it
            b, ll_old, ll = trial, ll, ll_new
            if np.max(np.abs(t * step)) < 1e-11 and abs(ll - ll_old) < 1e-12 * max(1, abs(ll)):
                return b, ll, True, it
        return b, ll, False, max_iter

    def maximize_gconv(self, max_iter: int = MAXITER_SAS) -> tuple[np.ndarray, float, bool, int]:
        """PROC PHREG's iteration: the first Newton iterate from 0 meeting GCONV=1E-8.

        See the module docstring. Returns the iterate, its log-likelihood, whether the
        criterion was met and the number of iterations (steps taken).
        """
        b = np.zeros(self.p)
        ll = self.loglike(b)
        for it in range(max_iter + 1):
            g = self.score(b)
            info = -self.hessian(b)
            try:
                step = np.linalg.solve(info, g)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(info, g, rcond=None)[0]
            if float(g @ step) / (abs(ll) + 1e-6) <= GCONV:
                return b, ll, True, it
            if it == max_iter:
                break
            t = 1.0
            while True:
                trial = b + t * step
                ll_new = self.loglike(trial)
                if np.isfinite(ll_new) and ll_new >= ll:
                    break
                t /= 2
                if t < 1e-10:
                    return b, ll, False, it
            b, ll = trial, ll_new
        return b, ll, False, max_iter


class _FastLikelihood(_Likelihood):
    """The same partial likelihood as PHReg, evaluated with vectorised risk-set sums.

    statsmodels loops over event times in Python, which is too slow for the dozens of
    constrained refits a profile-likelihood CI needs; this class evaluates log-
    likelihood, score and Hessian in one vectorised pass (Breslow, or Efron with one
    pseudo-row per tied event). Tests check it equals PHReg.
    """

    def __init__(self, time: np.ndarray, event: np.ndarray, x: np.ndarray, ties: str):
        order = np.argsort(time, kind="stable")
        self.x = x[order]
        t = time[order]
        self.ev = event[order] == 1
        self.p = x.shape[1]
        uniq, inv = np.unique(t[self.ev], return_inverse=True)
        self.inv = inv
        self.start = np.searchsorted(t, uniq, side="left")
        dk = np.bincount(inv, minlength=len(uniq))
        self.k_idx = np.repeat(np.arange(len(uniq)), dk)
        if ties == "efron":
            within = np.arange(len(self.k_idx)) - np.repeat(np.cumsum(dk) - dk, dk)
            self.frac = within / dk[self.k_idx]
        else:
            self.frac = np.zeros(len(self.k_idx))
        self.k = len(uniq)
        self.sumx_dead = self.x[self.ev].sum(axis=0)
        self.xx = self.x[:, :, None] * self.x[:, None, :]
        self._cache: tuple[bytes, tuple[float, np.ndarray, np.ndarray]] | None = None
        self._cache3: tuple[bytes, np.ndarray] | None = None

    def _risk_sums(self, w: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Per pseudo-row (one per event; Efron: tied events weighted down) the sum
        of ``w * a`` over its risk set."""
        def suffix(v: np.ndarray) -> np.ndarray:
            return np.cumsum(v[::-1], axis=0)[::-1][self.start]

        wa = w.reshape((-1,) + (1,) * (a.ndim - 1)) * a
        tied = np.zeros((self.k,) + a.shape[1:])
        np.add.at(tied, self.inv, wa[self.ev])
        f = self.frac.reshape((-1,) + (1,) * (a.ndim - 1))
        return suffix(wa)[self.k_idx] - f * tied[self.k_idx]

    def information_derivative(self, b: np.ndarray) -> np.ndarray:
        """``dI[i, j, r]``: derivative of the information ``I(b)`` (= minus the
        Hessian) with respect to ``b[r]``.

        Each pseudo-row contributes the covariance of ``x`` under the risk-set
        weights ``exp(x b)`` (Efron: tied events down-weighted); the derivative of a
        covariance of an exponential family in its natural parameter is the third
        central moment, so ``dI`` sums those over the pseudo-rows.
        """
        key = np.asarray(b, dtype=float).tobytes()
        if self._cache3 is not None and self._cache3[0] == key:
            return self._cache3[1]
        eta = self.x @ b
        w = np.exp(eta - eta.max())
        s0 = self._risk_sums(w, np.ones(len(w)))
        m = self._risk_sums(w, self.x) / s0[:, None]
        m2 = self._risk_sums(w, self.xx) / s0[:, None, None]
        m3 = self._risk_sums(w, self.xx[:, :, :, None] * self.x[:, None, None, :]) \
            / s0[:, None, None, None]
        mm2 = np.einsum("ki,kjr->kijr", m, m2)
        third = (m3 - mm2 - mm2.transpose(0, 2, 1, 3) - mm2.transpose(0, 2, 3, 1)
                 + 2 * np.einsum("ki,kj,kr->kijr", m, m, m))
        out = third.sum(axis=0)
        self._cache3 = (key, out)
        return out

    def evaluate(self, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        key = np.asarray(b, dtype=float).tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        eta = self.x @ b
        c = float(eta.max())
        w = np.exp(eta - c)

        def suffix(a: np.ndarray) -> np.ndarray:
            return np.cumsum(a[::-1], axis=0)[::-1][self.start]

        s0 = suffix(w)
        s1 = suffix(w[:, None] * self.x)
        s2 = suffix(w[:, None, None] * self.xx)
        wd = w[self.ev]
        t0 = np.bincount(self.inv, weights=wd, minlength=self.k)
        t1 = np.zeros((self.k, self.p))
        np.add.at(t1, self.inv, wd[:, None] * self.x[self.ev])
        t2 = np.zeros((self.k, self.p, self.p))
        np.add.at(t2, self.inv, wd[:, None, None] * self.xx[self.ev])
        f = self.frac
        k = self.k_idx
        a = s0[k] - f * t0[k]
        bb = s1[k] - f[:, None] * t1[k]
        cc = s2[k] - f[:, None, None] * t2[k]
        ll = float(eta[self.ev].sum() - (np.log(a) + c).sum())
        score = self.sumx_dead - (bb / a[:, None]).sum(axis=0)
        mean = bb / a[:, None]
        hess = -((cc / a[:, None, None]).sum(axis=0) - np.einsum("ki,kj->ij", mean, mean))
        out = (ll, score, hess)
        self._cache = (key, out)
        return out

    def loglike(self, b: np.ndarray) -> float:
        return self.evaluate(b)[0]

    def score(self, b: np.ndarray) -> np.ndarray:
        return self.evaluate(b)[1]

    def hessian(self, b: np.ndarray) -> np.ndarray:
        return self.evaluate(b)[2]


class _FirthLikelihood(_Likelihood):
    """Firth's penalised log partial likelihood ``l(b) + 1/2 log|I(b)|``.

    Heinze & Schemper (2001): the modified score is
    ``U*_r = U_r + 1/2 trace(I^-1 dI/db_r)``; the iteration uses ``I`` itself in
    place of the penalised information (as SAS PHREG FIRTH and R coxphf), so
    :meth:`hessian` is the unpenalised one.
    """

    def __init__(self, base: _FastLikelihood):
        self.base = base
        self.p = base.p

    def loglike(self, b: np.ndarray) -> float:
        sign, logdet = np.linalg.slogdet(-self.base.hessian(b))
        if sign <= 0:
            return -np.inf
        return self.base.loglike(b) + 0.5 * float(logdet)

    def score(self, b: np.ndarray) -> np.ndarray:
        info = -self.base.hessian(b)
        d_info = self.base.information_derivative(b)
        correction = 0.5 * np.einsum("ij,jir->r", np.linalg.inv(info), d_info)
        return self.base.score(b) + correction

    def hessian(self, b: np.ndarray) -> np.ndarray:
        return self.base.hessian(b)


def _profile_limits(lik: _Likelihood, bhat: np.ndarray, se: np.ndarray, llmax: float,
                    j: int, alpha: float) -> tuple[float, float]:
    """Profile-likelihood limits for coefficient ``j`` (on the log-HR scale).

    Solves ``h(b) = 2 * (llmax - pl(b)) - chi2_1(1 - alpha) = 0`` on each side of the
    estimate by safeguarded Newton steps: the derivative of the profile
    log-likelihood is the score of coefficient ``j`` at the constrained maximum.
    Steps leaving the current bracket fall back to bisection.
    """
    crit = float(st.chi2.ppf(1 - alpha, 1))
    free = np.ones(lik.p, dtype=bool)
    free[j] = False
    step0 = se[j] if np.isfinite(se[j]) and se[j] > 0 else 1.0
    zq = float(np.sqrt(crit))
    limits = []
    for direction in (-1, 1):
        warm = bhat.copy()

        def h(b: float) -> tuple[float, float]:
            nonlocal warm
            start = warm.copy()
            start[j] = b
            fit, ll, _, _ = lik.maximize(start, free)
            warm = fit
            return 2.0 * (llmax - ll) - crit, -2.0 * float(lik.score(fit)[j])

        inside = float(bhat[j])  # h < 0 here
        b = inside + direction * zq * step0  # start at the Wald limit
        hb, db = h(b)
        k = 0
        while hb < 0:  # walk outward (Newton, at least doubling the distance)
            inside = b
            k += 1
            if k > 30:
                break
            newton = b - hb / db if db != 0 and np.isfinite(db) else np.nan
            far = bhat[j] + 2.0 * (b - bhat[j])
            b = newton if (newton - b) * direction > 0 and (far - newton) * direction > 0 \
                else far
            hb, db = h(b)
        if hb < 0:
            limits.append(direction * np.inf)  # monotone likelihood: no finite limit
            continue
        outside = b
        for _ in range(100):
            if abs(hb) < 1e-10:
                break
            new = b - hb / db if db != 0 and np.isfinite(db) else np.nan
            lo, hi = sorted((inside, outside))
            if not (lo < new < hi):
                new = 0.5 * (inside + outside)
            if abs(new - b) < 1e-12 * max(1.0, abs(b)):
                b = new
                break
            b = new
            hb, db = h(b)
            if hb < 0:
                inside = b
            else:
                outside = b
        limits.append(b)
    return limits[0], limits[1]


def _resolve(conventions: str, **opts: str | None) -> dict[str, str]:
    if conventions not in CONVENTIONS:
        raise ValueError(f"conventions must be one of {', '.join(CONVENTIONS)}")
    return {k: (v if v is not None else CONVENTIONS[conventions][k]) for k, v in opts.items()}


def concordance(time: np.ndarray, status: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Harrell's concordance of a risk score with survival, as R ``concordance()``.

    A pair is comparable when the shorter time is an event (a censoring at the same
    time as an event counts as the later one); it is concordant when the patient who
    failed first has the higher score. Pairs of events at the same time are left
    out; comparable pairs with equal scores are ``tied_x`` and count one half:
    ``C = (concordant + tied_x / 2) / (concordant + discordant + tied_x)``.

    Parameters
    ----------
    time, status
        Follow-up times and event indicators (1 = event).
    score
        Risk score (for a Cox model the linear predictor; higher = earlier failure).

    Returns
    -------
    dict
        ``concordance``, ``concordant``, ``discordant``, ``tied_x``.
    """
    time = np.asarray(time, dtype=float)
    ev = np.asarray(status, dtype=float) == 1
    score = np.asarray(score, dtype=float)
    counts = dict.fromkeys(("concordant", "discordant", "tied_x"), 0.0)
    for i in np.flatnonzero(ev):
        later = (time > time[i]) | ((time == time[i]) & ~ev)
        diff = score[i] - score[later]
        counts["concordant"] += float(np.count_nonzero(diff > 0))
        counts["discordant"] += float(np.count_nonzero(diff < 0))
        counts["tied_x"] += float(np.count_nonzero(diff == 0))
    total = counts["concordant"] + counts["discordant"] + counts["tied_x"]
    c = (counts["concordant"] + counts["tied_x"] / 2) / total if total else float("nan")
    return {"concordance": c, **counts}


def cox(
    df: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    ties: str | None = None,
    ci: str | None = None,
    *,
    conventions: str = "sas",
    reference: Mapping[str, object] | None = None,
    alpha: float = 0.05,
    convergence: str | None = None,
    firth: bool = False,
) -> CoxResult:
    """Fit a Cox proportional-hazards model.

    Parameters
    ----------
    df
        One row per patient, complete in the columns used.
    duration, event
        Follow-up time and event indicator (1 = event, 0 = censored).
    covariates
        Columns; categorical ones become ``NAME: LEVEL vs REFERENCE`` rows.
    ties
        ``"breslow"`` or ``"efron"``; default from ``conventions``.
    ci
        ``"profile"`` (profile likelihood) or ``"wald"``; default from ``conventions``.
    conventions
        ``"sas"`` (Breslow, profile CI, PHREG's reported iterate, last level as
        reference; default) or ``"r"`` (Efron, Wald CI, converged estimate, first
        level as reference).
    reference
        Reference level per categorical covariate (wins over the conventions).
    alpha
        1 - confidence level.
    convergence
        ``"gconv"`` (SAS PHREG's reported iterate) or ``"full"``; default from
        ``conventions`` (see the module docstring).
    firth
        Maximise Firth's penalised partial likelihood (see the module docstring):
        finite estimates under monotone likelihood; profile-likelihood CIs are then
        those of the penalised likelihood.

    Returns
    -------
    CoxResult

    Warns
    -----
    ConvergenceWarning
        The iteration did not meet its criterion.
    MonotoneLikelihoodWarning
        A coefficient diverges (no finite maximum likelihood estimate).
    """
    ties, ci, convergence = _cox_options(conventions, ties, ci, convergence)
    covariates = _covariate_list(covariates)
    require_complete(df, [duration, event, *covariates])
    x, terms = design_matrix(df, covariates, reference, CONVENTIONS[conventions]["reference"])
    time, status = survival_arrays(df, duration, event)
    if status.sum() == 0:
        raise InputError("no events: a Cox model cannot be fitted")
    base = _FastLikelihood(time, status, x, ties)
    lik: _Likelihood = _FirthLikelihood(base) if firth else base
    fit = _maximize(lik, base, convergence, firth)
    diverging = _diverging(lik, fit.params, fit.se)
    _warn_about_fit(terms, diverging, fit)
    table = _coefficient_table(terms, fit, *_limits(lik, fit, ci, alpha))
    lr_test, wald_test, score_test = _global_tests(base, fit)
    conc = concordance(time, status, x @ fit.params)["concordance"]
    return CoxResult(table=table, terms=terms, params=fit.params, cov=fit.cov,
                     loglik_null=fit.loglik_null, loglik=fit.loglik,
                     lr_test=lr_test, wald_test=wald_test, score_test=score_test,
                     n=len(df), events=int(status.sum()), ties=ties, ci=ci, alpha=alpha,
                     converged=bool(fit.converged), iterations=int(fit.iterations),
                     convergence=convergence, firth=bool(firth), concordance=float(conc),
                     time=time, status=status, x=x,
                     monotone=tuple(terms[j].label for j in diverging))


def _covariate_list(covariates: Sequence[str] | str) -> list[str]:
    """``covariates`` as a list (one name may be given as a string); at least one."""
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    if not covariates:
        raise ValueError("at least one covariate is needed")
    return covariates


def _cox_options(conventions: str, ties: str | None, ci: str | None,
                 convergence: str | None) -> tuple[str, str, str]:
    """``ties``, ``ci`` and ``convergence``, defaults from ``conventions``, checked."""
    opts = _resolve(conventions, ties=ties, ci=ci, convergence=convergence)
    for name, allowed in (("ties", ("breslow", "efron")), ("ci", ("profile", "wald")),
                          ("convergence", ("gconv", "full"))):
        if opts[name] not in allowed:
            raise ValueError(f"{name} must be {' or '.join(map(repr, allowed))}")
    return opts["ties"], opts["ci"], opts["convergence"]


@dataclass(frozen=True, eq=False)
class _Fit:
    """The maximum of one Cox model's (possibly penalised) partial likelihood.

    ``info`` is the unpenalised information at ``params``, ``cov`` its inverse and ``se``
    the standard errors from it.
    """

    params: np.ndarray
    loglik_null: float
    loglik: float
    converged: bool
    iterations: int
    info: np.ndarray
    cov: np.ndarray
    se: np.ndarray


def _maximize(lik: _Likelihood, base: _FastLikelihood, convergence: str, firth: bool) -> _Fit:
    """Maximise ``lik`` from 0 by the ``convergence`` rule (see the module docstring)."""
    zero = np.zeros(base.p)
    ll0 = lik.loglike(zero)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if convergence == "gconv":
            b, ll, converged, iterations = lik.maximize_gconv()
        else:
            b, ll, converged, iterations = lik.maximize(zero, max_iter=500 if firth else 100)
        info = -base.hessian(b)
        cov = np.linalg.pinv(info) if base.p else info
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(np.diag(cov))
    return _Fit(b, ll0, ll, converged, iterations, info, cov, se)


def _warn_about_fit(terms: tuple[Term, ...], diverging: list[int], fit: _Fit) -> None:
    """Warn (on behalf of :func:`cox`'s caller) of a diverging estimate or no convergence."""
    model = ", ".join(t.label for t in terms)
    if diverging:
        labels = [terms[j].label for j in diverging]
        warnings.warn(
            f"Cox model ({model}): monotone likelihood, the estimate of {', '.join(labels)} "
            "diverges (a level with no or only events, or separation); its HR and CI are "
            "not finite estimates - use firth=True",
            MonotoneLikelihoodWarning, stacklevel=3)
    elif not fit.converged:
        warnings.warn(f"Cox model ({model}): Newton-Raphson did not converge after "
                      f"{fit.iterations} iterations", ConvergenceWarning, stacklevel=3)


def _limits(lik: _Likelihood, fit: _Fit, ci: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper confidence limits of the coefficients (log-HR scale) by ``ci``."""
    b, se = fit.params, fit.se
    if ci == "wald":
        zq = st.norm.ppf(1 - alpha / 2)
        return b - zq * se, b + zq * se
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lims = [_profile_limits(lik, b, se, fit.loglik, j, alpha) for j in range(len(b))]
    return np.array([lo for lo, _ in lims]), np.array([hi for _, hi in lims])


def _coefficient_table(terms: tuple[Term, ...], fit: _Fit, lower: np.ndarray,
                       upper: np.ndarray) -> pd.DataFrame:
    """:attr:`CoxResult.table`: one row per term, HRs and limits exponentiated."""
    b = fit.params
    with np.errstate(invalid="ignore", divide="ignore"):
        z = b / fit.se
    return pd.DataFrame({
        "covariate": [t.covariate for t in terms],
        "coef": b, "se": fit.se, "hr": np.exp(b), "hr_lower": np.exp(lower),
        "hr_upper": np.exp(upper), "z": z, "p": 2 * st.norm.sf(np.abs(z)),
    }, index=pd.Index([t.label for t in terms], name="term"))


def _global_tests(base: _FastLikelihood, fit: _Fit) -> tuple[GlobalTest, ...]:
    """Likelihood-ratio, Wald and score tests of all coefficients = 0 (score: unpenalised)."""
    p = len(fit.params)
    zero = np.zeros(p)
    u0 = base.score(zero)
    i0 = -base.hessian(zero)
    score = float(u0 @ np.linalg.solve(i0, u0))
    wald = float(fit.params @ fit.info @ fit.params)
    lr = 2 * (fit.loglik - fit.loglik_null)
    return tuple(GlobalTest(s, p, float(st.chi2.sf(s, p))) for s in (lr, wald, score))


def _diverging(lik: _Likelihood, b: np.ndarray, se: np.ndarray) -> list[int]:
    """Coefficients along which the likelihood still rises without bound.

    A coefficient diverges when its information has (numerically) vanished or the
    estimate is huge: moving it 10 further in the direction of its sign raises the
    log-likelihood by less than 1e-6 while staying above the estimate's.
    """
    out = []
    ll = lik.loglike(b)
    for j in range(len(b)):
        if np.isfinite(se[j]) and se[j] > 0 and abs(b[j]) < 10 and se[j] < 1e3:
            continue
        far = b.copy()
        far[j] += 10 * (np.sign(b[j]) or 1.0)
        gain = lik.loglike(far) - ll
        if gain > -1e-6:
            out.append(j)
    return out


@dataclass(frozen=True, eq=False)
class CoxTable:
    """Univariate and multivariate Cox models side by side (a paper's Table 2).

    Attributes
    ----------
    table
        One row per term; columns ``uni_hr``, ``uni_lower``, ``uni_upper``, ``uni_p``,
        ``multi_hr``, ``multi_lower``, ``multi_upper``, ``multi_p``.
    univariate
        Covariate -> model with that covariate alone.
    multivariate
        Model with all covariates.
    firth_terms
        Terms with monotone likelihood for which ``firth="auto"`` refitted their
        models with Firth's penalty (table order).
    """

    table: pd.DataFrame
    univariate: dict[str, CoxResult]
    multivariate: CoxResult
    firth_terms: tuple[str, ...] = ()

    def __str__(self) -> str:
        m = self.multivariate
        lines = [f"Cox models, n = {m.n}, events = {m.events}, ties = {m.ties}, "
                 f"{'profile-likelihood' if m.ci == 'profile' else 'Wald'} "
                 f"{100 * (1 - m.alpha):g}% CI"]
        width = max(len(str(i)) for i in self.table.index)
        lines.append(f"{'':{width}}  {'univariate HR (CI)':>26} {'P':>8}   "
                     f"{'multivariate HR (CI)':>26} {'P':>8}")
        for label, r in self.table.iterrows():
            uni = f"{r.uni_hr:.3f} ({r.uni_lower:.3f}-{r.uni_upper:.3f})"
            mul = f"{r.multi_hr:.3f} ({r.multi_lower:.3f}-{r.multi_upper:.3f})"
            lines.append(f"{label:{width}}  {uni:>26} {r.uni_p:8.4f}   {mul:>26} "
                         f"{r.multi_p:8.4f}")
        return "\n".join(lines)


def cox_table(
    df: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    ties: str | None = None,
    ci: str | None = None,
    *,
    conventions: str = "sas",
    reference: Mapping[str, object] | None = None,
    alpha: float = 0.05,
    convergence: str | None = None,
    firth: bool | str = False,
) -> CoxTable:
    """Fit each covariate alone and all together; see :func:`cox` for parameters.

    Parameters
    ----------
    firth
        ``False``, ``True`` (every model penalised) or ``"auto"``: a model whose
        ordinary fit has monotone likelihood is refitted with Firth's penalty
        (the :class:`MonotoneLikelihoodWarning` is then not raised; the terms are
        listed in :attr:`CoxTable.firth_terms`).

    Returns
    -------
    CoxTable
    """
    if firth not in (False, True, "auto"):
        raise ValueError("firth must be False, True or 'auto'")
    covariates = _covariate_list(covariates)
    kw = dict(ties=ties, ci=ci, conventions=conventions, reference=reference, alpha=alpha,
              convergence=convergence)
    monotone: list[str] = []

    def fit(covs: list[str]) -> CoxResult:
        if firth != "auto":
            return cox(df, duration, event, covs, firth=bool(firth), **kw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = cox(df, duration, event, covs, **kw)
        if res.monotone:
            monotone.extend(t for t in res.monotone if t not in monotone)
            return cox(df, duration, event, covs, firth=True, **kw)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return res

    uni = {c: fit([c]) for c in covariates}
    multi = fit(covariates)
    rows = []
    for label, r in multi.table.iterrows():
        u = uni[r.covariate].table.loc[label]
        rows.append({"term": label, "covariate": r.covariate,
                     "uni_hr": u.hr, "uni_lower": u.hr_lower, "uni_upper": u.hr_upper,
                     "uni_p": u.p, "multi_hr": r.hr, "multi_lower": r.hr_lower,
                     "multi_upper": r.hr_upper, "multi_p": r.p})
    order = [label for label in multi.table.index if label in monotone]
    return CoxTable(pd.DataFrame(rows).set_index("term"), uni, multi, tuple(order))
