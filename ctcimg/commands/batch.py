"""Score every cartridge under ARCHIVE_DIR, in parallel and resumable.

Each cartridge folder found under ARCHIVE_DIR (recursively) is scored into
RESULTS/<cartridge id>/ (the same files as 'ctcimg score'), and RESULTS/patients.csv
gets one row per cartridge: status, CTC count, HER2 bin counts and percentages, and the
call under every rule.

A rerun skips cartridges whose results are complete and were made with the same
parameters from unchanged files (size and modification time; --verify-checksums
compares xxh3 checksums instead), so an interrupted batch just continues. A cartridge
that fails is listed in patients.csv with its error (traceback in
RESULTS/<id>/error.txt); the others still finish, and the exit code is 1.

--scheduler tcp://HOST:PORT runs the work on a Dask cluster instead of local processes;
the archive and RESULTS must be at the same paths on every worker (see docs/batch.md).
"""

from __future__ import annotations

import argparse

from ctcimg.commands.score import add_scoring_options


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
    out = Path(args.out)
    outcomes = batch_score(
        paths, out, workers=args.workers, rule=args.rule, her2_profile=args.her2_profile,
        scheduler=args.scheduler, resume=not args.no_resume,
        verify_checksums=args.verify_checksums, channels=args.channels,
        pixel_size_um=args.pixel_size, thumbnails=not args.no_thumbnails, report=args.report,
        gate_model=args.gate_model,
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
            progress.update(outcome)
    table = write_patients_csv(done, out / PATIENTS_FILE, rule=args.rule)
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


class _BatchProgress:
    """Cartridges and frames per second with an ETA: a tqdm bar on a terminal, a plain
    log line every ``every_s`` seconds otherwise. Failures are printed as they happen."""

    def __init__(self, total: int, stream, every_s: float = 10.0):
        self.total, self.stream, self.every_s = total, stream, every_s
        self.done = self.frames = self.failed = 0
        self.bar = None

    def __enter__(self):
        import time

        self.start = self.last = time.monotonic()
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="cartridge", desc="batch", file=self.stream,
                            dynamic_ncols=True)
        return self

    def update(self, outcome) -> None:
        import time

        self.done += 1
        if not outcome.skipped:
            self.frames += outcome.n_frames
        if not outcome.ok:
            self.failed += 1
            self._write(f"batch: failed {outcome.cartridge_id}: {outcome.error}")
        now = time.monotonic()
        elapsed = max(now - self.start, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(frames_s=f"{self.frames / elapsed:.1f}", failed=self.failed,
                                 refresh=False)
            self.bar.update(1)
        elif now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            self._write(f"batch: {self.done}/{self.total} cartridges, "
                        f"{60 * rate:.1f} cartridges/min, {self.frames / elapsed:.1f} frames/s, "
                        f"{self.failed} failed, ETA {eta:.0f} s")

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
