"""Cohort report: all patients by CTC detection, then the CTC-HER2 tables, Cox models,
forest plot, Kaplan-Meier medians, tests of equality and plots.

:func:`build_report` computes everything in memory; :func:`write_report` then
writes Markdown, self-contained HTML (plots embedded as base64 PNG, no network),
the plots as PNG and SVG, and the tables as CSV. Files are written under temporary
names and renamed into place; a new report directory is assembled beside its target
and renamed as a whole, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctcimg.errors import InputError
from ctcimg.io.atomic import write_bytes_atomic
from ctcimg.stats.cohort import CTC_GROUP, GROUP, Cohort, add_ctc_cutoffs, ctc_cutoff_column
from ctcimg.stats.cox import CONVENTIONS, CoxTable, cox_table
from ctcimg.stats.diagnostics import cox_zph
from ctcimg.stats.km import KMResult, LogrankResult, equality_tests, kaplan_meier, logrank
from ctcimg.stats.plot import (
    figure_bytes,
    plot_forest,
    plot_km,
    plot_km_panels,
    term_counts,
)
from ctcimg.stats.tables import table1

LABELS = {"positive": "CTC-HER2+", "negative": "CTC-HER2-"}
#: Display names of the CTC-detection groups of the all-patients part.
CTC_LABELS = {"detected": "CTC >= 1", "none": "CTC = 0"}


@dataclass(frozen=True, eq=False)
class Report:
    """A rendered report, not yet on disk.

    Attributes
    ----------
    markdown, html
        The report texts.
    files
        File name -> content of every file to write (including the two texts).
    table1, cox, medians, logrank
        The underlying results of the CTC-HER2 part (``logrank`` also holds the
        all-patients test under ``"ctc_detected"``).
    table_s1, ctc_cutoffs
        The all-patients part: characteristics by CTC detection, and one row per
        CTC-count cut-off (univariate Cox over all patients); empty when the
        patients table has no ``ctc_count``.
    """

    markdown: str
    html: str
    files: dict[str, bytes]
    table1: pd.DataFrame
    cox: CoxTable | None
    medians: pd.DataFrame
    logrank: dict[str, LogrankResult] = field(default_factory=dict)
    table_s1: pd.DataFrame = field(default_factory=pd.DataFrame)
    ctc_cutoffs: pd.DataFrame = field(default_factory=pd.DataFrame)


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


def _num(v: float, digits: int = 3) -> str:
    return "NR" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _medians(km: KMResult, test: LogrankResult | None, subgroup: str = "all",
             labels: dict[str, str] = LABELS) -> pd.DataFrame:
    rows = []
    for g, c in km.curves.items():
        rows.append({"subgroup": subgroup, "group": labels.get(g, g), "n": c.n,
                     "events": c.events, "median": _num(c.median.time, 1),
                     "95% CI": f"{_num(c.median.lower, 1)}-{_num(c.median.upper, 1)}",
                     "log-rank P": _p(test.pvalue) if test is not None else ""})
    return pd.DataFrame(rows)


def _term_name(label: str) -> str:
    """Display name of a Cox term (the CTC-HER2 and CTC-count terms spelled out)."""
    if label == f"{GROUP}: positive vs negative":
        return "CTC-HER2+ vs CTC-HER2-"
    prefix, suffix = "ctc_ge_", ": yes vs no"
    if label.startswith(prefix) and label.endswith(suffix):
        c = label[len(prefix):-len(suffix)]
        return f"CTC count >= {c} vs < {c}"
    return label


def _equality(df: pd.DataFrame, t: str, e: str, group: str) -> pd.DataFrame:
    eq = equality_tests(df, t, e, group)
    return eq.assign(**{"Chi-Square": [f"{v:.4f}" for v in eq["Chi-Square"]],
                        "Pr > Chi-Square": [_p(v) for v in eq["Pr > Chi-Square"]]})


def _firth_note(terms: Sequence[str], what: str) -> str:
    names = ", ".join(_term_name(t) for t in terms)
    return (f"{what}: monotone likelihood (an estimate diverges; e.g. a level without "
            f"events) for {names}; the models containing it were fitted with Firth's "
            "penalised partial likelihood (Heinze & Schemper 2001, as SAS PHREG FIRTH), "
            "CIs from the profile penalised likelihood.")


def build_report(
    cohort: Cohort,
    covariates: Sequence[str] = (),
    subgroups: Sequence[str] = (),
    *,
    conventions: str = "sas",
    ties: str | None = None,
    ci: str | None = None,
    conf_type: str | None = None,
    ctc_cutoffs: Sequence[int] = (1, 5),
    title: str = "CTC-HER2 cohort statistics",
    sources: Sequence[str] = (),
) -> Report:
    """Compute every table and plot of the cohort report.

    The report has two parts, as the reference study's analysis plan. *All
    patients* (when the patients table has ``ctc_count``): Table S1 of
    characteristics by CTC detection (0 vs >= 1 CTCs), Kaplan-Meier and the tests of
    equality for CTC = 0 vs >= 1, and a univariate Cox model per CTC-count cut-off.
    *CTC-HER2* (patients with CTCs): Table 1, univariate and multivariate Cox models
    (with ``CTC count >= c`` covariates for the cut-offs above 1), their forest plot,
    the proportional-hazards check, Kaplan-Meier, tests of equality and subgroups.
    A Cox model with monotone likelihood is refitted with Firth's penalty and the
    report says so.

    Parameters
    ----------
    cohort
        Joined cohort (:func:`ctcimg.stats.load_cohort`).
    covariates
        Clinical covariates for Table 1 and the Cox models (numeric ones as
        continuous; others categorical).
    subgroups
        Columns for subgroup Kaplan-Meier panels and log-rank tests.
    conventions, ties, ci, conf_type
        Statistical conventions (``"sas"``: Breslow ties, profile-likelihood CIs,
        log-log bands; ``"r"``: Efron, Wald, log); explicit options win.
    ctc_cutoffs
        CTC-count cut-offs (whole numbers >= 1) for ``CTC count >= c vs < c``.
    title
        Report heading.
    sources
        Input file names to list in the report.

    Returns
    -------
    Report
    """
    options = _options(cohort.data, covariates, subgroups, conventions, ties, ci, conf_type,
                       ctc_cutoffs)
    everyone = _all_patients(cohort, options)
    her2 = _ctc_her2(cohort, options, covariates, subgroups)
    figures = {**everyone.figures, **her2.figures}
    files, png = _report_files(figures, everyone, her2)
    facts = _facts(cohort, everyone.data, her2.data, options, sources)
    notes = [*everyone.notes, *her2.notes]
    sections = _sections(everyone, her2, options, figures)
    excluded = pd.DataFrame(list(cohort.excluded), columns=["id", "reason"])
    markdown = _markdown(title, facts, notes, sections, excluded)
    page = _html(title, facts, notes, sections, excluded, png)
    files["report.md"] = markdown.encode()
    files["report.html"] = page.encode()
    return Report(markdown, page, files, her2.table1, her2.cox, her2.medians,
                  {**everyone.tests, **her2.tests}, everyone.table_s1, everyone.cutoffs)


@dataclass(frozen=True)
class _Options:
    """A report's statistical options with their defaults resolved, and its covariates
    by kind (numeric ones continuous, the others categorical)."""

    conventions: str
    ties: str
    ci: str
    conf_type: str
    cutoffs: tuple[int, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def cox_options(self) -> dict[str, str]:
        """Keyword arguments of every :func:`cox_table` of the report."""
        return dict(ties=self.ties, ci=self.ci, conventions=self.conventions, firth="auto")

    @property
    def ci_text(self) -> str:
        return "profile likelihood" if self.ci == "profile" else "Wald"


def _options(df: pd.DataFrame, covariates: Sequence[str], subgroups: Sequence[str],
             conventions: str, ties: str | None, ci: str | None, conf_type: str | None,
             ctc_cutoffs: Sequence[int]) -> _Options:
    """:class:`_Options` of :func:`build_report`'s arguments; bad ones raise InputError."""
    if len(df) == 0:
        raise InputError("no evaluable patients (all failed, not evaluable or excluded)")
    conv = CONVENTIONS[conventions]
    missing = [c for c in [*covariates, *subgroups] if c not in df.columns]
    if missing:
        raise InputError(f"unknown column(s) {', '.join(map(repr, missing))} in the clinical table")
    if any(int(c) != c or c < 1 for c in ctc_cutoffs):
        raise InputError(f"CTC cut-offs must be whole numbers >= 1, got "
                         f"{', '.join(map(str, ctc_cutoffs))}")
    numeric = tuple(c for c in covariates if pd.api.types.is_numeric_dtype(df[c])
                    and not pd.api.types.is_bool_dtype(df[c]))
    return _Options(conventions, ties or conv["ties"], ci or conv["ci"],
                    conf_type or conv["conf_type"], tuple(sorted({int(c) for c in ctc_cutoffs})),
                    numeric, tuple(c for c in covariates if c not in numeric))


