"""Score every cartridge under ARCHIVE_DIR, in parallel and resumable.

Each cartridge folder found under ARCHIVE_DIR (recursively) is scored into
RESULTS/<cartridge id>/ (the same files as 'ctcimg score'), and RESULTS/patients.csv
gets one row per cartridge: status, CTC count, HER2 bin counts and percentages, and the
call under every rule.

--config FILE and the scoring options work as in 'ctcimg score'.

A rerun skips cartridges whose results are complete and were made with the same engine
version and the same whole scoring config from unchanged files (size and modification
time; --verify-checksums compares xxh3 checksums instead), so an interrupted batch just
continues. A cartridge that fails is listed in patients.csv with its error (traceback in
RESULTS/<id>/error.txt); the others still finish, and the exit code is 1.

--scheduler tcp://HOST:PORT runs the work on a Dask cluster instead of local processes;
the archive and RESULTS must be at the same paths on every worker (see docs/batch.md).
"""

from __future__ import annotations

import argparse

from ctcimg.commands.score import add_scoring_options, scoring_config
from ctcimg.progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE_DIR",
                        help="folder holding cartridge folders (searched recursively)")
    parser.add_argument("-o", "--out", metavar="RESULTS", required=True,
                        help="results folder: RESULTS/<cartridge id>/ and RESULTS/patients.csv")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="local worker processes (default: all cores; 0 = score in this "
                        "process, one cartridge at a time)")
    add_scoring_options(parser)
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--report", action="store_true",
                        help="also write each cartridge's HTML review report (report.html)")
    parser.add_argument("--verify-checksums", action="store_true",
                        help="when resuming, compare input files by xxh3 checksum (reads "
                        "every file) instead of size and modification time")
    parser.add_argument("--no-resume", action="store_true",
                        help="score every cartridge again, even when its results are up to date")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ctcimg.batch import (
        PATIENTS_FILE,
        batch_score,
        check_unique_ids,
        failures,
        find_cartridges,
        write_patients_csv,
    )
    from ctcimg.errors import InputError

    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers must be 0 or more, not {args.workers}")
    paths = find_cartridges(args.archive)
    if not paths:
        raise InputError("no cartridge folders found (a cartridge holds a processed/ or mic* "
                         "image folder, an XML named after it, or *_NNN.tif frames)",
                         args.archive)
    check_unique_ids(paths)
    config = scoring_config(args)
    out = Path(args.out)
    outcomes = batch_score(
        paths, out, workers=args.workers, config=config, scheduler=args.scheduler,
        resume=not args.no_resume, verify_checksums=args.verify_checksums,
        channels=args.channels, pixel_size_um=args.pixel_size, report=args.report,
    )
    where = f"Dask cluster {args.scheduler}" if args.scheduler else (
        "this process" if args.workers == 0 else
        f"{min(args.workers or _cores(), len(paths))} worker process(es)")
    print(f"batch: {len(paths)} cartridge(s) under {args.archive} -> {out}/ ({where})",
          file=sys.stderr, flush=True)
    done = []
    with _BatchProgress(len(paths), sys.stderr) as progress:
        for outcome in outcomes:
            done.append(outcome)
            progress.record(outcome)
    table = write_patients_csv(done, out / PATIENTS_FILE, rule=config.rule)
    failed = failures(done)
    skipped = sum(o.skipped for o in done)
    scored = len(done) - skipped - len(failed)
    print(f"batch: {len(done)} cartridge(s): {scored} scored, {skipped} already up to date, "
          f"{len(failed)} failed; table {table}")
    if failed:
        print(f"batch: {len(failed)} cartridge(s) failed (tracebacks in "
              f"{out}/<id>/error.txt):", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.cartridge_id}: {outcome.error}", file=sys.stderr)
        return 1
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 1


class _BatchProgress(Progress):
    """Cartridges and frames per second with an ETA: a tqdm bar on a terminal, a plain
    log line every ``every_s`` seconds otherwise. Failures are printed as they happen."""

    def __init__(self, total: int, stream, every_s: float = 10.0):
        super().__init__(total, "batch", "cartridge", stream, log_every_s=every_s,
                         log_when_done=True, dynamic_ncols=True)
        self.frames = self.failed = 0

    def record(self, outcome) -> None:
        """Count one finished cartridge (scored, skipped or failed)."""
        import time

        if not outcome.skipped:
            self.frames += outcome.n_frames
        if not outcome.ok:
            self.failed += 1
            self.write(f"batch: failed {outcome.cartridge_id}: {outcome.error}")
        frames_s = self.frames / max(time.monotonic() - self.start, 1e-9)
        self.update(self.done + 1, postfix={"frames_s": f"{frames_s:.1f}", "failed": self.failed})

    def status_line(self, elapsed_s: float) -> str:
        rate = self.done / elapsed_s
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"batch: {self.done}/{self.total} cartridges, {60 * rate:.1f} cartridges/min, "
                f"{self.frames / elapsed_s:.1f} frames/s, {self.failed} failed, ETA {eta:.0f} s")
