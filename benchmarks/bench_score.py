"""Time to score a full 175-frame cartridge vs. the time to only read it.

    python benchmarks/bench_score.py [--bits 8|16] [--frames 175] [--workdir DIR]

Prints, in one run: the time to iterate every restored frame (the floor; best of 3), the
time to score in-process (kernels already compiled; best of 2), the time of a whole
`ctcimg score` process (imports and cached JIT included; best of 3), their ratios
(goals: ≤ 2.0 in-process, ≤ 3.0 whole process), and the peak memory of scoring in frames.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_WORKDIR, full_size_cartridge, read_all_frames  # noqa: E402

MEASURE = r"""
import json, resource, sys, time, tracemalloc
from ctcimg.score import score_cartridge
path = sys.argv[1]
score_cartridge(path, thumbnails=False) if sys.argv[2] == "warm" else None
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
result = score_cartridge(path)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "traced_peak": tracemalloc.get_traced_memory()[1],
                  "rss_increase_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  - baseline, "ctcs": result.ctc_count, "events": len(result.events)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--frames", type=int, default=175)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    path = full_size_cartridge(args.workdir, args.frames, args.bits)

    from ctcimg.score import score_cartridge

    read_all_frames(path)  # warm the page cache
    read_times = []
    for _ in range(3):
        start = time.perf_counter()
        n_frames = read_all_frames(path)
        read_times.append(time.perf_counter() - start)
    read_s = min(read_times)

    score_cartridge(path, thumbnails=False)  # compile / load the cached kernels
    score_times = []
    for _ in range(2):
        start = time.perf_counter()
        result = score_cartridge(path)
        score_times.append(time.perf_counter() - start)
    score_s = min(score_times)

    process_times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ctcimg.cli", "score", str(path), "-o", out],
                           check=True, capture_output=True)
            process_times.append(time.perf_counter() - start)
    process_s = min(process_times)

    memory = json.loads(subprocess.run([sys.executable, "-c", MEASURE, str(path), "cold"],
                                       check=True, capture_output=True, text=True).stdout)
    frame_mb = 4 * 1036 * 1384 * 4 / 1e6

    print(f"cartridge               {path.name}: {n_frames} frames, {args.bits}-bit; "
          f"{result.ctc_count} CTCs among {len(result.events)} events")
    print(f"read only (restore)     {read_s:.2f} s  ({n_frames / read_s:.0f} frames/s)")
    print(f"score, in-process       {score_s:.2f} s  ({n_frames / score_s:.0f} frames/s)")
    print(f"ctcimg score, process   {process_s:.2f} s  (imports, JIT cache, writing results)")
    print(f"ratio score / read      {score_s / read_s:.2f}   (goal <= 2.0)")
    print(f"ratio process / read    {process_s / read_s:.2f}   (goal <= 3.0)")
    print(f"peak traced memory      {memory['traced_peak'] / 1e6:.0f} MB "
          f"= {memory['traced_peak'] / 1e6 / frame_mb:.1f} frames "
          f"(cartridge: {n_frames} frames)")
    print(f"peak RSS increase       {memory['rss_increase_kb'] / 1e3:.0f} MB "
          f"= {memory['rss_increase_kb'] / 1e3 / frame_mb:.1f} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
