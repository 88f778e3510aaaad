"""Accuracy of ctcimg against the hidden truth of simulated cartridges.

Generates two cohorts with seeds never used during development: one to calibrate a
HER2 profile on (truth levels standing in for reviewer scores), one to evaluate on.
Prints CTC sensitivity and precision, each decoy kind's rejection recall, HER2 bin
exact agreement with the default and the calibrated profile, and patient-call
agreement per rule.

    python benchmarks/accuracy.py [--patients 12] [--frames 20] [--workdir DIR]

Goals: sensitivity and precision ≥ 0.98, HER2 exact agreement ≥ 0.95 (default profile)
and ≥ 0.97 (calibrated), patient calls 100 %.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ctcimg.channels import HER2_BINS
from ctcimg.evaluate import evaluate, matched_ctc_signals, read_truth, truth_calls
from ctcimg.her2 import DEFAULT_PROFILE, calibrate
from ctcimg.rules import RULES
from ctcimg.score import score_cartridge
from ctcimg.simulate import simulate_cohort

#: Held-out cohort seeds: never used while developing or tuning ctcimg.
EVALUATION_SEED = 424242
CALIBRATION_SEED = 515151


def score_cohort(root: Path, n_patients: int, n_frames: int, seed: int):
    cohort = simulate_cohort(root, n_patients, seed=seed, n_frames=n_frames, mean_ctc=40.0,
                             zero_fraction=0.25)
    scored = []
    for sim in cohort.cartridges:
        result = score_cartridge(sim.path, thumbnails=False)
        scored.append((result, read_truth(sim.truth)))
    return scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--seeds", type=int, nargs=2, default=(EVALUATION_SEED, CALIBRATION_SEED),
                        metavar=("EVAL", "CALIB"),
                        help="cohort seeds (development uses its own; defaults are held out)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        evaluation = score_cohort(Path(tmp) / "eval", args.patients, args.frames,
                                  args.seeds[0])
        calibration = score_cohort(Path(tmp) / "calib", args.patients, args.frames,
                                   args.seeds[1])
        elapsed = time.perf_counter() - start

    accuracy = None
    for result, truth in evaluation:
        one = evaluate(result.events, truth, result.info["pixel_size_um"])
        accuracy = one if accuracy is None else accuracy + one

    # calibration: ctcimg's CTCs matched to truth CTCs, truth level as the reviewer score
    pairs = [matched_ctc_signals(r.events, t, r.info["pixel_size_um"]) for r, t in calibration]
    fitted = calibrate(np.concatenate([p[0] for p in pairs]),
                       np.concatenate([p[1] for p in pairs]))

    calibrated_agree = compared = 0
    call_agree = {name: 0 for name in RULES}
    calibrated_call_agree = {name: 0 for name in RULES}
    disagreements: list[str] = []
    for result, truth in evaluation:
        signal, level = matched_ctc_signals(result.events, truth, result.info["pixel_size_um"])
        calibrated_agree += int((fitted.profile.score(signal) == level).sum())
        compared += len(level)
        expected = truth_calls(truth)
        ctcs = result.ctcs
        bins = fitted.profile.score(ctcs["her2_signal"].to_numpy())
        recalibrated = {b: int((bins == i).sum()) for i, b in enumerate(HER2_BINS)}
        for name, rule in RULES.items():
            call_agree[name] += result.call(name) == expected[name]
            calibrated_call_agree[name] += rule.call(recalibrated) == expected[name]
        if result.calls != {**result.calls, **expected}:
            true_ctcs = truth[truth["kind"] == "ctc"]
            disagreements.append(
                f"  {result.cartridge_id}: truth {expected} from "
                f"{len(true_ctcs)} CTCs ({int(true_ctcs['in_edge_zone'].sum())} on the edge band)"
                f"; ctcimg {dict((n, result.calls[n]) for n in RULES)} from "
                f"{result.ctc_count} CTCs {result.her2_counts}")

    n_ctc = sum(int((t["kind"] == "ctc").sum()) for _, t in evaluation)
    print(f"evaluation cohort: {len(evaluation)} cartridges x {args.frames} frames, "
          f"{n_ctc} true CTCs (seed {args.seeds[0]}); calibration cohort seed "
          f"{args.seeds[1]}; simulate + score both: {elapsed:.0f} s")
    print(f"CTC sensitivity            {accuracy.sensitivity:.3f}  "
          f"({accuracy.true_positive}/{accuracy.n_true_ctc})   goal >= 0.98")
    print(f"CTCs on the cartridge-edge band (rejected by design, not in sensitivity): "
          f"{accuracy.n_edge_ctc}, of which found {accuracy.edge_found}")
    print(f"CTC precision              {accuracy.precision:.3f}  "
          f"({accuracy.true_positive + accuracy.edge_found}/{accuracy.n_called_ctc})   "
          "goal >= 0.98")
    for kind, (rejected, total) in sorted(accuracy.decoys.items()):
        print(f"rejected {kind:<18}{rejected / total if total else float('nan'):.3f}  "
              f"({rejected}/{total})")
    print(f"HER2 exact, default        {accuracy.her2_exact:.3f}  "
          f"({accuracy.her2_agree}/{accuracy.her2_compared})   goal >= 0.95")
    print(f"HER2 exact, calibrated     {calibrated_agree / compared:.3f}  "
          f"({calibrated_agree}/{compared})   goal >= 0.97")
    print(f"  edges: default {', '.join(f'{e:.1f}' for e in DEFAULT_PROFILE.edges)}; "
          f"calibrated {', '.join(f'{e:.1f}' for e in fitted.profile.edges)}")
    print("HER2 confusion, default profile (rows: truth 0..3+, columns: ctcimg):")
    for label, row in zip(HER2_BINS, accuracy.her2_confusion, strict=True):
        print(f"  {label:>3} " + " ".join(f"{int(v):5d}" for v in row))
    for name in RULES:
        print(f"patient call agreement {name:<10} default {call_agree[name]}/{len(evaluation)}"
              f"   calibrated {calibrated_call_agree[name]}/{len(evaluation)}   goal 100 %")
    if disagreements:
        print("patients whose calls differ (default profile):")
        print("\n".join(disagreements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
