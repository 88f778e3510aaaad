"""Time to score a full 175-frame cartridge vs. the independent read floor, in one run.

    python benchmarks/bench_score.py [--bits 8|16] [--frames 175] [--workdir DIR]

Prints side by side: the floor (tifffile + numpy read and restore of every page, written
independently of ctcimg; best of 3), ctcimg's reader iterating every restored frame (best
of 3), scoring in-process (kernels loaded; best of 2), writing the result folder (best
of 3), and a whole ``ctcimg score`` process (imports, cached kernels and writing
included, modules byte-compiled as installed; best of 3), each as a ratio to the floor.
Goals: reader ≤ 1.3 ×, in-process scoring ≤ 2.0 ×, whole process ≤ 3.0 ×, results
written ≤ 0.15 s, peak RSS of the process ≤ 512 MiB. Also the load average: the machine
may be shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    DEFAULT_WORKDIR,
    best_time,
    full_size_cartridge,
    read_all_frames,
    read_floor,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--frames", type=int, default=175)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    path = full_size_cartridge(args.workdir, args.frames, args.bits)

    from ctcimg.allocator import keep_freed_memory
    from ctcimg.score import score_cartridge

    keep_freed_memory()  # as the ctcimg command does
    load_before = os.getloadavg()
    read_floor(path)  # warm the page cache
    floor_s, n_frames = best_time(read_floor, path)
    reader_s, _ = best_time(read_all_frames, path)

    score_cartridge(path, thumbnails=False)  # load the cached kernels (compile if none)
    score_s, result = best_time(score_cartridge, path, repeat=2)
    with tempfile.TemporaryDirectory() as out:
        write_s, _ = best_time(result.to_dir, out)

    # as an installed ctcimg runs: from byte-compiled modules (pip compiles them on install;
    # a PYTHONDONTWRITEBYTECODE environment would compile ctcimg's sources in every run)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    process_times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ctcimg", "score", str(path), "-o", out],
                           check=True, capture_output=True, env=env)
            process_times.append(time.perf_counter() - start)
    process_s = min(process_times)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    load_after = os.getloadavg()

    def row(label: str, seconds: float, goal: str = "") -> str:
        return (f"{label:<28} {seconds:6.2f} s  {seconds / floor_s:5.2f} x floor  "
                f"{n_frames / seconds:5.0f} frames/s  {goal}")

    print(f"cartridge {path.name}: {n_frames} frames, {args.bits}-bit; {result.ctc_count} CTCs "
          f"among {result.n_events} events; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after ({os.cpu_count()} cores)")
    print(row("floor (tifffile + numpy)", floor_s))
    print(row("ctcimg reader", reader_s, "(goal <= 1.3 x)"))
    print(row("score, in-process", score_s, "(goal <= 2.0 x)"))
    print(row("ctcimg score, process", process_s, "(goal <= 3.0 x; imports, kernels, writing)"))
    print(f"{'results written':<28} {write_s:6.2f} s  (goal <= 0.15 s: events.csv, "
          "summary.json, thumbnails.npz)")
    print(f"{'peak RSS, ctcimg score':<28} {peak_rss_mib:6.0f} MiB (goal <= 512 MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
