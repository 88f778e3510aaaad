"""Write synthetic CellSearch cartridges with known truth.

Writes OUT/<id>/ in the CellSearch export layout (<id>.xml and processed/<id>_NNN.tif,
one 4-page CellTracks TIFF per frame) and the ground truth, never inside the cartridge
folder, to OUT/truth/<id>/ (objects.csv, cartridge.json, optional preview PNGs).
With --layout celltracks_xp the cartridge is an older CellTracks XP export instead
(pic.dlm, cells.dlm, frames.dlm, ... and images/<id>_NNN.tif); pixels and truth are the same.
With --cohort N, writes N patients with heavy-tailed CTC counts and varied HER2 mixes
plus OUT/truth/patients.csv and OUT/clinical.csv (PFS, events and covariates for
`ctcimg stats`, with PFS depending on the true CTC-HER2 call).

examples:
  ctcimg simulate out/ --frames 6 --ctc 25 --preview
  ctcimg simulate out/ --cohort 20 --frames 20 --frame-size 692x518
  ctcimg simulate out/ --frames 20 --ctc 40 --confounders 1 --preview
  ctcimg simulate lab/ --cohort 8 --frames 35 --frame-size 692x518 --reviewer no_small
  ctcimg simulate out/ --frames 175 --frame-size 256x192 --layout celltracks_xp
"""

from __future__ import annotations

import argparse

from ctcimg.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument("--frames", type=int, default=175, metavar="N",
                        help="frames per cartridge (default 175 = the 5 x 35 CellSearch grid)")
    parser.add_argument("--ctc", type=int, default=20, metavar="K",
                        help="true CTCs in the cartridge (default 20; ignored with --cohort)")
    parser.add_argument("--her2-mix", default="0.25,0.25,0.25,0.25", metavar="F0,F1,F2,F3",
                        help="fractions of CTCs at HER2 0,1+,2+,3+ "
                        "(default equal; ignored with --cohort)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--id", dest="cartridge_id", default=None, metavar="ID",
                        help="cartridge id (default SIM<seed>.1.1)")
    parser.add_argument("--frame-size", default="1384x1036", metavar="WxH",
                        help="frame width x height in pixels (default 1384x1036)")
    parser.add_argument("--bits", type=int, default=16, metavar="8|16",
                        help="stored bits per sample (default 16)")
    parser.add_argument("--compress", action="store_true", help="zlib-compress the TIFF pages")
    parser.add_argument("--cohort", type=int, default=None, metavar="N",
                        help="write N patients with heavy-tailed CTC counts and random HER2 mixes "
                        "(zero-inflated negative binomial, Dirichlet)")
    parser.add_argument("--confounders", type=float, default=0.0, metavar="X",
                        help="rate of real-sample confounders (CK-dim and CD45-dim leukocytes, "
                        "CTC-leukocyte doublets and clusters, defocused and dense frames, "
                        "autofluorescent particles, per-sample background and nonspecific "
                        "FITC): 0 = none (default), 1 = messy, 2 = harder")
    parser.add_argument("--reviewer", default="default", metavar="NAME",
                        help="the lab's reviewer definition for the XML's events: default "
                        "(CellSearch's, with random errors), no_small (no CTCs under 9 um), "
                        "partial_nucleus (also counts a nucleus partly outside the CK), "
                        "ck_dim (does not count CK-dim CTCs); see ctcimg.simulate.REVIEWERS")
    parser.add_argument("--layout", choices=("cellsearch", "celltracks_xp"), default="cellsearch",
                        help="export format written: the CellTracks XML layout (default) or "
                        "the older CellTracks XP .dlm layout")
    parser.add_argument("--preview", action="store_true",
                        help="also write preview PNGs (frame composite, cells per HER2 level) "
                        "to the truth folder")


