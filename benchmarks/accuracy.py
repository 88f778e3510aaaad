"""Accuracy of ctcimg against the hidden truth of simulated cartridges.

Two pairs of cohorts, every seed held out (never used while developing or tuning):

* standard cohorts (the simulator without confounders): CTC sensitivity and precision,
  each decoy kind's rejection, HER2 bins with the default and a calibrated profile,
  patient calls per rule;
* confounder cohorts (``confounders=1``: CK-dim and CD45-dim leukocytes, CTC-leukocyte
  doublets and clusters, defocused and dense frames, autofluorescent particles,
  per-sample background and nonspecific FITC; see :mod:`ctcimg.simulate`): the same,
  plus a row per confounder, false positives by kind, and HER2 bins for low- vs
  high-background and low- vs high-nonspecific samples. Bins and calls are judged with a
  leukocyte-referenced profile calibrated on the calibration cohort (truth levels
  standing in for reviewer scores); the default profile's figures are printed for
  information only (no default can know a lab's intensity scale).

For both, a ceiling: the bins and calls of a perfect measurement, every CTC's true HER2
signal binned at the midpoints of the simulator's level means. The levels overlap, so a
call that the ceiling misses too is lost to the simulator, not to ctcimg.

    python benchmarks/accuracy.py [--patients 12] [--frames 20]
                                  [--confounder-patients 40] [--workdir DIR]

While developing, give seeds of your own and never the defaults, e.g. only the confounder
cohorts on development seeds: ``--patients 0 --confounder-seeds 1001 1002``.

Goals: standard cohorts sensitivity and precision >= 0.98, HER2 exact >= 0.95 (default)
and >= 0.97 (calibrated), calls 100 %; confounder cohorts sensitivity and precision
>= 0.99 overall and per confounder row, calibrated HER2 bins >= 0.98, calls 100 % per rule.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ctcimg.channels import HER2_BINS
from ctcimg.evaluate import (
    CONFOUNDER_ROWS,
    evaluate,
    matched_ctc_signals,
    read_truth,
    signal_calls,
    signal_levels,
    true_ctcs,
    truth_calls,
)
from ctcimg.her2 import DEFAULT_PROFILE, calibrate
from ctcimg.rules import RULES
from ctcimg.score import score_cartridge
from ctcimg.simulate import simulate_cohort

#: Held-out seeds (evaluation, calibration): never used while developing or tuning ctcimg.
STANDARD_SEEDS = (424242, 515151)
#: Confounder seeds are replaced once a run of them has informed a change: 626262/737373,
#: 838383/949494, 171717/282828, 357357/468468, 579579/680680, 791791/802802, 913913/135135,
#: 468246/579357, 681357/792468, 864209/975310, 297531/408642, 531864/642975,
#: 246813/357924 and 112358/132134 were each evaluated before later engine changes, so
#: they are retired.
CONFOUNDER_SEEDS = (271828, 314159)


def _ratio(numerator: int, denominator: int) -> str:
    value = numerator / denominator if denominator else float("nan")
    return f"{value:.3f}  ({numerator}/{denominator})"


def score_cohort(root: Path, n_patients: int, n_frames: int, seed: int, confounders: float):
    """[(result, truth, sample conditions)] for a freshly simulated cohort."""
    cohort = simulate_cohort(root, n_patients, seed=seed, n_frames=n_frames, mean_ctc=40.0,
                             zero_fraction=0.25, confounders=confounders)
    scored = []
    for sim in cohort.cartridges:
        result = score_cartridge(sim.path, thumbnails=False)
        conditions = json.loads((sim.truth / "cartridge.json").read_text())
        scored.append((result, read_truth(sim.truth), conditions))
    return scored


def _total(scored):
    total = None
    for result, truth, _ in scored:
        one = evaluate(result.events, truth, result.info["pixel_size_um"])
        total = one if total is None else total + one
    return total


def _bins_agreement(scored, profile) -> tuple[int, int]:
    agree = compared = 0
    for result, truth, _ in scored:
        signal, level = matched_ctc_signals(result.events, truth, result.info["pixel_size_um"],
                                            profile.signal_column)
        agree += int((profile.score(signal) == level).sum())
        compared += len(level)
    return agree, compared


def _calls(scored, profile, counted_only: bool = True) -> tuple[dict[str, int], list[str]]:
    agree = {name: 0 for name in RULES}
    wrong = []
    for result, truth, _ in scored:
        expected = truth_calls(truth, counted_only)
        bins = profile.score(result.ctcs[profile.signal_column].to_numpy())
        counts = {b: int((bins == i).sum()) for i, b in enumerate(HER2_BINS)}
        calls = {name: rule.call(counts) for name, rule in RULES.items()}
        for name in RULES:
            agree[name] += calls[name] == expected[name]
        if calls != expected:
            ctc = truth["kind"] == "ctc"
            counted = ctc & (truth["in_edge_zone"] == 0) & truth["centre_in_frame"] \
                if {"in_edge_zone", "centre_in_frame"} <= set(truth.columns) else ctc
            wrong.append(f"  {result.cartridge_id}: truth {expected} from {int(ctc.sum())} CTCs "
                         f"({int(counted.sum())} counted); "
                         f"ctcimg {calls} from {result.ctc_count} CTCs {counts}")
    return agree, wrong


def report(title: str, evaluation, calibration, reference: str) -> None:
    accuracy = _total(evaluation)
    pairs = [matched_ctc_signals(r.events, t, r.info["pixel_size_um"],
                                 "her2_signal_referenced" if reference == "leukocytes"
                                 else "her2_signal") for r, t, _ in calibration]
    fitted = calibrate(np.concatenate([p[0] for p in pairs]),
                       np.concatenate([p[1] for p in pairs]), reference=reference).profile
    n = len(evaluation)
    print(f"\n== {title}")
    print(f"CTC sensitivity            {_ratio(accuracy.true_positive, accuracy.n_true_ctc)}")
    correct = accuracy.true_positive + accuracy.edge_found + accuracy.outside_found
    print(f"CTC precision              {_ratio(correct, accuracy.n_called_ctc)}")
    print(f"CTCs on the cartridge-edge band (rejected by design, not in sensitivity): "
          f"{accuracy.n_edge_ctc}, of which found {accuracy.edge_found}")
    print(f"CTCs centred outside their frame (another frame's, not in sensitivity): "
          f"{accuracy.n_outside_ctc}, of which found {accuracy.outside_found}")
    if accuracy.rows:
        print("per confounder row          sensitivity              precision")
        for name in CONFOUNDER_ROWS:
            row = accuracy.rows.get(name)
            if row is not None:
                print(f"  {name:<24} {_ratio(row.found, row.total):<24} "
                      f"{_ratio(row.correct, row.called)}")
        print("false positives by kind (events called CTC that match an object of the kind):")
        for label, count in sorted(accuracy.false_positives.items()):
            print(f"  {label:<28} {count}")
    print("decoys rejected:")
    for kind, (rejected, total) in sorted(accuracy.decoys.items()):
        print(f"  {kind:<28} {_ratio(rejected, total)}")
    for label, profile in (("default", DEFAULT_PROFILE),
                           (f"calibrated (reference {reference})", fitted)):
        agree, compared = _bins_agreement(evaluation, profile)
        print(f"HER2 exact, {label:<34} {_ratio(agree, compared)}")
    print(f"  edges: default {', '.join(f'{e:.1f}' for e in DEFAULT_PROFILE.edges)}; "
          f"calibrated {', '.join(f'{e:.1f}' for e in fitted.edges)} on {fitted.signal_column}")
    for key in ("background_scale", "her2_nonspecific"):
        values = [c.get(key) for _, _, c in evaluation]
        if None in values:
            continue
        median = float(np.median(values))
        for side, high in (("low ", False), ("high", True)):
            part = [s for s, v in zip(evaluation, values, strict=True) if (v >= median) == high]
            agree, compared = _bins_agreement(part, fitted)
            sens = _total(part)
            print(f"  {side} {key} ({'<' if side == 'low ' else '>='} {median:.2f}, "
                  f"{len(part)} samples): HER2 calibrated {_ratio(agree, compared)}; "
                  f"sensitivity {_ratio(sens.true_positive, sens.n_true_ctc)}")
    print("HER2 confusion, calibrated profile (rows: truth 0..3+, columns: ctcimg):")
    confusion = np.zeros((4, 4), int)
    for result, truth, _ in evaluation:
        signal, level = matched_ctc_signals(result.events, truth, result.info["pixel_size_um"],
                                            fitted.signal_column)
        np.add.at(confusion, (level, fitted.score(signal)), 1)
    for label, row in zip(HER2_BINS, confusion, strict=True):
        print(f"  {label:>3} " + " ".join(f"{int(v):5d}" for v in row))
    default_calls, _ = _calls(evaluation, DEFAULT_PROFILE)
    calibrated_calls, wrong = _calls(evaluation, fitted)
    all_ctc_calls, _ = _calls(evaluation, fitted, counted_only=False)
    print("patient calls against the truth of the CTCs sensitivity counts (off the edge band, "
          "centred in their frame); in brackets against all true CTCs, and the default "
          "profile's:")
    for name in RULES:
        print(f"patient calls {name:<10} calibrated {calibrated_calls[name]}/{n}   "
              f"(all CTCs {all_ctc_calls[name]}/{n}; default profile {default_calls[name]}/{n})")
    _print_ceiling(evaluation)
    if wrong:
        print("patients whose calls differ (calibrated profile):")
        print("\n".join(wrong))


def _print_ceiling(evaluation) -> None:
    """What a perfect measurement would reach: every counted CTC's true signal binned at the
    midpoints of the simulator's level means (ctcimg.evaluate.signal_levels). The levels
    overlap, so even this can misbin a few cells and so flip a patient's call."""
    n = len(evaluation)
    agree = compared = 0
    calls = {name: 0 for name in RULES}
    for _, truth, _ in evaluation:
        ctc = truth[true_ctcs(truth, counted_only=True)]
        agree += int((signal_levels(ctc["her2_signal"]) == ctc["her2_level"]).sum())
        compared += len(ctc)
        expected, perfect = truth_calls(truth, True), signal_calls(truth, True)
        for name in RULES:
            calls[name] += perfect[name] == expected[name]
    print("ceiling, a perfect measurement (each counted CTC's true HER2 signal binned at the "
          "midpoints of the simulator's level means, which overlap):")
    print(f"  HER2 exact {_ratio(agree, compared)}; calls "
          + ", ".join(f"{name} {calls[name]}/{n}" for name in RULES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=12,
                        help="patients per standard cohort (default 12)")
    parser.add_argument("--confounder-patients", type=int, default=40,
                        help="patients per confounder cohort (default 40: some 500-1000 "
                             "CTCs; 0 skips them)")
    parser.add_argument("--frames", type=int, default=20, help="frames per cartridge")
    parser.add_argument("--confounders", type=float, default=1.0,
                        help="confounder rate multiplier of the confounder cohorts")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--seeds", type=int, nargs=2, default=STANDARD_SEEDS,
                        metavar=("EVAL", "CALIB"), help="standard cohort seeds")
    parser.add_argument("--confounder-seeds", type=int, nargs=2, default=CONFOUNDER_SEEDS,
                        metavar=("EVAL", "CALIB"), help="confounder cohort seeds")
    args = parser.parse_args(argv)

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        cohorts = []
        if args.patients:
            cohorts.append(("standard", args.seeds, args.patients, 0.0, "none"))
        if args.confounder_patients:
            cohorts.append((f"confounders x{args.confounders:g}", args.confounder_seeds,
                            args.confounder_patients, args.confounders, "leukocytes"))
        for name, seeds, patients, confounders, reference in cohorts:
            evaluation = score_cohort(Path(tmp) / f"{name}-eval", patients, args.frames,
                                      seeds[0], confounders)
            calibration = score_cohort(Path(tmp) / f"{name}-calib", patients, args.frames,
                                       seeds[1], confounders)
            n_ctc = sum(int((t["kind"] == "ctc").sum()) for _, t, _ in evaluation)
            report(f"{name} cohorts: {patients} cartridges x {args.frames} frames, {n_ctc} "
                   f"true CTCs (evaluation seed {seeds[0]}, calibration seed {seeds[1]})",
                   evaluation, calibration, reference)
        print(f"\nsimulate + score: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
