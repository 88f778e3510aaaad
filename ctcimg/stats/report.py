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
    df = cohort.data
    t, e = cohort.time, cohort.event
    if len(df) == 0:
        raise InputError("no evaluable patients (all failed, not evaluable or excluded)")
    present = set(df[GROUP].astype(object))
    conv = CONVENTIONS[conventions]
    ties = ties or conv["ties"]
    ci = ci or conv["ci"]
    conf_type = conf_type or conv["conf_type"]
    missing = [c for c in [*covariates, *subgroups] if c not in df.columns]
    if missing:
        raise InputError(f"unknown column(s) {', '.join(map(repr, missing))} in the clinical table")
    if any(int(c) != c or c < 1 for c in ctc_cutoffs):
        raise InputError(f"CTC cut-offs must be whole numbers >= 1, got "
                         f"{', '.join(map(str, ctc_cutoffs))}")
    cutoffs = sorted({int(c) for c in ctc_cutoffs})
    numeric = [c for c in covariates if pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    categorical = [c for c in covariates if c not in numeric]
    notes: list[str] = []
    cox_kw = dict(ties=ties, ci=ci, conventions=conventions, firth="auto")
    figures: dict[str, object] = {}

    # --- all patients: CTC = 0 vs >= 1, CTC-count cut-offs
    alld = cohort.all_data
    t_s1 = pd.DataFrame()
    cut_df = pd.DataFrame()
    med_all = pd.DataFrame()
    eq_all = pd.DataFrame()
    tests: dict[str, LogrankResult] = {}
    if len(alld) and "ctc_count" in alld.columns:
        alld = add_ctc_cutoffs(alld, cutoffs)
        detected = set(alld[CTC_GROUP].astype(object))
        if len(detected) == 2:
            t_s1 = table1(alld, CTC_GROUP, categorical, numeric, groups=["detected", "none"])
            km_all = kaplan_meier(alld, t, e, CTC_GROUP, conf_type, conventions=conventions)
            test_all = logrank(alld, t, e, CTC_GROUP)
            tests[CTC_GROUP] = test_all
            med_all = _medians(km_all, test_all, "all patients", CTC_LABELS)
            eq_all = _equality(alld, t, e, CTC_GROUP)
            figures["km_ctc"] = plot_km(km_all, test_all,
                                        "Progression-free survival by CTC detection",
                                        labels=CTC_LABELS)
        else:
            notes.append("All patients: every patient has "
                         f"{'no' if detected == {'none'} else 'at least one'} CTC; "
                         "no comparison by CTC detection.")
        rows = []
        cut_firth: list[str] = []
        for c in cutoffs:
            col = ctc_cutoff_column(c)
            if alld[col].nunique() < 2 or alld[e].sum() == 0:
                notes.append(f"All patients: CTC count >= {c} splits no one; no Cox model.")
                continue
            res = cox_table(alld, t, e, [col], reference={col: "no"}, **cox_kw)
            cut_firth += list(res.firth_terms)
            r = res.multivariate.table.iloc[0]
            rows.append({"term": _term_name(res.multivariate.table.index[0]),
                         "n/events": term_counts(res.multivariate)[0],
                         "HR (95% CI)": f"{_num(r.hr)} ({_num(r.hr_lower)}-{_num(r.hr_upper)})",
                         "P": _p(r.p), "Firth": "yes" if res.multivariate.firth else ""})
        cut_df = pd.DataFrame(rows)
        if cut_firth:
            notes.append(_firth_note(cut_firth, "CTC-count cut-offs"))
    else:
        notes.append("All-patients part omitted: the patients table has no ctc_count column.")

    # --- CTC-HER2 (patients with CTCs)
    cox_covs = list(covariates)
    reference: dict[str, object] = {GROUP: "negative"}
    if "ctc_count" in df.columns:
        df = add_ctc_cutoffs(df, [c for c in cutoffs if c > 1])
        for c in cutoffs:
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
    t1 = table1(df, GROUP, categorical, numeric) if len(present) == 2 else pd.DataFrame()
    if len(present) < 2:
        notes.append(f"Only {', '.join(sorted(present))} patients: no between-group comparison.")

    cox_res: CoxTable | None = None
    cox_df = pd.DataFrame()
    if len(present) == 2 and df[e].sum() > 0:
        try:
            cox_res = cox_table(df, t, e, [GROUP, *cox_covs], reference=reference, **cox_kw)
        except (InputError, np.linalg.LinAlgError) as err:
            notes.append(f"Cox model not fitted: {err}")
    if cox_res is not None:
        tab = cox_res.table
        firth = set(cox_res.firth_terms)
        cox_df = pd.DataFrame({
            "term": [_term_name(str(i)) + (" (Firth)" if i in firth else "")
                     for i in tab.index],
            "n/events": term_counts(cox_res.multivariate),
            "univariate HR (95% CI)": [f"{_num(r.uni_hr)} ({_num(r.uni_lower)}-"
                                       f"{_num(r.uni_upper)})" for r in tab.itertuples()],
            "P (uni)": [_p(p) for p in tab.uni_p],
            "multivariate HR (95% CI)": [f"{_num(r.multi_hr)} ({_num(r.multi_lower)}-"
                                         f"{_num(r.multi_upper)})" for r in tab.itertuples()],
            "P (multi)": [_p(p) for p in tab.multi_p],
        })
        if firth:
            notes.append(_firth_note(cox_res.firth_terms, "Table 2"))
        figures["forest"] = plot_forest(
            cox_res, {str(i): _term_name(str(i)) for i in tab.index},
            "Progression-free survival, CTC-detected patients: Cox hazard ratios")

    checks_df = pd.DataFrame()
    if cox_res is not None:
        multi = cox_res.multivariate
        zph = cox_zph(multi).table
        checks_df = pd.DataFrame({
            "term": [_term_name(str(i)) for i in zph.index],
            "PH chi-square (km time)": [f"{v:.3f}" for v in zph.chisq],
            "df": list(zph.df), "P": [_p(v) for v in zph.p]})
        notes.append(f"Multivariate Cox model: concordance {multi.concordance:.3f}; "
                     f"{'converged' if multi.converged else 'did NOT converge'} after "
                     f"{multi.iterations} Newton-Raphson iterations"
                     f"{' (Firth penalised)' if multi.firth else ''}.")

    km = kaplan_meier(df, t, e, GROUP, conf_type, conventions=conventions)
    test = logrank(df, t, e, GROUP) if len(km.curves) > 1 else None
    if test is not None:
        tests["all"] = test
    equality = _equality(df, t, e, GROUP) if test is not None else pd.DataFrame()
    medians = [_medians(km, test)]
    figures["km"] = plot_km(km, test, "Progression-free survival by CTC-HER2 status",
                            labels=LABELS)
    for sg in subgroups:
        sub_levels = [v for v in sorted(pd.unique(df[sg].dropna()).tolist(), key=str)]
        for lev in sub_levels:
            sub = df.loc[df[sg] == lev]
            skm = kaplan_meier(sub, t, e, GROUP, conf_type, conventions=conventions)
            stest = logrank(sub, t, e, GROUP) if len(skm.curves) > 1 else None
            if stest is not None:
                tests[f"{sg}={lev}"] = stest
            medians.append(_medians(skm, stest, f"{sg} = {lev}"))
        figures[f"km_by_{sg}"] = plot_km_panels(df, t, e, GROUP, sg, conf_type, conventions,
                                                labels=LABELS)
    med = pd.concat(medians, ignore_index=True)

    files: dict[str, bytes] = {}
    png: dict[str, bytes] = {}
    for name, fig in figures.items():
        png[name] = figure_bytes(fig, "png")
        files[f"{name}.png"] = png[name]
        files[f"{name}.svg"] = figure_bytes(fig, "svg")
    if len(t1):
        files["table1.csv"] = t1.to_csv(index=False).encode()
    if len(t_s1):
        files["table_s1.csv"] = t_s1.to_csv(index=False).encode()
    if len(cut_df):
        files["cox_ctc_cutoffs.csv"] = cut_df.to_csv(index=False).encode()
    if cox_res is not None:
        files["cox.csv"] = cox_res.table.assign(
            firth=[i in set(cox_res.firth_terms) for i in cox_res.table.index]).to_csv().encode()
    files["km_medians.csv"] = pd.concat([med_all, med], ignore_index=True).to_csv(
        index=False).encode()

    n_pos = int((df[GROUP] == "positive").sum())
    n_neg = int((df[GROUP] == "negative").sum())
    excl = cohort.exclusion_counts()
    ci_text = "profile likelihood" if ci == "profile" else "Wald"
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
        f"Conventions: {conventions} - Cox ties {ties}, {ci_text} 95% CI, Wald P; "
        f"Kaplan-Meier {conf_type} CI, medians by Brookmeyer-Crowley; 2x2 tests by the Cochran "
        "rule (chi-square without continuity correction if all expected counts >= 5, else "
        "Fisher exact); continuous covariates: median (range), Mann-Whitney U",
    ]
    if sources:
        facts.insert(0, "Inputs: " + ", ".join(sources))
    t1_show = pd.DataFrame()
    if len(t1):
        t1_show = t1[["variable", "level", "positive", "negative", "test", "p_text"]].rename(
            columns={"positive": "CTC-HER2+ n (row %)", "negative": "CTC-HER2- n (row %)",
                     "p_text": "P"})
        t1_show["variable"] = [f"CTC count >= {str(v)[len('ctc_ge_'):]}"
                               if str(v).startswith("ctc_ge_") else v
                               for v in t1_show["variable"]]
    s1_show = pd.DataFrame()
    if len(t_s1):
        s1_show = t_s1[["variable", "level", "detected", "none", "test", "p_text"]].rename(
            columns={"detected": "CTC >= 1 n (row %)", "none": "CTC = 0 n (row %)",
                     "p_text": "P"})
    excluded_ids = pd.DataFrame(list(cohort.excluded), columns=["id", "reason"])

    parts = [
        ("All patients", [
            ("Table S1. Patient characteristics by CTC detection (CTC >= 1 vs CTC = 0)",
             s1_show),
            ("Kaplan-Meier median PFS by CTC detection", med_all),
            ("Test of Equality over Strata (CTC >= 1 vs CTC = 0)", eq_all),
            (f"Univariate Cox models for CTC-count cut-offs ({ties} ties, {ci_text} CI)",
             cut_df)], ["km_ctc"]),
        ("CTC-HER2 (patients with CTCs)", [
            ("Table 1. Patient characteristics by CTC-HER2 status", t1_show),
            (f"Table 2. Cox proportional hazards for PFS ({ties} ties, {ci_text} CI)",
             cox_df),
            ("Proportional-hazards check (Schoenfeld residuals, R cox.zph) of the "
             "multivariate model", checks_df),
            ("Kaplan-Meier median PFS and log-rank tests", med),
            ("Test of Equality over Strata (CTC-HER2+ vs CTC-HER2-)", equality)],
         [n for n in figures if n != "km_ctc"]),
    ]

    md = [f"# {title}", ""] + [f"- {f}" for f in facts] + [""]
    md += [f"> {n}" for n in notes]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "th{background:#f2f2f2}img{max-width:100%}")
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    body += [f"<li>{html.escape(f)}</li>" for f in facts] + ["</ul>"]
    body += [f"<p><em>{html.escape(n)}</em></p>" for n in notes]
    for part, sections, plots in parts:
        shown = [(h, tab) for h, tab in sections if len(tab)]
        plots = [n for n in plots if n in figures]
        if not shown and not plots:
            continue
        md += [f"## {part}", ""]
        body.append(f"<h2>{html.escape(part)}</h2>")
        for head, tab in shown:
            md += [f"### {head}", "", _md_table(tab), ""]
            body += [f"<h3>{html.escape(head)}</h3>", _html_table(tab)]
        if plots:
            md += ["### Plots", ""]
            body.append("<h3>Plots</h3>")
        for name in plots:
            md += [f"![{name}]({name}.png)", "", f"SVG: [{name}.svg]({name}.svg)", ""]
            b64 = base64.b64encode(png[name]).decode("ascii")
            body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{b64}">'
                        "</figure>")
    if len(excluded_ids):
        md += ["## Excluded patients", "", _md_table(excluded_ids), ""]
        body += ["<h2>Excluded patients</h2>", _html_table(excluded_ids)]
    markdown = "\n".join(md)
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    files["report.md"] = markdown.encode()
    files["report.html"] = page.encode()
    return Report(markdown, page, files, t1, cox_res, med, tests, t_s1, cut_df)


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