@dataclass(eq=False)
class _Part:
    """What one part of the report found for its patients (``data``): Kaplan-Meier
    medians, tests of equality, log-rank tests, plots and notes."""

    data: pd.DataFrame
    medians: pd.DataFrame = field(default_factory=pd.DataFrame)
    equality: pd.DataFrame = field(default_factory=pd.DataFrame)
    tests: dict[str, LogrankResult] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _AllPatients(_Part):
    """The all-patients part, filled in by :func:`_all_patients`."""

    table_s1: pd.DataFrame = field(default_factory=pd.DataFrame)
    cutoffs: pd.DataFrame = field(default_factory=pd.DataFrame)


def _all_patients(cohort: Cohort, options: _Options) -> _AllPatients:
    """CTC = 0 vs >= 1 (Table S1, Kaplan-Meier, tests of equality) and a univariate Cox
    model per CTC-count cut-off, over every patient with a result."""
    alld = cohort.all_data
    if not (len(alld) and "ctc_count" in alld.columns):
        return _AllPatients(alld, notes=["All-patients part omitted: the patients table has "
                                         "no ctc_count column."])
    part = _AllPatients(add_ctc_cutoffs(alld, options.cutoffs))
    alld, t, e = part.data, cohort.time, cohort.event
    detected = set(alld[CTC_GROUP].astype(object))
    if len(detected) == 2:
        part.table_s1 = table1(alld, CTC_GROUP, options.categorical, options.numeric,
                               groups=["detected", "none"])
        km = kaplan_meier(alld, t, e, CTC_GROUP, options.conf_type,
                          conventions=options.conventions)
        test = logrank(alld, t, e, CTC_GROUP)
        part.tests[CTC_GROUP] = test
        part.medians = _medians(km, test, "all patients", CTC_LABELS)
        part.equality = _equality(alld, t, e, CTC_GROUP)
        part.figures["km_ctc"] = plot_km(km, test, "Progression-free survival by CTC detection",
                                         labels=CTC_LABELS)
    else:
        part.notes.append("All patients: every patient has "
                          f"{'no' if detected == {'none'} else 'at least one'} CTC; "
                          "no comparison by CTC detection.")
    part.cutoffs = _cutoff_models(alld, t, e, options, part.notes)
    return part


