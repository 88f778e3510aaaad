"""Benchmark the HTML review report on a cartridge with about 300 CTCs.

Simulates a cartridge (default 20 full-size frames, 300 CTCs), scores it, then times
:func:`ctcimg.report.write_report` (best of ``--repeat`` runs) and prints the HTML size,
split into thumbnails and the rest. With ``--screenshot PNG`` it also renders the page
with headless Chromium and reports how long that took.

Usage::

    python benchmarks/bench_report.py [--frames 20] [--ctc 300] [--decoys 1] [--work DIR]
                                      [--browser] [--screenshot report.png]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--ctc", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--decoys", type=float, default=1.0,
                        help="decoy rate multiplier (more rejected candidates with thumbnails)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="also render the report with headless chromium")
    parser.add_argument("--browser", action="store_true",
                        help="also time opening the page in headless chromium (needs playwright)")
    args = parser.parse_args(argv)

    from ctcimg.report import write_report
    from ctcimg.score import score_cartridge
    from ctcimg.simulate import simulate_cartridge

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = args.work or Path(tmp)
        start = time.perf_counter()
        sim = simulate_cartridge(work / "in", f"BENCH{args.seed:04d}.1.1", n_frames=args.frames,
                                 n_ctc=args.ctc, seed=args.seed, decoys=args.decoys)
        simulated = time.perf_counter() - start
        start = time.perf_counter()
        result = score_cartridge(sim.path)
        result.to_dir(work / "result")
        scored = time.perf_counter() - start

        times = []
        for _ in range(max(args.repeat, 1)):
            start = time.perf_counter()
            html = write_report(work / "result")
            times.append(time.perf_counter() - start)
        text = html.read_text(encoding="utf-8")
        data = json.loads(re.search(r'id="ctcimg-data">(.*?)</script>', text, re.S).group(1))
        image_index = data["fields"].index("img")
        records = data["ctcs"] + [r for group in data["rejected"].values() for r in group]
        image_bytes = sum(len(r[image_index] or "") for r in records)

        print(f"cartridge      {result.cartridge_id}: {args.frames} frames, "
              f"{len(result.events)} events (simulate {simulated:.1f} s, score {scored:.1f} s)")
        print(f"CTCs           {len(data['ctcs'])}; rejected with thumbnails "
              f"{len(records) - len(data['ctcs'])}")
        print(f"write_report   {min(times):.3f} s best of {len(times)} "
              f"(all: {', '.join(f'{t:.3f}' for t in times)})")
        print(f"HTML size      {len(text.encode()) / 1e6:.2f} MB "
              f"(thumbnails {image_bytes / 1e6:.2f} MB, "
              f"{image_bytes / max(len(records), 1) / 1e3:.2f} kB per cell base64)")
        if args.browser:
            _time_in_browser(html)
        if args.screenshot:
            from ctcimg.report.browser import screenshot

            start = time.perf_counter()
            screenshot(html, args.screenshot)
            print(f"screenshot     {args.screenshot} ({time.perf_counter() - start:.1f} s, "
                  "chromium start-up included)")
    return 0


def _time_in_browser(html: Path) -> None:
    """Time page load until the gallery is built, and opening every rejected group."""
    from playwright.sync_api import sync_playwright

    from ctcimg.report.browser import CHROMIUM_FLAGS, find_chromium

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(),
                                    args=[a for a in CHROMIUM_FLAGS if a != "--headless"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(html.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        page.evaluate("""() => { document.querySelector('details.rejected').open = true;
            document.querySelectorAll('details.reason[data-reason]').forEach(d => {
              d.open = true; }); }""")
        page.wait_for_function("""() => Array.from(document.querySelectorAll(
            'details.reason[data-reason] .gallery')).every(g => g.dataset.built)""")
        expanded = time.perf_counter() - start
        browser.close()
    print(f"browser        page ready {loaded:.2f} s; all rejected groups opened {expanded:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
