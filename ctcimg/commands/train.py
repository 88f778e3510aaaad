"""Learn your lab's CTC decision from its reviewers' labels.

LABELLED are result folders (from 'ctcimg score' / 'ctcimg batch', events.csv inside) or
events.csv files, one per cartridge. The label of an event is reviewer_is_ctc (0/1: the
review report's corrections, or added by hand) where given, else reviewer_assigned (the
operator's decision in the CellTracks XML: true / false; blank = not presented). A
gradient-boosted tree classifier learns it from the measured features (never positions,
ids, frame numbers or HER2) of the events that pass the gate's hard rules (cartridge edge,
too large, CK negative, no nucleus), cross-validated by cartridge; the figures are printed
beside the rule gate's on the same events. The model is written as JSON (never code) for
'ctcimg score --gate-model' and 'ctcimg batch --gate-model'.

examples:
  ctcimg train results/ -o gate-model.json
  ctcimg train results/*/events.csv -o gate-model.json --label reviewer_is_ctc
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labelled", nargs="+", metavar="LABELLED",
                        help="result folders or events.csv files; a batch RESULTS folder "
                        "stands for every result folder in it")
    parser.add_argument("-o", "--out", metavar="JSON", required=True,
                        help="model file to write, e.g. gate-model.json")
    parser.add_argument("--label", metavar="COLUMN",
                        help="label column (default: reviewer_is_ctc where given, else "
                        "reviewer_assigned)")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="P",
                        help="probability at or above which an event is a CTC (default 0.5)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ctcimg.errors import InputError
    from ctcimg.learn import train_gate_model
    from ctcimg.score import EVENTS_FILE

    if not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold {args.threshold}: must lie between 0 and 1")
    paths: list[Path] = []
    for given in map(Path, args.labelled):
        inside = sorted(p.parent for p in given.glob(f"*/{EVENTS_FILE}")) \
            if given.is_dir() and not (given / EVENTS_FILE).exists() else []
        paths.extend(inside or [given])
    report = train_gate_model(paths, label=args.label, threshold=args.threshold)
    out = report.model.save(args.out)
    print(report)
    print(f"model     {out} (sha256 {report.model.sha256[:16]}...)")
    return 0
