"""Fit a HER2 threshold profile from reviewer-scored CTCs.

LABELLED.csv is an events.csv from 'ctcimg score' (or a corrections CSV exported from
the review report) with a reviewer_score column: 0-3 (or 0, 1+, 2+, 3+); blank rows are
ignored and 'not_ctc' rows are dropped. Prints the cross-validated confusion matrix,
exact agreement and quadratic-weighted Cohen's kappa, and writes the profile JSON that
'ctcimg score --her2-profile' reads.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labelled", nargs="+", metavar="LABELLED.csv",
                        help="events CSV(s) with a reviewer_score column")
    parser.add_argument("-o", "--out", required=True, metavar="PROFILE.json",
                        help="where to write the fitted profile")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds (default 5)")
    parser.add_argument("--name", default="calibrated", help="name stored in the profile")
    parser.add_argument("--reference", choices=("none", "leukocytes"), default="none",
                        help="'leukocytes': fit the edges on each CTC's signal minus its "
                             "sample's leukocyte median (her2_signal_referenced), so the bins "
                             "follow each sample's nonspecific FITC binding (default none)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ctcimg.errors import InputError
    from ctcimg.her2 import REFERENCES, calibrate, read_labelled_events

    if args.folds < 2:
        raise InputError(f"--folds must be at least 2, not {args.folds}")
    signals, scores = [], []
    for path in args.labelled:
        signal, score = read_labelled_events(path, REFERENCES[args.reference])
        signals.append(signal)
        scores.append(score)
    result = calibrate(np.concatenate(signals), np.concatenate(scores), n_folds=args.folds,
                       name=args.name, reference=args.reference)
    result.profile.save(args.out)
    print(result.summary())
    print(f"profile written to {args.out}")
    return 0
