"""Shared by the benchmark scripts: a full-size simulated cartridge, generated once."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def read_all_frames(path: Path) -> int:
    """Iterate every restored frame of a cartridge (the 'time to only read' baseline)."""
    from ctcimg.allocator import keep_freed_memory
    from ctcimg.io.cellsearch import read_cartridge

    keep_freed_memory()  # the allocator policy ctcimg's own processes use, for a fair floor
    cartridge = read_cartridge(path)
    for _ in cartridge:
        pass
    return len(cartridge)