def _cutoff_models(alld: pd.DataFrame, t: str, e: str, options: _Options,
                   notes: list[str]) -> pd.DataFrame:
    """One univariate Cox model per CTC-count cut-off, a row each; notes what it skips."""
    rows = []
    cut_firth: list[str] = []
    for c in options.cutoffs:
        col = ctc_cutoff_column(c)
        if alld[col].nunique() < 2 or alld[e].sum() == 0:
            notes.append(f"All patients: CTC count >= {c} splits no one; no Cox model.")
            continue
        res = cox_table(alld, t, e, [col], reference={col: "no"}, **options.cox_options)
        cut_firth += list(res.firth_terms)
        r = res.multivariate.table.iloc[0]
        rows.append({"term": _term_name(res.multivariate.table.index[0]),
                     "n/events": term_counts(res.multivariate)[0],
                     "HR (95% CI)": f"{_num(r.hr)} ({_num(r.hr_lower)}-{_num(r.hr_upper)})",
                     "P": _p(r.p), "Firth": "yes" if res.multivariate.firth else ""})
    if cut_firth:
        notes.append(_firth_note(cut_firth, "CTC-count cut-offs"))
    return pd.DataFrame(rows)


@dataclass(eq=False)
class _CtcHer2(_Part):
    """The CTC-HER2 part, filled in by :func:`_ctc_her2`."""

    table1: pd.DataFrame = field(default_factory=pd.DataFrame)
    cox: CoxTable | None = None
    table2: pd.DataFrame = field(default_factory=pd.DataFrame)
    checks: pd.DataFrame = field(default_factory=pd.DataFrame)


