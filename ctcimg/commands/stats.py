"""Cohort statistics from a patients table and a clinical table.

Joins the CTC-HER2 calls of PATIENTS.csv (written by 'ctcimg batch'; joined on
cartridge_id) with CLINICAL.csv (one row per patient: id, PFS time, event 0/1,
covariates) and writes a report into REPORT_DIR. All patients (when PATIENTS.csv
has ctc_count): Table S1 by CTC detection (0 vs >= 1), Kaplan-Meier and log-rank
for CTC = 0 vs >= 1, univariate Cox models for --ctc-cutoffs. Patients with CTCs:
Table 1 by CTC-HER2 status (Cochran rule: chi-square without continuity
correction if all expected counts >= 5, else Fisher exact), univariate and
multivariate Cox models (with CTC count >= N covariates for the cut-offs above
1), a forest plot, Kaplan-Meier medians with Brookmeyer-Crowley CIs, log-rank
tests and plots (PNG, SVG), as report.md and a self-contained report.html. A Cox
model with monotone likelihood (e.g. a level without events) is fitted with
Firth's penalty, and the report says so.

Patients whose cartridge failed are excluded, and those whose call is
not_evaluable (0 CTCs) are left out of the CTC-HER2 comparisons; both are
counted in the report. Bad clinical input (unmatched ids, missing values,
negative times, events other than 0/1) is an error and nothing is written,
unless --exclude-missing / --exclude-unmatched ask for an explicit, reported
exclusion.

Conventions: --conventions sas (default: Breslow ties, profile-likelihood CIs,
log-log survival bands, as SAS PROC PHREG/LIFETEST) or r (Efron ties, Wald
CIs, log bands, as R survival).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``stats`` options to ``parser``."""
    parser.add_argument("patients", metavar="PATIENTS.csv", help="patients table from batch")
    parser.add_argument("clinical", metavar="CLINICAL.csv", help="clinical table")
    parser.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                        help="directory to write the report into")
    parser.add_argument("--time", default="pfs_months", metavar="COL",
                        help="follow-up time column (default: %(default)s)")
    parser.add_argument("--event", default="progressed", metavar="COL",
                        help="event column, 1 = progressed, 0 = censored (default: %(default)s)")
    parser.add_argument("--covariates", nargs="*", default=None, metavar="COL",
                        help="covariates for Table 1 and Cox (default: every other clinical "
                             "column)")
    parser.add_argument("--subgroup", action="append", default=[], metavar="COL",
                        help="subgroup column for Kaplan-Meier panels (repeatable)")
    parser.add_argument("--rule", default="liu", metavar="R",
                        help="positivity rule whose call_<R> column is used (default: liu)")
    parser.add_argument("--id-column", default="patient_id", metavar="COL",
                        help="patient id column of the clinical table (default: %(default)s)")
    parser.add_argument("--conventions", choices=("sas", "r"), default="sas",
                        help="statistical conventions preset (default: sas)")
    parser.add_argument("--ties", choices=("breslow", "efron"), default=None,
                        help="Cox ties method (default: from --conventions)")
    parser.add_argument("--ci", choices=("profile", "wald"), default=None,
                        help="Cox CI method (default: from --conventions)")
    parser.add_argument("--conf-type", choices=("log-log", "log", "plain"), default=None,
                        help="Kaplan-Meier CI transform (default: from --conventions)")
    parser.add_argument("--ctc-cutoffs", nargs="*", type=int, default=[1, 5], metavar="N",
                        help="CTC-count cut-offs: univariate Cox of CTC count >= N vs < N over "
                             "all patients, and N > 1 as covariates of the CTC-HER2 models "
                             "(default: 1 5; none: leave out)")
    parser.add_argument("--exclude-missing", action="store_true",
                        help="exclude (and report) clinical rows with missing values")
    parser.add_argument("--exclude-unmatched", action="store_true",
                        help="exclude (and report) ids found in only one table")


def run(args: argparse.Namespace) -> int:
    """Run the ``stats`` command; returns the exit code."""
    from pathlib import Path

    from ctcimg.io.tables import read_csv_table
    from ctcimg.stats import load_cohort

    covariates = args.covariates
    if covariates is None:
        header = read_csv_table(args.clinical, nrows=0).columns
        covariates = [str(c).strip() for c in header
                      if str(c).strip() not in (args.id_column, args.time, args.event)]
    cohort = load_cohort(
        args.patients, args.clinical, id_column=args.id_column, time=args.time,
        event=args.event, covariates=[*covariates, *[s for s in args.subgroup
                                                      if s not in covariates]],
        rule=args.rule, missing="exclude" if args.exclude_missing else "error",
        unmatched="exclude" if args.exclude_unmatched else "error")
    from ctcimg.stats import build_report, write_report

    report = build_report(
        cohort, covariates, args.subgroup, conventions=args.conventions, ties=args.ties,
        ci=args.ci, conf_type=args.conf_type, ctc_cutoffs=args.ctc_cutoffs,
        sources=[Path(args.patients).name, Path(args.clinical).name])
    files = write_report(report, args.output)
    excl = cohort.exclusion_counts()
    print(f"{len(cohort.data)} patients analysed"
          + (f"; excluded: {', '.join(f'{v} {k}' for k, v in excl.items())}" if excl else ""))
    if report.cox is not None:
        row = report.cox.multivariate.table.iloc[0]
        print(f"CTC-HER2+ vs -: HR {row.hr:.3f} ({row.hr_lower:.3f}-{row.hr_upper:.3f}), "
              f"P = {row.p:.4f} (multivariate)")
    if "ctc_detected" in report.logrank:
        print(f"CTC >= 1 vs CTC = 0 (all patients): log-rank P = "
              f"{report.logrank['ctc_detected'].pvalue:.4g}")
    if "all" in report.logrank:
        print(f"log-rank P = {report.logrank['all'].pvalue:.4g}")
    print(f"wrote {len(files)} files to {args.output}")
    return 0
