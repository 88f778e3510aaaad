"""Finding the cartridges of an archive: the format registry vs. a bare directory listing.

    python benchmarks/bench_discovery.py [--cartridges N] [--workdir DIR]

Builds an archive of N cartridge folders (a third each CellTracks XML layout, CellTracks XP,
generic numbered TIFFs; 175 empty frame files each, grouped by site as a lab would store
them), then times :func:`ctcimg.batch.find_cartridges` against one ``os.walk`` of the whole
archive (the floor: every entry listed once). Prints both and their ratio; the files are
empty, so only listings and the few stats discovery makes are timed (warm cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from ctcimg.batch import find_cartridges
from ctcimg.io.celltracks_xp import DLM_FILES

FRAMES = 175


def build_archive(root: Path, n_cartridges: int) -> None:
    for index in range(n_cartridges):
        site = root / f"site{index % 4}" / f"{2010 + index % 7}"
        kind = index % 3
        cid = f"{index:08d}.1.1"
        if kind == 0:
            images = site / cid / "processed"
            images.mkdir(parents=True)
            (site / cid / f"{index:08d}.xml").touch()
        elif kind == 1:
            images = site / cid / "images"
            images.mkdir(parents=True)
            for name in DLM_FILES:
                (site / cid / name).touch()
        else:
            images = site / cid
            images.mkdir(parents=True)
        for frame in range(1, FRAMES + 1):
            (images / f"img-{frame:03d}.tif").touch()


def best_of(repeats: int, run) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cartridges", type=int, default=300)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_discovery_", dir=args.workdir))
    try:
        archive = root / "archive"
        build_archive(archive, args.cartridges)
        found = find_cartridges(archive)
        assert len(found) == args.cartridges, (len(found), args.cartridges)
        walk = best_of(5, lambda: sum(len(files) for _, _, files in os.walk(archive)))
        discovery = best_of(5, lambda: find_cartridges(archive))
        print(f"archive            {args.cartridges} cartridges x {FRAMES} frames "
              f"(XML, XP, generic in equal parts)")
        print(f"os.walk (floor)    {walk * 1000:8.1f} ms")
        print(f"find_cartridges    {discovery * 1000:8.1f} ms  "
              f"({discovery / args.cartridges * 1e6:.0f} µs per cartridge)")
        print(f"ratio              {discovery / walk:8.2f} x the bare listing")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