def _ctc_her2(cohort: Cohort, options: _Options, covariates: Sequence[str],
              subgroups: Sequence[str]) -> _CtcHer2:
    """Table 1, the Cox models with their checks, and Kaplan-Meier by CTC-HER2 status,
    over the patients with CTCs."""
    df, cox_covs, reference, categorical, notes = _with_cutoff_covariates(
        cohort.data, options, covariates)
    present = set(cohort.data[GROUP].astype(object))
    t1 = table1(df, GROUP, categorical, options.numeric) if len(present) == 2 else pd.DataFrame()
    if len(present) < 2:
        notes.append(f"Only {', '.join(sorted(present))} patients: no between-group comparison.")
    part = _CtcHer2(df, notes=notes, table1=t1)
    if len(present) == 2 and df[cohort.event].sum() > 0:
        try:
            part.cox = cox_table(df, cohort.time, cohort.event, [GROUP, *cox_covs],
                                 reference=reference, **options.cox_options)
        except (InputError, np.linalg.LinAlgError) as err:
            notes.append(f"Cox model not fitted: {err}")
    if part.cox is not None:
        _add_cox_results(part, part.cox)
    _add_kaplan_meier(part, cohort, options, subgroups)
    return part


def _with_cutoff_covariates(df: pd.DataFrame, options: _Options, covariates: Sequence[str]
                            ) -> tuple[pd.DataFrame, list[str], dict[str, object], list[str],
                                       list[str]]:
    """``df`` with a ``CTC count >= c`` column per cut-off above 1, and the Cox covariates,
    reference levels, categorical covariates and notes that follow from them."""
    cox_covs = list(covariates)
    reference: dict[str, object] = {GROUP: "negative"}
    categorical = list(options.categorical)
    notes: list[str] = []
    if "ctc_count" in df.columns:
        df = add_ctc_cutoffs(df, [c for c in options.cutoffs if c > 1])
        for c in options.cutoffs:
            col = ctc_cutoff_column(c)
            if c == 1 or col not in df.columns:
                continue
            if df[col].nunique() < 2:
                notes.append(f"CTC count >= {c} is the same for every CTC-detected patient; "
                             "left out of Table 1 and the Cox models.")
                continue
            cox_covs.append(col)
            categorical.append(col)
            reference[col] = "no"
    return df, cox_covs, reference, categorical, notes


