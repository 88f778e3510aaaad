"""Learning a lab's reviewers: the learned gate vs the rule gate on simulated labs.

For each simulated lab (a named reviewer definition, ctcimg.simulate.REVIEWERS) writes two
cohorts whose XML events carry that lab's decisions, scores both with ``batch_score``,
trains a gate model on the first cohort's reviewer labels and evaluates it on the second's
cartridges, beside the rule gate on the same events. Then times scoring one cartridge with
and without the model.

    python benchmarks/learn.py [--labs no_small,partial_nucleus] [--patients 8]
                               [--frames 20] [--frame-size 692x518] [--seeds 777001,777002]

The default seeds are the held-out pair: picked once, never used while developing; develop
with others (e.g. --seeds 2001,2002). Goals on the held-out cohort: agreement with the
lab's reviewers >= 0.98, kappa >= 0.95, CTC count within +-1 (or +-5 %) of the reviewers'
on >= 95 % of cartridges; scoring with a model at most 10 % slower.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ctcimg.batch import batch_score
from ctcimg.gate import HARD_RULES, gate
from ctcimg.learn import counts_agree, evaluate_gate_model, read_labelled, train_gate_model
from ctcimg.score import score_cartridge
from ctcimg.simulate import REVIEWERS, simulate_cohort

#: Held-out cohort seeds (training cohort, test cohort): never used while developing.
HELD_OUT_SEEDS = (777001, 777002)


def scored_cohort(root: Path, lab: str, seed: int, args) -> list[Path]:
    """Simulate one cohort of ``lab`` and score it; returns the result folders."""
    cohort = simulate_cohort(root / "images", args.patients, seed=seed, n_frames=args.frames,
                             frame_shape=args.frame_shape, mean_ctc=args.mean_ctc,
                             zero_fraction=0.25, decoys=args.decoys, reviewer=lab)
    outcomes = list(batch_score([c.path for c in cohort.cartridges], root / "results",
                                workers=args.workers, thumbnails=False))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"scoring failed: {failed[0].cartridge_id}: {failed[0].error}")
    return sorted(root / "results" / o.cartridge_id for o in outcomes)


def lab_rows(lab: str, workdir: Path, args) -> tuple[list[tuple], object]:
    train_seed, test_seed = args.seeds
    started = time.perf_counter()
    train = scored_cohort(workdir / lab / f"train-{train_seed}", lab, train_seed, args)
    test = scored_cohort(workdir / lab / f"test-{test_seed}", lab, test_seed, args)
    report = train_gate_model(train)
    print(report, flush=True)
    test_events = read_labelled(test)
    model_agreement, rule_agreement, counts = evaluate_gate_model(report.model, test_events)
    table = test_events.table
    _, reason = gate(table)
    hard = np.isin(reason, HARD_RULES) & (table["reviewer_label"] != -1).to_numpy()
    decided_model, decided_rule, _ = evaluate_gate_model(
        report.model, replace(test_events, table=table[~hard]))
    hard_ctcs = int((table["reviewer_label"].to_numpy()[hard] == 1).sum())
    rows = []
    for name, agreement, decided, column in (
            ("learned gate", model_agreement, decided_model, "model"),
            ("rule gate", rule_agreement, decided_rule, "rule_gate")):
        within = counts_agree(counts[column], counts["reviewer"])
        rows.append((lab, name, agreement, int(within.sum()), len(within), decided,
                     hard_ctcs))
    print(f"{lab}: {len(train)} + {len(test)} cartridges simulated, scored and trained in "
          f"{time.perf_counter() - started:.0f} s; cross-validated on the training cohort: "
          f"kappa {report.model_agreement.kappa:.3f} (rule gate "
          f"{report.rule_agreement.kappa:.3f})", flush=True)
    return rows, report.model


def timing(cartridge: Path, model_path: Path, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` in-process scoring time without and with the model (its file,
    as ``ctcimg score --gate-model`` reads it), seconds."""
    without, with_model = [], []
    score_cartridge(cartridge, thumbnails=False)  # compile / warm the page cache
    for _ in range(repeats):
        for times, gate_model in ((without, None), (with_model, model_path)):
            start = time.perf_counter()
            score_cartridge(cartridge, thumbnails=True, gate_model=gate_model)
            times.append(time.perf_counter() - start)
    return min(without), min(with_model)


