"""Development check of ctcimg on confounder cohorts (ctcimg.simulate, confounders > 0).

Simulates a cohort on a development seed, scores every cartridge with the current engine
and prints CTC sensitivity and precision overall and per confounder row, false positives
by kind, decoy rejection and CTC detection in low- vs high-background samples.

    python scripts/dev_confounders.py [--patients 6] [--frames 20] [--seed 1001]
                                      [--confounders 1.0] [--workdir DIR]

Development seeds only: never the held-out seeds of benchmarks/accuracy.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ctcimg.evaluate import CONFOUNDER_ROWS, evaluate, read_truth
from ctcimg.score import score_cartridge
from ctcimg.simulate import simulate_cohort

_HELD_OUT = {424242, 515151}


def _ratio(numerator: int, denominator: int) -> str:
    value = numerator / denominator if denominator else float("nan")
    return f"{value:.3f}  ({numerator}/{denominator})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--confounders", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.seed in _HELD_OUT:
        print(f"seed {args.seed} is held out for benchmarks/accuracy.py", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        cohort = simulate_cohort(tmp, args.patients, seed=args.seed, n_frames=args.frames,
                                 mean_ctc=40.0, zero_fraction=0.25,
                                 confounders=args.confounders)
        simulated = time.perf_counter() - start
        per_sample = []
        for sim in cohort.cartridges:
            result = score_cartridge(sim.path, thumbnails=False)
            one = evaluate(result.events, read_truth(sim.truth), result.info["pixel_size_um"])
            per_sample.append((sim.sample, one))
        elapsed = time.perf_counter() - start

    total = per_sample[0][1]
    for _, one in per_sample[1:]:
        total = total + one
    print(f"cohort seed {args.seed}: {args.patients} cartridges x {args.frames} frames, "
          f"confounders {args.confounders}; simulate {simulated:.0f} s, "
          f"simulate + score {elapsed:.0f} s")
    print(f"CTC sensitivity            {_ratio(total.true_positive, total.n_true_ctc)}")
    print(f"CTC precision              "
          f"{_ratio(total.true_positive + total.edge_found, total.n_called_ctc)}")
    print(f"CTCs on the edge band: {total.n_edge_ctc}, found {total.edge_found}")
    print("per confounder row          sensitivity              precision")
    for name in CONFOUNDER_ROWS:
        row = total.rows.get(name)
        if row is not None:
            print(f"  {name:<24} {_ratio(row.found, row.total):<24} "
                  f"{_ratio(row.correct, row.called)}")
    print("false positives (events called CTC matching an object of this kind):")
    for label, count in sorted(total.false_positives.items()):
        print(f"  {label:<28} {count}")
    print("decoy rejection:")
    for kind, (rejected, count) in sorted(total.decoys.items()):
        print(f"  {kind:<28} {_ratio(rejected, count)}")
    scales = sorted(sample["background_scale"] for sample, _ in per_sample)
    median = scales[len(scales) // 2]
    for label, keep in (("low background ", lambda v: v < median),
                        ("high background", lambda v: v >= median)):
        chosen = [one for sample, one in per_sample if keep(sample["background_scale"])]
        if chosen:
            part = chosen[0]
            for one in chosen[1:]:
                part = part + one
            print(f"{label} (scale {'<' if label.startswith('low') else '>='} {median:.2f}) "
                  f"sensitivity {_ratio(part.true_positive, part.n_true_ctc)}   HER2 exact "
                  f"(default profile) {_ratio(part.her2_agree, part.her2_compared)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