def _parse_mix(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--her2-mix {text!r}: expected 4 comma-separated numbers") from None
    if len(values) != 4 or any(not v >= 0 for v in values) or sum(values) <= 0:
        raise InputError(
            f"--her2-mix {text!r}: expected 4 non-negative fractions with a positive sum"
        )
    return values  # type: ignore[return-value]


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--frame-size {text!r}: expected WIDTHxHEIGHT, e.g. 1384x1036") from None
    if not (64 <= width <= 16384 and 64 <= height <= 16384):
        raise InputError(f"--frame-size {text!r}: each side must be 64 to 16384 px")
    return height, width


def run(args: argparse.Namespace) -> int:
    from ctcimg.simulate import REVIEWERS, ctc_capacity, simulate_cartridge, simulate_cohort

    if args.frames < 1:
        raise InputError(f"--frames {args.frames}: must be at least 1")
    if args.ctc < 0:
        raise InputError(f"--ctc {args.ctc}: must be 0 or more")
    if args.bits not in (8, 16):
        raise InputError(f"--bits {args.bits}: must be 8 or 16")
    if not 0 <= args.confounders < float("inf"):
        raise InputError(f"--confounders {args.confounders}: must be 0 or more")
    if args.cohort is not None and args.cohort < 1:
        raise InputError(f"--cohort {args.cohort}: must be at least 1")
    if args.cartridge_id is not None and args.cohort is not None:
        raise InputError("--id cannot be combined with --cohort (ids are assigned per patient)")
    cid = args.cartridge_id
    if cid is not None and (not cid.strip() or any(c in cid for c in "/\\") or cid[0] == "."):
        raise InputError(f"--id {cid!r}: not a valid folder name")
    if args.reviewer not in REVIEWERS:
        raise InputError(f"--reviewer {args.reviewer!r}: expected one of "
                         f"{', '.join(REVIEWERS)}")
    mix = _parse_mix(args.her2_mix)
    shape = _parse_size(args.frame_size)
    common = dict(
        n_frames=args.frames, frame_shape=shape, bits=args.bits,
        compression="zlib" if args.compress else None, preview=args.preview,
        confounders=args.confounders, layout=args.layout,
        reviewer=args.reviewer,
    )
    if args.cohort is not None:
        cohort = simulate_cohort(args.out, args.cohort, seed=args.seed, **common)
        counts = [c.counts["ctc"] for c in cohort.cartridges]
        print(f"wrote {len(counts)} cartridges to {cohort.path} "
              f"({sum(1 for n in counts if n == 0)} with 0 CTCs, max {max(counts)} CTCs)")
        print(f"truth: {cohort.patients_csv}")
        print(f"clinical table (PFS depends on the true CTC-HER2 call): "
              f"{cohort.path / 'clinical.csv'}")
        return 0
    capacity = ctc_capacity(args.frames, shape)
    if args.ctc > capacity:
        raise InputError(f"--ctc {args.ctc}: at most {capacity} CTCs fit in {args.frames} "
                         f"frames of {args.frame_size} px")
    sim = simulate_cartridge(
        args.out, cid, n_ctc=args.ctc, her2_mix=mix, seed=args.seed, **common
    )
    c = sim.counts
    print(f"wrote {sim.path} ({sim.n_frames} frames)")
    print(f"truth: {sim.truth}")
    print(f"objects: {c['ctc']} CTCs (HER2 0/1+/2+/3+: {c['her2_0']}/{c['her2_1']}/"
          f"{c['her2_2']}/{c['her2_3']}), {c['leukocyte']} leukocytes, "
          + ", ".join(f"{c[k]} {k}" for k in ("ck_debris", "ck_cd45_double", "speck",
                                             "bare_nucleus", "nucleus_outside")))
    if args.confounders > 0:
        print("confounders: " + ", ".join(
            f"{c[k]} {k}" for k in ("ck_dim_leukocyte", "cd45_dim_leukocyte", "autofluorescent",
                                    "doublet", "leukocyte_cluster", "stuck"))
              + f"; background x{sim.sample['background_scale']:.2f}, nonspecific HER2 "
              f"{sim.sample['her2_nonspecific']:.0f}")
    return 0