def _add_cox_results(part: _CtcHer2, cox_res: CoxTable) -> None:
    """Table 2, the forest plot and the proportional-hazards check of the Cox models."""
    tab = cox_res.table
    firth = set(cox_res.firth_terms)
    part.table2 = pd.DataFrame({
        "term": [_term_name(str(i)) + (" (Firth)" if i in firth else "") for i in tab.index],
        "n/events": term_counts(cox_res.multivariate),
        "univariate HR (95% CI)": [f"{_num(r.uni_hr)} ({_num(r.uni_lower)}-"
                                   f"{_num(r.uni_upper)})" for r in tab.itertuples()],
        "P (uni)": [_p(p) for p in tab.uni_p],
        "multivariate HR (95% CI)": [f"{_num(r.multi_hr)} ({_num(r.multi_lower)}-"
                                     f"{_num(r.multi_upper)})" for r in tab.itertuples()],
        "P (multi)": [_p(p) for p in tab.multi_p],
    })
    if firth:
        part.notes.append(_firth_note(cox_res.firth_terms, "Table 2"))
    part.figures["forest"] = plot_forest(
        cox_res, {str(i): _term_name(str(i)) for i in tab.index},
        "Progression-free survival, CTC-detected patients: Cox hazard ratios")
    multi = cox_res.multivariate
    zph = cox_zph(multi).table
    part.checks = pd.DataFrame({
        "term": [_term_name(str(i)) for i in zph.index],
        "PH chi-square (km time)": [f"{v:.3f}" for v in zph.chisq],
        "df": list(zph.df), "P": [_p(v) for v in zph.p]})
    part.notes.append(f"Multivariate Cox model: concordance {multi.concordance:.3f}; "
                      f"{'converged' if multi.converged else 'did NOT converge'} after "
                      f"{multi.iterations} Newton-Raphson iterations"
                      f"{' (Firth penalised)' if multi.firth else ''}.")


def _add_kaplan_meier(part: _CtcHer2, cohort: Cohort, options: _Options,
                      subgroups: Sequence[str]) -> None:
    """Kaplan-Meier, medians and log-rank tests by CTC-HER2 status, overall and per
    level of each subgroup column."""
    df, t, e = part.data, cohort.time, cohort.event
    conf_type, conventions = options.conf_type, options.conventions
    km = kaplan_meier(df, t, e, GROUP, conf_type, conventions=conventions)
    test = logrank(df, t, e, GROUP) if len(km.curves) > 1 else None
    if test is not None:
        part.tests["all"] = test
        part.equality = _equality(df, t, e, GROUP)
    medians = [_medians(km, test)]
    part.figures["km"] = plot_km(km, test, "Progression-free survival by CTC-HER2 status",
                                 labels=LABELS)
    for sg in subgroups:
        for lev in sorted(pd.unique(df[sg].dropna()).tolist(), key=str):
            sub = df.loc[df[sg] == lev]
            skm = kaplan_meier(sub, t, e, GROUP, conf_type, conventions=conventions)
            stest = logrank(sub, t, e, GROUP) if len(skm.curves) > 1 else None
            if stest is not None:
                part.tests[f"{sg}={lev}"] = stest
            medians.append(_medians(skm, stest, f"{sg} = {lev}"))
        part.figures[f"km_by_{sg}"] = plot_km_panels(df, t, e, GROUP, sg, conf_type,
                                                     conventions, labels=LABELS)
    part.medians = pd.concat(medians, ignore_index=True)


