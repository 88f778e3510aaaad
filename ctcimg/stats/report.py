"""Cohort report: Table 1, Cox models, Kaplan-Meier medians, log-rank, plots.

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
from ctcimg.stats.cohort import GROUP, Cohort
from ctcimg.stats.cox import CONVENTIONS, CoxTable, cox_table
from ctcimg.stats.diagnostics import cox_zph
from ctcimg.stats.km import KMResult, LogrankResult, equality_tests, kaplan_meier, logrank
from ctcimg.stats.plot import figure_bytes, plot_km, plot_km_panels, write_atomic
from ctcimg.stats.tables import table1

LABELS = {"positive": "CTC-HER2+", "negative": "CTC-HER2-"}


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
        The underlying results.
    """

    markdown: str
    html: str
    files: dict[str, bytes]
    table1: pd.DataFrame
    cox: CoxTable | None
    medians: pd.DataFrame
    logrank: dict[str, LogrankResult] = field(default_factory=dict)


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


def _medians(km: KMResult, test: LogrankResult | None, subgroup: str = "all") -> pd.DataFrame:
    rows = []
    for g, c in km.curves.items():
        rows.append({"subgroup": subgroup, "group": LABELS.get(g, g), "n": c.n,
                     "events": c.events, "median": _num(c.median.time, 1),
                     "95% CI": f"{_num(c.median.lower, 1)}-{_num(c.median.upper, 1)}",
                     "log-rank P": _p(test.pvalue) if test is not None else ""})
    return pd.DataFrame(rows)


def build_report(
    cohort: Cohort,
    covariates: Sequence[str] = (),
    subgroups: Sequence[str] = (),
    *,
    conventions: str = "sas",
    ties: str | None = None,
    ci: str | None = None,
    conf_type: str | None = None,
    title: str = "CTC-HER2 cohort statistics",
    sources: Sequence[str] = (),
) -> Report:
    """Compute every table and plot of the cohort report.

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
    numeric = [c for c in covariates if pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    categorical = [c for c in covariates if c not in numeric]
    notes: list[str] = []

    t1 = table1(df, GROUP, categorical, numeric) if len(present) == 2 else pd.DataFrame()
    if len(present) < 2:
        notes.append(f"Only {', '.join(sorted(present))} patients: no between-group comparison.")

    cox_res: CoxTable | None = None
    cox_df = pd.DataFrame()
    if len(present) == 2 and df[e].sum() > 0:
        try:
            cox_res = cox_table(df, t, e, [GROUP, *covariates], ties=ties, ci=ci,
                                conventions=conventions, reference={GROUP: "negative"})
        except (InputError, np.linalg.LinAlgError) as err:
            notes.append(f"Cox model not fitted: {err}")
    if cox_res is not None:
        tab = cox_res.table
        cox_df = pd.DataFrame({
            "term": [str(i).replace("ctc_her2: positive vs negative", "CTC-HER2+ vs CTC-HER2-")
                     for i in tab.index],
            "univariate HR (95% CI)": [f"{_num(r.uni_hr)} ({_num(r.uni_lower)}-"
                                       f"{_num(r.uni_upper)})" for r in tab.itertuples()],
            "P (uni)": [_p(p) for p in tab.uni_p],
            "multivariate HR (95% CI)": [f"{_num(r.multi_hr)} ({_num(r.multi_lower)}-"
                                         f"{_num(r.multi_upper)})" for r in tab.itertuples()],
            "P (multi)": [_p(p) for p in tab.multi_p],
        })

    checks_df = pd.DataFrame()
    if cox_res is not None:
        multi = cox_res.multivariate
        zph = cox_zph(multi).table
        checks_df = pd.DataFrame({
            "term": list(zph.index), "PH chi-square (km time)": [f"{v:.3f}" for v in zph.chisq],
            "df": list(zph.df), "P": [_p(v) for v in zph.p]})
        notes.append(f"Multivariate Cox model: concordance {multi.concordance:.3f}; "
                     f"{'converged' if multi.converged else 'did NOT converge'} after "
                     f"{multi.iterations} Newton-Raphson iterations.")

    km = kaplan_meier(df, t, e, GROUP, conf_type, conventions=conventions)
    tests: dict[str, LogrankResult] = {}
    test = logrank(df, t, e, GROUP) if len(km.curves) > 1 else None
    if test is not None:
        tests["all"] = test
    equality = pd.DataFrame()
    if test is not None:
        equality = equality_tests(df, t, e, GROUP)
        equality = equality.assign(**{"Chi-Square": [f"{v:.4f}" for v in equality["Chi-Square"]],
                                      "Pr > Chi-Square": [_p(v) for v in
                                                          equality["Pr > Chi-Square"]]})
    medians = [_medians(km, test)]
    figures = {"km": plot_km(km, test, "Progression-free survival by CTC-HER2 status",
                             labels=LABELS)}
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
    if cox_res is not None:
        files["cox.csv"] = cox_res.table.to_csv().encode()
    files["km_medians.csv"] = med.to_csv(index=False).encode()

    n_pos = int((df[GROUP] == "positive").sum())
    n_neg = int((df[GROUP] == "negative").sum())
    excl = cohort.exclusion_counts()
    ci_text = "profile likelihood" if ci == "profile" else "Wald"
    facts = [
        f"Positivity rule: {cohort.rule}",
        f"Patients table: {cohort.n_patients} rows; clinical table: {cohort.n_clinical} rows",
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
    excluded_ids = pd.DataFrame(list(cohort.excluded), columns=["id", "reason"])

    md = [f"# {title}", ""] + [f"- {f}" for f in facts] + [""]
    md += [f"> {n}" for n in notes]
    sections = [("Table 1. Patient characteristics by CTC-HER2 status", t1_show),
                (f"Table 2. Cox proportional hazards for PFS ({ties} ties, {ci_text} CI)",
                 cox_df),
                ("Proportional-hazards check (Schoenfeld residuals, R cox.zph) of the "
                 "multivariate model", checks_df),
                ("Kaplan-Meier median PFS and log-rank tests", med),
                ("Test of Equality over Strata (CTC-HER2+ vs CTC-HER2-)", equality)]
    for head, tab in sections:
        if len(tab):
            md += [f"## {head}", "", _md_table(tab), ""]
    md += ["## Kaplan-Meier plots", ""]
    for name in figures:
        md += [f"![{name}]({name}.png)", "", f"SVG: [{name}.svg]({name}.svg)", ""]
    if len(excluded_ids):
        md += ["## Excluded patients", "", _md_table(excluded_ids), ""]
    markdown = "\n".join(md)

    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "th{background:#f2f2f2}img{max-width:100%}")
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    body += [f"<li>{html.escape(f)}</li>" for f in facts] + ["</ul>"]
    body += [f"<p><em>{html.escape(n)}</em></p>" for n in notes]
    for head, tab in sections:
        if len(tab):
            body += [f"<h2>{html.escape(head)}</h2>", _html_table(tab)]
    body.append("<h2>Kaplan-Meier plots</h2>")
    for name in figures:
        b64 = base64.b64encode(png[name]).decode("ascii")
        body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{b64}"></figure>')
    if len(excluded_ids):
        body += ["<h2>Excluded patients</h2>", _html_table(excluded_ids)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    files["report.md"] = markdown.encode()
    files["report.html"] = page.encode()
    return Report(markdown, page, files, t1, cox_res, med, tests)


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
            write_atomic(target / name, report.files[name])
    return [target / n for n in names]
