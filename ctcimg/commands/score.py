"""Score one cartridge: find the CTCs, bin their HER2 staining 0/1+/2+/3+, call the patient.

Writes OUT/events.csv (one row per candidate event), OUT/summary.json (counts, calls
under every rule, the scoring config, input checksums) and OUT/thumbnails.npz, and prints
a short summary. OUT defaults to ./ctcimg-results/<cartridge id>/.

--config FILE takes the segmentation, gate, HER2-profile and rule parameters from a TOML
or JSON file ('ctcimg config' prints the defaults, every field explained); a result's
summary.json is such a file, so '--config results/ID/summary.json' redoes that result.
An option given explicitly (--rule, --her2-profile, --[no-]thumbnails) beats the file,
which beats the defaults.
"""

from __future__ import annotations

import argparse

from ctcimg.channels import PIXEL_SIZE_UM


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``score`` and ``batch``."""
    parser.add_argument("--config", metavar="FILE",
                        help="scoring config, TOML or JSON, or a result's summary.json "
                        "(default: built-in; 'ctcimg config' prints it); the options below "
                        "override it")
    parser.add_argument("--rule",
                        help="positivity rule for the headline call: liu (default; > 30 %% of "
                        "CTCs 3+), pestrin (>= 50 %% of CTCs >= 1+), riethdorf (>= 1 CTC 3+), "
                        "or a custom spec such as '2+ fraction >= 0.5'")
    parser.add_argument("--her2-profile", metavar="JSON",
                        help="HER2 threshold profile from 'ctcimg calibrate' (default: built-in)")
    parser.add_argument("--channels", help="page order of a generic TIFF folder, e.g. "
                        "DAPI,CK,CD45,HER2 (CellSearch exports need none)")
    parser.add_argument("--pixel-size", type=float, metavar="UM",
                        help=f"pixel size in µm (default: from metadata, else {PIXEL_SIZE_UM})")
    parser.add_argument("--thumbnails", action=argparse.BooleanOptionalAction, default=None,
                        help="cut cell thumbnails (default: yes); --no-thumbnails skips them "
                        "(no review report possible)")
    parser.add_argument("--gate-model", metavar="JSON",
                        help="the lab's learned CTC decision from 'ctcimg train' (hard rules "
                        "first, then the model)")


def scoring_config(args: argparse.Namespace):
    """The ScoringConfig of ``score`` / ``batch``: --config (or the defaults) with the
    options given explicitly put in its place; a gate model is checked here, so a bad
    one fails before any reading."""
    from ctcimg.config import resolve_config
    from ctcimg.learn import load_gate_model

    config = resolve_config(args.config, rule=args.rule, her2_profile=args.her2_profile,
                            thumbnails=args.thumbnails, gate_model=args.gate_model)
    load_gate_model(config.gate_model)
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cartridge", help="cartridge folder")
    parser.add_argument("-o", "--out", metavar="DIR",
                        help="result folder (default: ./ctcimg-results/<cartridge id>/)")
    add_scoring_options(parser)
    parser.add_argument("--json", action="store_true", help="print summary.json to stdout")
    parser.add_argument("--report", action="store_true",
                        help="also write the HTML review report (report.html)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr when the numba kernels are being compiled (the "
                        "first run; said anyway on a terminal)")


def run(args: argparse.Namespace) -> int:
    import os

    # before numpy is first imported: scoring calls no BLAS, and each idle OpenBLAS thread
    # spins for ~0.1 s of CPU after numpy's import (a core's worth on a 2-core machine)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import gc
    import sys
    from pathlib import Path

    # the imports (numba's above all) and the kernels' loading make ~170 000 objects and
    # ~1 000 of cyclic garbage: not collected meanwhile (~0.05 s), all frozen below
    gc.disable()
    try:
        from ctcimg.errors import InputError
        from ctcimg.io.cellsearch import read_cartridge
        from ctcimg.progress import Progress
        from ctcimg.results import SUMMARY_FILE
        from ctcimg.score import score_cartridge

        config = scoring_config(args)  # bad options fail before any reading
        if args.report and not config.thumbnails:
            raise InputError("--report needs the cell thumbnails; drop --no-thumbnails "
                             "(or set thumbnails = true in the config)")
        cartridge = read_cartridge(args.cartridge, channels=args.channels,
                                   pixel_size_um=args.pixel_size)
        out = Path(args.out) if args.out else Path("ctcimg-results") / cartridge.id
        prepare_kernels(cartridge.kernel_dtype, notice=args.verbose or sys.stderr.isatty())
        # everything is imported and loaded: the collector skips it from now on, while
        # scoring and when the process ends (0.3 s of collecting numba's objects at exit)
        gc.freeze()
    finally:
        gc.enable()
    # a per-frame bar on a terminal; silent otherwise for one cartridge
    with Progress(len(cartridge), cartridge.id, "frame", log_every_s=None, leave=False) as shown:
        result = score_cartridge(cartridge, config=config, on_frame=shown.update)
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


def prepare_kernels(page_dtype, notice: bool = False) -> float:
    """Load the numba kernels for pages of ``page_dtype`` from numba's cache, compiling them
    first when the cache has none (a first run; in two processes when two cores are free,
    see :mod:`ctcimg.kernels.warmup`): segments a small synthetic frame that takes every
    kernel path a cartridge takes. With ``notice``, says so on stderr in one
    line while they compile, then how long it took. Returns the seconds spent.
    """
    import sys
    import threading
    import time

    import numpy as np

    from ctcimg import kernels
    from ctcimg.io.tiff import StoredFrame
    from ctcimg.kernels import warmup
    from ctcimg.segment import segment_frame

    start = time.perf_counter()
    kernels.tune_numba()
    lock = threading.Lock()
    done = threading.Event()
    announced = threading.Event()
    helper_started = threading.Event()

    def announce_compiling() -> None:
        while not done.wait(0.05):
            if helper_started.is_set() or kernels.compiled_count():
                with lock:
                    if not done.is_set():
                        print("ctcimg: compiling the numba kernels for this computer (first "
                              "run only; cached afterwards) ...", end="", file=sys.stderr,
                              flush=True)
                        announced.set()
                return

    if notice:
        threading.Thread(target=announce_compiling, name="ctcimg-compile-notice",
                         daemon=True).start()
    finished = False
    try:
        helper = warmup.start_helper(np.dtype(page_dtype))  # None unless compiling, 2 cores
        if helper is not None:
            helper_started.set()
            try:
                warmup.compile_own_half(np.dtype(page_dtype))
            except BaseException:
                helper.kill()
                raise
            finally:
                helper.wait()  # a failed helper only means this process compiles its half
        segment_frame(_warm_up_frame(np.dtype(page_dtype), StoredFrame), PIXEL_SIZE_UM)
        finished = True
    finally:
        with lock:
            done.set()
        seconds = time.perf_counter() - start
        if announced.is_set():  # end the notice's line, whatever happened
            print(f" done in {seconds:.1f} s" if finished else "", file=sys.stderr, flush=True)
    return seconds


def _warm_up_frame(dtype, stored_frame):
    """A 128 × 128 frame stored as ``dtype``: a single cell, and two touching cells that
    are split at their nuclei (every kernel of segment_frame runs on it)."""
    import numpy as np

    yy, xx = np.mgrid[:128, :128]
    values = np.full((4, 128, 128), 100.0)
    for y, x, cytoplasm in ((40, 40, 10), (90, 78, 14), (90, 98, 0)):
        values[0][(yy - y) ** 2 + (xx - x) ** 2 < 25] += 800.0  # nucleus
        values[1][(yy - y) ** 2 + (xx - x) ** 2 < cytoplasm ** 2] += 600.0
    values[2][(yy - 40) ** 2 + (xx - 40) ** 2 < 144] += 300.0
    top = np.iinfo(dtype).max if dtype.kind in "ui" else 4095
    scale = max(4095.0 / top, 1.0)
    pages = tuple(np.ascontiguousarray(np.rint(page / scale).astype(dtype)) for page in values)
    affine = np.zeros((3, 4), dtype=np.float32)
    affine[0] = scale
    affine[2] = -np.inf
    return stored_frame(pages, affine)