def _report_files(figures: dict[str, object], everyone: _AllPatients, her2: _CtcHer2
                  ) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The plots (PNG and SVG) and tables (CSV) to write, and the PNG of each plot."""
    files: dict[str, bytes] = {}
    png: dict[str, bytes] = {}
    for name, fig in figures.items():
        png[name] = figure_bytes(fig, "png")
        files[f"{name}.png"] = png[name]
        files[f"{name}.svg"] = figure_bytes(fig, "svg")
    if len(her2.table1):
        files["table1.csv"] = her2.table1.to_csv(index=False).encode()
    if len(everyone.table_s1):
        files["table_s1.csv"] = everyone.table_s1.to_csv(index=False).encode()
    if len(everyone.cutoffs):
        files["cox_ctc_cutoffs.csv"] = everyone.cutoffs.to_csv(index=False).encode()
    if her2.cox is not None:
        tab = her2.cox.table
        files["cox.csv"] = tab.assign(
            firth=[i in set(her2.cox.firth_terms) for i in tab.index]).to_csv().encode()
    files["km_medians.csv"] = pd.concat([everyone.medians, her2.medians],
                                        ignore_index=True).to_csv(index=False).encode()
    return files, png


def _facts(cohort: Cohort, alld: pd.DataFrame, df: pd.DataFrame, options: _Options,
           sources: Sequence[str]) -> list[str]:
    """The report's opening list: inputs, rule, patients, exclusions and conventions."""
    e = cohort.event
    n_pos = int((df[GROUP] == "positive").sum())
    n_neg = int((df[GROUP] == "negative").sum())
    excl = cohort.exclusion_counts()
    facts = [
        f"Positivity rule: {cohort.rule}",
        f"Patients table: {cohort.n_patients} rows; clinical table: {cohort.n_clinical} rows",
    ]
    if len(alld):
        n_det = int((alld[CTC_GROUP] == "detected").sum())
        facts.append(f"All patients: {len(alld)} ({n_det} with CTCs, {len(alld) - n_det} "
                     f"without), {int(alld[e].sum())} events")
    facts += [
        f"Analysed: {len(df)} patients ({n_pos} CTC-HER2+, {n_neg} CTC-HER2-), "
        f"{int(df[e].sum())} events",
        "Excluded: " + (", ".join(f"{v} {k}" for k, v in excl.items()) if excl else "none"),
        f"Conventions: {options.conventions} - Cox ties {options.ties}, {options.ci_text} 95% "
        f"CI, Wald P; Kaplan-Meier {options.conf_type} CI, medians by Brookmeyer-Crowley; 2x2 "
        "tests by the Cochran rule (chi-square without continuity correction if all expected "
        "counts >= 5, else Fisher exact); continuous covariates: median (range), Mann-Whitney U",
    ]
    if sources:
        facts.insert(0, "Inputs: " + ", ".join(sources))
    return facts


#: One part of the report as shown: its heading, its (heading, table) sections and plots.
_Section = tuple[str, list[tuple[str, pd.DataFrame]], list[str]]


def _sections(everyone: _AllPatients, her2: _CtcHer2, options: _Options,
              figures: dict[str, object]) -> list[_Section]:
    """The two parts of the report with the tables as shown."""
    ties, ci_text = options.ties, options.ci_text
    return [
        ("All patients", [
            ("Table S1. Patient characteristics by CTC detection (CTC >= 1 vs CTC = 0)",
             _table_s1_shown(everyone.table_s1)),
            ("Kaplan-Meier median PFS by CTC detection", everyone.medians),
            ("Test of Equality over Strata (CTC >= 1 vs CTC = 0)", everyone.equality),
            (f"Univariate Cox models for CTC-count cut-offs ({ties} ties, {ci_text} CI)",
             everyone.cutoffs)], [n for n in ("km_ctc",) if n in figures]),
        ("CTC-HER2 (patients with CTCs)", [
            ("Table 1. Patient characteristics by CTC-HER2 status", _table1_shown(her2.table1)),
            (f"Table 2. Cox proportional hazards for PFS ({ties} ties, {ci_text} CI)",
             her2.table2),
            ("Proportional-hazards check (Schoenfeld residuals, R cox.zph) of the "
             "multivariate model", her2.checks),
            ("Kaplan-Meier median PFS and log-rank tests", her2.medians),
            ("Test of Equality over Strata (CTC-HER2+ vs CTC-HER2-)", her2.equality)],
         [n for n in figures if n != "km_ctc"]),
    ]


