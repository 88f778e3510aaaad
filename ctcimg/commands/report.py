"""Write an HTML review report for a scored cartridge.

RESULT_DIR is a result folder from 'ctcimg score' (summary.json, events.csv and
thumbnails.npz; scoring with --no-thumbnails makes a report impossible). The report is one
self-contained HTML file (no network; images embedded): counts and calls, a histogram of
HER2 signal with the bin edges, every CTC's thumbnails grouped by HER2 bin, rejected
candidates by reason, and a reviewer mode (click a cell, press 0-3 or x) that exports a
corrections CSV for 'ctcimg calibrate'.

examples:
  ctcimg report ctcimg-results/01140637.1.1
  ctcimg report ctcimg-results/01140637.1.1 -o review/01140637.html --png
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result_dir", metavar="RESULT_DIR", help="result folder of 'ctcimg score'")
    parser.add_argument("-o", "--out", metavar="FILE",
                        help="HTML file to write (default: RESULT_DIR/report.html)")
    parser.add_argument("--png", action="store_true",
                        help="embed lossless PNG thumbnails (about 5x larger) instead of WebP")


def run(args: argparse.Namespace) -> int:
    from ctcimg.report import write_report

    path = write_report(args.result_dir, args.out, image_format="png" if args.png else "webp")
    size = path.stat().st_size
    print(f"report    {path} ({size / 1e6:.1f} MB)")
    return 0
