"""Cohort statistics: Table 1, Cox PH, Kaplan-Meier, log-rank, plots and reports.

Conventions (DESIGN.md section 1). Results agree with R ``survival`` (tested to 1e-6
relative against ``scripts/r/survival_reference.R``). Two named presets:

``conventions="sas"`` (default; the reference study used SAS PROC PHREG/LIFETEST)
    Cox: Breslow ties, profile-likelihood CIs (RISKLIMITS=PL), Wald P.
    Kaplan-Meier: log-log confidence bands and median CIs.
``conventions="r"``
    Cox: Efron ties, Wald CIs (``coxph`` + ``confint``).
    Kaplan-Meier: log bands (``survfit``'s default).

2x2 tables use the Cochran rule: Pearson chi-square without continuity correction
when every expected count is >= 5, two-sided Fisher exact otherwise.
"""

from __future__ import annotations

import importlib

from ctcimg.stats.cohort import Cohort, join, load_clinical, load_cohort, load_patients
from ctcimg.stats.cox import CoxResult, CoxTable, cox, cox_table
from ctcimg.stats.km import (
    KMCurve,
    KMResult,
    LogrankResult,
    Quantile,
    confidence_band,
    kaplan_meier,
    logrank,
    quantile_r,
)
from ctcimg.stats.simulate_clinical import simulate_clinical
from ctcimg.stats.tables import TwoByTwo, compare_2x2, table1

#: plotting and report names, imported on first use (matplotlib is slow to import)
_LAZY: dict[str, str] = {
    **dict.fromkeys(["plot_km", "plot_km_panels", "save_figure"], "plot"),
    **dict.fromkeys(["Report", "build_report", "write_report"], "report"),
}

__all__ = [
    "Cohort", "CoxResult", "CoxTable", "KMCurve", "KMResult", "LogrankResult", "Quantile",
    "Report", "TwoByTwo", "build_report", "compare_2x2", "confidence_band", "cox", "cox_table",
    "join", "kaplan_meier", "load_clinical", "load_cohort", "load_patients", "logrank",
    "plot_km", "plot_km_panels", "quantile_r", "save_figure", "simulate_clinical", "table1",
    "write_report",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"ctcimg.stats.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ctcimg.stats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