def _table1_shown(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as the report shows it: counts with row %, cut-off variables spelled out."""
    if not len(t1):
        return pd.DataFrame()
    shown = t1[["variable", "level", "positive", "negative", "test", "p_text"]].rename(
        columns={"positive": "CTC-HER2+ n (row %)", "negative": "CTC-HER2- n (row %)",
                 "p_text": "P"})
    shown["variable"] = [f"CTC count >= {str(v)[len('ctc_ge_'):]}"
                         if str(v).startswith("ctc_ge_") else v for v in shown["variable"]]
    return shown


def _table_s1_shown(t_s1: pd.DataFrame) -> pd.DataFrame:
    """Table S1 as the report shows it: counts with row % per CTC-detection group."""
    if not len(t_s1):
        return pd.DataFrame()
    return t_s1[["variable", "level", "detected", "none", "test", "p_text"]].rename(
        columns={"detected": "CTC >= 1 n (row %)", "none": "CTC = 0 n (row %)", "p_text": "P"})


def _shown(sections: list[_Section]) -> list[_Section]:
    """The parts with something to show, each with its non-empty tables only."""
    out = []
    for part, tables, plots in sections:
        shown = [(h, tab) for h, tab in tables if len(tab)]
        if shown or plots:
            out.append((part, shown, plots))
    return out


def _markdown(title: str, facts: list[str], notes: list[str], sections: list[_Section],
              excluded: pd.DataFrame) -> str:
    """report.md: facts, notes, then each part's tables and links to its plots."""
    md = [f"# {title}", ""] + [f"- {f}" for f in facts] + [""]
    md += [f"> {n}" for n in notes]
    for part, tables, plots in _shown(sections):
        md += [f"## {part}", ""]
        for head, tab in tables:
            md += [f"### {head}", "", _md_table(tab), ""]
        if plots:
            md += ["### Plots", ""]
        for name in plots:
            md += [f"![{name}]({name}.png)", "", f"SVG: [{name}.svg]({name}.svg)", ""]
    if len(excluded):
        md += ["## Excluded patients", "", _md_table(excluded), ""]
    return "\n".join(md)


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
          "th{background:#f2f2f2}img{max-width:100%}")


def _html(title: str, facts: list[str], notes: list[str], sections: list[_Section],
          excluded: pd.DataFrame, png: dict[str, bytes]) -> str:
    """report.html: the same content as the Markdown, plots embedded as base64 PNG."""
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    body += [f"<li>{html.escape(f)}</li>" for f in facts] + ["</ul>"]
    body += [f"<p><em>{html.escape(n)}</em></p>" for n in notes]
    for part, tables, plots in _shown(sections):
        body.append(f"<h2>{html.escape(part)}</h2>")
        for head, tab in tables:
            body += [f"<h3>{html.escape(head)}</h3>", _html_table(tab)]
        if plots:
            body.append("<h3>Plots</h3>")
        for name in plots:
            b64 = base64.b64encode(png[name]).decode("ascii")
            body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{b64}">'
                        "</figure>")
    if len(excluded):
        body += ["<h2>Excluded patients</h2>", _html_table(excluded)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(report: Report, report_dir: str | Path) -> list[Path]:
    """Write a built report into ``report_dir`` without leaving partial files.

    Parameters
    ----------
    report
        From :func:`build_report`.
    report_dir
        Target directory. If it does not exist, the report is assembled in a
        temporary sibling directory that is then renamed to it; if it exists, each
        file is written under a temporary name and renamed over the old one.

    Returns
    -------
    list of Path
        The files written.
    """
    target = Path(report_dir)
    if target.exists() and not target.is_dir():
        raise InputError("exists and is not a directory", target)
    names = sorted(report.files)
    if not target.exists():
        parent = target.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
        try:
            for name in names:
                (tmp / name).write_bytes(report.files[name])
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        for name in names:
            write_bytes_atomic(target / name, report.files[name])
    return [target / n for n in names]
