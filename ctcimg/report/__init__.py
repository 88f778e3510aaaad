"""HTML review report of a scored cartridge: CTC gallery per HER2 bin, reviewer corrections.

:func:`write_report` turns a result folder from ``ctcimg score`` (summary.json, events.csv,
thumbnails.npz) into one self-contained HTML file: the counts and calls, a histogram of
HER2 signal with the bin edges, every CTC's thumbnails grouped by bin, the rejected
candidates by reason, and a reviewer mode whose exported corrections CSV
``ctcimg calibrate`` reads.
"""

from ctcimg.report.html import REPORT_FILE, render_report, write_report

__all__ = ["REPORT_FILE", "render_report", "write_report"]
