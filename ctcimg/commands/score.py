"""Score one cartridge: find the CTCs, bin their HER2 staining 0/1+/2+/3+, call the patient.

Writes OUT/events.csv (one row per candidate event), OUT/summary.json (counts, calls
under every rule, parameters, input checksums) and OUT/thumbnails.npz, and prints a
short summary. OUT defaults to ./ctcimg-results/<cartridge id>/.
"""

from __future__ import annotations

import argparse


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``score`` and ``batch``."""
    parser.add_argument("--rule", default="liu",
                        help="positivity rule for the headline call: liu (default; > 30 %% of "
                        "CTCs 3+), pestrin (>= 50 %% of CTCs >= 1+), riethdorf (>= 1 CTC 3+), "
                        "or a custom spec such as '2+ fraction >= 0.5'")
    parser.add_argument("--her2-profile", metavar="JSON",
                        help="HER2 threshold profile from 'ctcimg calibrate' (default: built-in)")
    parser.add_argument("--channels", help="page order of a generic TIFF folder, e.g. "
                        "DAPI,CK,CD45,HER2 (CellSearch exports need none)")
    parser.add_argument("--pixel-size", type=float, metavar="UM",
                        help="pixel size in µm (default: from metadata, else 0.64)")
    parser.add_argument("--gate-model", metavar="JSON",
                        help="the lab's learned CTC decision from 'ctcimg train' (hard rules "
                        "first, then the model)")
    parser.add_argument("--no-thumbnails", action="store_true",
                        help="skip cutting cell thumbnails (no review report possible)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cartridge", help="cartridge folder")
    parser.add_argument("-o", "--out", metavar="DIR",
                        help="result folder (default: ./ctcimg-results/<cartridge id>/)")
    add_scoring_options(parser)
    parser.add_argument("--json", action="store_true", help="print summary.json to stdout")
    parser.add_argument("--report", action="store_true",
                        help="also write the HTML review report (report.html)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ctcimg.errors import InputError
    from ctcimg.her2 import load_profile
    from ctcimg.io.cellsearch import read_cartridge
    from ctcimg.learn import load_gate_model
    from ctcimg.rules import parse_rule
    from ctcimg.score import SUMMARY_FILE, score_cartridge

    rule = parse_rule(args.rule)  # bad options fail before any reading
    if args.report and args.no_thumbnails:
        raise InputError("--report needs the cell thumbnails; drop --no-thumbnails")
    profile = load_profile(args.her2_profile)
    gate_model = load_gate_model(args.gate_model)
    cartridge = read_cartridge(args.cartridge, channels=args.channels,
                               pixel_size_um=args.pixel_size)
    out = Path(args.out) if args.out else Path("ctcimg-results") / cartridge.id
    with _frame_progress(len(cartridge), cartridge.id) as on_frame:
        result = score_cartridge(cartridge, her2_profile=profile, rule=rule,
                                 thumbnails=not args.no_thumbnails, on_frame=on_frame,
                                 gate_model=gate_model)
    result.to_dir(out)
    if args.report:
        from ctcimg.report import write_report

        write_report(out)
    if args.json:
        sys.stdout.write((out / SUMMARY_FILE).read_text())
    else:
        print(result)
        written = ["events.csv", "thumbnails.npz" if result.thumbnails is not None else None,
                   SUMMARY_FILE, "report.html" if args.report else None]
        print(f"results   {out}/ ({', '.join(name for name in written if name)})")
    return 0


class _frame_progress:
    """A per-frame progress bar on a terminal (stderr); silent otherwise for one cartridge."""

    def __init__(self, total: int, name: str):
        self.total, self.name, self.bar = total, name, None

    def __enter__(self):
        import sys

        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="frame", desc=self.name, leave=False)
        return self.update

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
