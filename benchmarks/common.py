"""Shared by the benchmark scripts: a full-size simulated cartridge (generated once), the
independent read floor every speed figure is compared with, and ctcimg's own reader."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

DEFAULT_WORKDIR = Path("/tmp/ctcimg-bench")


def full_size_cartridge(workdir: Path = DEFAULT_WORKDIR, n_frames: int = 175, bits: int = 8,
                        n_ctc: int = 60, seed: int = 20261125,
                        cartridge_id: str | None = None) -> Path:
    """A full-size CellSearch-layout cartridge under ``workdir``, reused when complete.

    A ``.<id>.done`` marker beside it records a finished generation; a cartridge without
    one (an interrupted run) is generated again from scratch.
    """
    from ctcimg.simulate import simulate_cartridge

    cartridge_id = cartridge_id or f"BENCH{n_frames:03d}B{bits}.1.1"
    path = workdir / cartridge_id
    done = workdir / f".{cartridge_id}.done"
    if done.exists() and path.is_dir():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    needed = n_frames * 4 * 1384 * 1036 * bits // 8 * 1.1
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(f"need {needed / 1e9:.1f} GB free in {workdir}, have {free / 1e9:.1f}")
    print(f"generating {cartridge_id} ({n_frames} frames, {bits}-bit) in {workdir} ...",
          flush=True)
    shutil.rmtree(path, ignore_errors=True)
    simulate_cartridge(workdir, cartridge_id, n_frames=n_frames, n_ctc=n_ctc, bits=bits,
                       seed=seed)
    done.touch()
    return path


def frame_files(path: Path) -> list[Path]:
    """The frame TIFFs of a cartridge folder, found without ctcimg (any ``*.tif`` below it)."""
    return sorted(p for p in Path(path).rglob("*.tif*") if not p.name.startswith("."))


def read_floor(path: Path) -> int:
    """Read and restore every page of a cartridge with minimal code of its own: the floor.

    Touches every pixel once, as any reader must: tifffile reads each page into a reused
    buffer, and numpy restores it to float32 on the 12-bit scale in ACCEPT's order — the
    CellTracks stretch ``low + stored · (high − low) / max(stored)`` with the page's limits
    from tags 755 / 756, then −32768 when the restored maximum exceeds 32767 (clamped at 0).
    Deliberately independent of ctcimg's reader, whose overhead is part of what the
    benchmarks measure. Returns the number of frame files read.
    """
    import tifffile

    files = frame_files(path)
    buffers: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for file in files:
        with tifffile.TiffFile(file) as tif:
            for page in tif.pages:
                key = (page.shape, page.dtype)
                if key not in buffers:
                    buffers[key] = (np.empty(page.shape, page.dtype),
                                    np.empty(page.shape, np.float32))
                stored, restored = buffers[key]
                page.asarray(out=stored)
                peak = float(stored.max())
                tags = page.tags
                if 755 in tags and 756 in tags:
                    low, high = float(tags[755].value), float(tags[756].value)
                    scale = (high - low) / peak if peak > 0 else 0.0
                    np.multiply(stored, np.float32(scale), out=restored, casting="unsafe")
                    restored += np.float32(low)
                    restored_max = high if peak > 0 else low  # the stretch maps max to high
                else:
                    np.copyto(restored, stored, casting="unsafe")
                    restored_max = peak
                if restored_max > 32767:
                    restored -= np.float32(32768)
                    np.maximum(restored, np.float32(0), out=restored)
    return len(files)


def best_time(function, *args, repeat: int = 3) -> tuple[float, object]:
    """Fastest of ``repeat`` calls (other load on the machine only slows a run) and the
    last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def read_all_frames(path: Path) -> int:
    """Iterate every restored frame of a cartridge through ctcimg's reader."""
    from ctcimg.allocator import keep_freed_memory
    from ctcimg.io.cellsearch import read_cartridge

    keep_freed_memory()  # the allocator policy ctcimg's own processes use, for a fair floor
    cartridge = read_cartridge(path)
    for _ in cartridge:
        pass
    return len(cartridge)
