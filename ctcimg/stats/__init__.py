"""Cohort statistics: Table 1, Cox PH, Kaplan-Meier, log-rank, plots and reports.

Conventions (DESIGN.md section 1). Results agree with R ``survival`` (tested to 1e-6
relative against ``scripts/r/survival_reference.R``). Two named presets:

``conventions="sas"`` (default; the reference study used SAS PROC PHREG/LIFETEST)
    Cox: Breslow ties, profile-likelihood CIs (RISKLIMITS=PL), Wald P, PHREG's
    reported Newton-Raphson iterate (GCONV=1E-8 from beta = 0), last CLASS level
    as reference. Kaplan-Meier: log-log bands and median CIs; a quartile on a final
    plateau exactly at 1 - p is missing (NE); survival SE 0 where S reaches 0.
``conventions="r"``
    Cox: Efron ties, Wald CIs (``coxph`` + ``confint``), converged estimate, first
    level as reference. Kaplan-Meier: log bands (``survfit``'s default).

Tests of equal survival (:func:`logrank`): log-rank, Gehan-Wilcoxon, Tarone-Ware,
Peto-Peto, modified Peto-Peto, Fleming-Harrington(rho, gamma) and the exponential
likelihood ratio (SAS's -2 Log(LR)); :func:`equality_tests` is SAS's "Test of
Equality over Strata". :func:`rmst` gives restricted mean survival times,
:func:`cox_zph` the proportional-hazards test of a Cox fit (R ``cox.zph``); every
Cox result carries its concordance (R ``concordance``). ``cox(..., firth=True)`` fits
Firth's penalised model (finite estimates under monotone likelihood), and
:func:`plot_forest` draws a Cox table's hazard ratios.

2x2 tables use the Cochran rule: Pearson chi-square without continuity correction
when every expected count is >= 5, two-sided Fisher exact otherwise.
"""

from __future__ import annotations

import importlib

from ctcimg.stats.cohort import Cohort, join, load_clinical, load_cohort, load_patients
from ctcimg.stats.cox import (
    ConvergenceWarning,
    CoxResult,
    CoxTable,
    MonotoneLikelihoodWarning,
    concordance,
    cox,
    cox_table,
)
from ctcimg.stats.diagnostics import ZphResult, cox_zph
from ctcimg.stats.km import (
    KMCurve,
    KMResult,
    LogrankResult,
    Quantile,
    confidence_band,
    equality_tests,
    kaplan_meier,
    logrank,
    quantile_r,
)
from ctcimg.stats.rmst import RMSTDifference, RMSTResult, rmst
from ctcimg.stats.simulate_clinical import simulate_clinical
from ctcimg.stats.tables import TwoByTwo, compare_2x2, table1

#: plotting and report names, imported on first use (matplotlib is slow to import)
_LAZY: dict[str, str] = {
    **dict.fromkeys(["plot_forest", "plot_km", "plot_km_panels", "save_figure"], "plot"),
    **dict.fromkeys(["Report", "build_report", "write_report"], "report"),
}

__all__ = [
    "Cohort", "ConvergenceWarning", "CoxResult", "CoxTable", "KMCurve", "KMResult",
    "LogrankResult", "MonotoneLikelihoodWarning", "Quantile", "RMSTDifference", "RMSTResult",
    "Report", "TwoByTwo", "ZphResult", "build_report", "compare_2x2", "concordance",
    "confidence_band", "cox", "cox_table", "cox_zph", "equality_tests", "join", "kaplan_meier",
    "load_clinical", "load_cohort", "load_patients", "logrank", "plot_forest", "plot_km",
    "plot_km_panels",
    "quantile_r", "rmst", "save_figure", "simulate_clinical", "table1", "write_report",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"ctcimg.stats.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ctcimg.stats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