def model_cost(cartridge: Path, model) -> tuple[float, int]:
    """Best-of-5 time of the model's decisions over every event of a scored cartridge (one
    call, as scoring makes it); and the number of events."""
    events = score_cartridge(cartridge, thumbnails=False).events
    is_ctc, reason = gate(events)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        model.decide(events, is_ctc, reason)
        best = min(best, time.perf_counter() - start)
    return best, len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labs", default="no_small,partial_nucleus",
                        help=f"reviewer definitions, of {', '.join(REVIEWERS)}")
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--frame-size", default="692x518", metavar="WxH")
    parser.add_argument("--mean-ctc", type=float, default=40.0)
    parser.add_argument("--decoys", type=float, default=2.0,
                        help="decoy rate multiplier (default 2: a lab with more look-alikes)")
    parser.add_argument("--seeds", default=",".join(map(str, HELD_OUT_SEEDS)),
                        help="training,test cohort seeds (default: the held-out pair)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    width, height = (int(v) for v in args.frame_size.lower().split("x"))
    args.frame_shape = (height, width)
    args.seeds = tuple(int(v) for v in args.seeds.split(","))
    labs = args.labs.split(",")
    unknown = [lab for lab in labs if lab not in REVIEWERS]
    if unknown:
        raise SystemExit(f"unknown lab(s) {unknown}; known: {', '.join(REVIEWERS)}")
    with tempfile.TemporaryDirectory(prefix="ctcimg-learn-") as tmp:
        workdir = args.workdir or Path(tmp)
        print(f"{args.patients} patients x {args.frames} frames of {args.frame_size} px per "
              f"cohort, decoys x{args.decoys:g}; train seed {args.seeds[0]}, test seed "
              f"{args.seeds[1]}", flush=True)
        rows, model = [], None
        for lab in labs:
            lab_result, model = lab_rows(lab, workdir, args)
            rows.extend(lab_result)
        print()
        print("held-out cartridges (test cohort), against the lab's reviewers:")
        print(f"{'lab':<16s} {'gate':<13s} {'events':>6s} {'agree':>6s} {'sens':>6s} "
              f"{'prec':>6s} {'kappa':>6s} {'counts ok':>13s} | {'events':>6s} {'agree':>6s} "
              f"{'kappa':>6s}")
        for lab, name, a, within, n, d, _ in rows:
            print(f"{lab:<16s} {name:<13s} {a.n:>6d} {a.accuracy:>6.3f} "
                  f"{a.sensitivity or 0:>6.3f} {a.precision or 0:>6.3f} {a.kappa or 0:>6.3f} "
                  f"{within:>4d}/{n:<3d}({100 * within / n:3.0f} %) | {d.n:>6d} "
                  f"{d.accuracy:>6.3f} {d.kappa or 0:>6.3f}")
        print("left: every presented (labelled) event; right: those passing the hard rules, "
              "which the model decides")
        for lab, *_, hard_ctcs in rows[::2]:
            print(f"{lab}: {hard_ctcs} reviewer CTC(s) rejected by a hard rule (lost by both "
                  "gates; mostly cartridge_edge)")
        images = workdir / labs[-1] / f"test-{args.seeds[1]}" / "images"
        patients = pd.read_csv(images / "truth" / "patients.csv")
        largest = images / patients.loc[patients["ctc_count"].idxmax(), "cartridge_id"]
        model_path = model.save(workdir / "gate-model.json")
        without, with_model = timing(largest, model_path, args.timing_repeats)
        decide_s, n_events = model_cost(largest, model)
        print()
        print(f"scoring {largest.name} in-process (best of {args.timing_repeats}): "
              f"{without:.2f} s without a model, {with_model:.2f} s with "
              f"({100 * (with_model / without - 1):+.1f} %; goal <= +10 %); the model alone "
              f"takes {1000 * decide_s:.1f} ms for its {n_events} events "
              f"({100 * decide_s / without:.2f} % of scoring)")


if __name__ == "__main__":
    main()
