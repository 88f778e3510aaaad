"""Build the self-contained HTML review report of one scored cartridge.

The page has no external references: CSS, script, the histogram (inline SVG) and every
thumbnail (base64 WebP or PNG inside one JSON payload) are embedded. The script builds
cards from the payload, draws a card's images only when it scrolls into view, and builds
rejected groups only when their section is opened, so a cartridge with hundreds of CTCs
and thousands of rejected candidates opens quickly.
"""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path

import numpy as np

from ctcimg.channels import HER2_BINS
from ctcimg.gate import REJECT_REASONS
from ctcimg.io.atomic import to_strict_json
from ctcimg.report._assets import CSS, JS
from ctcimg.report.data import ScoredResult, load_result
from ctcimg.report.histogram import BIN_COLOURS, signal_histogram_svg
from ctcimg.report.images import FORMATS, encode_strip
from ctcimg.results import list_out_of_focus_frames

REPORT_FILE = "report.html"
#: Order of the values in each cell record of the payload.
PAYLOAD_FIELDS = ("id", "frame", "x_px", "y_px", "x_um", "y_um", "signal", "score", "reason",
                  "probability", "img")
#: Rejected candidates rendered per click on "show more".
PAGE_SIZE = 150
#: Length of the scale bar drawn on every overlay tile, µm.
SCALE_BAR_UM = 10


def write_report(result_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 image_format: str = "webp") -> Path:
    """Write the HTML review report of a scored cartridge.

    Parameters
    ----------
    result_dir
        A result folder written by ``ctcimg score`` (summary.json, events.csv,
        thumbnails.npz).
    out
        The HTML file to write; default ``result_dir/report.html``.
    image_format : {"webp", "png"}
        Thumbnail encoding: WebP (lossy, quality 85, about 1 kB per cell) or PNG
        (lossless, about 5 kB per cell).

    Returns
    -------
    Path
        The report written (atomically; nothing is written when the input is bad).

    Raises
    ------
    InputError
        The result folder is missing, incomplete, or was scored without thumbnails.

    Examples
    --------
    >>> write_report("ctcimg-results/SIM000001.1.1")  # doctest: +SKIP
    PosixPath('ctcimg-results/SIM000001.1.1/report.html')
    """
    from ctcimg.io.atomic import write_text_atomic

    if image_format not in FORMATS:
        raise ValueError(f"image_format {image_format!r}: use one of {', '.join(FORMATS)}")
    result = load_result(result_dir)
    target = Path(out) if out is not None else result.folder / REPORT_FILE
    write_text_atomic(target, render_report(result, image_format=image_format))
    return target


def _num(value, digits: int | None = None):
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def build_payload(result: ScoredResult, image_format: str = "webp") -> dict:
    """The JSON payload the page's script works from.

    Returns
    -------
    dict
        ``ctcs``: one record per CTC (fields :data:`PAYLOAD_FIELDS`), sorted by HER2 bin
        then signal; ``rejected``: reason → records of rejected candidates that have a
        thumbnail, sorted by event id; plus cartridge id, pixel size, channels, bins,
        edges and ``digest`` (identifies the events.csv the review belongs to).
    """
    events = result.events
    pixel = result.pixel_size_um
    index = {int(e): i for i, e in enumerate(result.thumbnail_events)}
    x_um = events["x_um"] if "x_um" in events else events["x_px"] * pixel
    y_um = events["y_um"] if "y_um" in events else events["y_px"] * pixel
    wanted = events["is_ctc"].to_numpy() | events["event_id"].isin(index).to_numpy()
    ctcs, rejected = [], {}
    for pos in np.flatnonzero(wanted):
        row = events.iloc[pos]
        event_id = int(row["event_id"])
        thumb = index.get(event_id)
        image = (encode_strip(result.thumbnails[thumb], image_format) if thumb is not None
                 else None)
        score = str(row["her2_score"]) if bool(row["is_ctc"]) else ""
        record = [event_id, int(row["frame"]), _num(row["x_px"], 2), _num(row["y_px"], 2),
                  _num(x_um.iloc[pos], 2), _num(y_um.iloc[pos], 2), _num(row["her2_signal"]),
                  score, "" if score else str(row["reject_reason"]),
                  _num(row["ctc_probability"], 3) if "ctc_probability" in row else None, image]
        if score:
            ctcs.append(record)
        else:
            rejected.setdefault(record[8], []).append(record)
    signal_key = PAYLOAD_FIELDS.index("signal")
    ctcs.sort(key=lambda r: (HER2_BINS.index(r[7]) if r[7] in HER2_BINS else 99,
                             -math.inf if r[signal_key] is None else r[signal_key], r[0]))
    profile = result.summary["config"]["her2_profile"]
    return {
        "cartridge_id": result.cartridge_id,
        "digest": result.events_digest,
        "pixel_um": pixel,
        "thumb_px": int(result.thumbnails.shape[-1]) if result.thumbnails.size else 48,
        "channels": list(result.channels),
        "mime": FORMATS[image_format],
        "bins": list(HER2_BINS),
        "edges": profile.get("edges"),
        "fields": list(PAYLOAD_FIELDS),
        "scale_bar_um": SCALE_BAR_UM,
        "page_size": PAGE_SIZE,
        "ctcs": ctcs,
        "rejected": {r: rejected[r] for r in [*REJECT_REASONS, *sorted(rejected)]
                     if r in rejected},
    }


def _rule_descriptions(summary: dict) -> dict[str, str]:
    from ctcimg.rules import RULES, parse_rule

    out = {name: rule.describe() for name, rule in RULES.items()}
    chosen = parse_rule(summary["config"]["rule"])  # validated by CartridgeResult.from_dir
    out[chosen.name] = chosen.describe()
    return out


def _header(result: ScoredResult, payload: dict) -> str:
    s = result.summary
    counts = s.get("her2_counts", {})
    percent = s.get("her2_percent", {})
    total = int(s.get("ctc_count", len(payload["ctcs"])))
    bins = "".join(
        f'<tr><td><span class="swatch" style="background:{BIN_COLOURS[b]}"></span>{b}</td>'
        f'<td class="num">{int(counts.get(b, 0))}</td>'
        f'<td class="num">{"" if percent.get(b) is None else f"{percent[b]:.1f} %"}</td></tr>'
        for b in HER2_BINS)
    described = _rule_descriptions(s)
    calls = "".join(
        f'<tr class="{"headline" if name == s.get("rule") else ""}"><td>{escape(name)}</td>'
        f'<td><span class="pill {escape(call)}">{escape(call.replace("_", " "))}</span></td>'
        f'<td>{escape(described.get(name, ""))}</td></tr>'
        for name, call in s.get("calls", {}).items())
    reviewer = s.get("reviewer") or {}
    reviewer_html = ""
    if reviewer.get("reviewer_ctcs") is not None:
        reviewer_html = (f'<div>Operator (XML): {reviewer["reviewer_ctcs"]} CTCs assigned, '
                         f'{reviewer.get("matched", 0)} found by ctcimg</div>')
    blurred = s.get("out_of_focus_frames") or []
    focus_html = ""
    if blurred:
        focus_html = (f'<div>Out of focus (review their events): '
                      f'frame{"s" * (len(blurred) != 1)} '
                      f'{escape(list_out_of_focus_frames(blurred))}</div>')
    engine = s.get("engine", {})
    info_keys = ["path", "n_frames", "frame_width_px", "frame_height_px", "pixel_size_um",
                 "pixel_size_source", "layout", "page_channels", "grid", "n_events"]
    info = {k: s[k] for k in info_keys if k in s}
    params = to_strict_json({"input": info, "config": s["config"],
                         "reject_counts": s.get("reject_counts", {}),
                         "input_checksums": s.get("input_checksums", {})}, indent=2)
    edges = payload["edges"] or []
    return f"""
<header class="top">
  <h1>Cartridge {escape(result.cartridge_id)} &mdash; HER2 review</h1>
  <div class="sub">{escape(str(s.get("path", "")))} &middot; {s.get("n_frames", "?")} frames
  &middot; {s.get("n_events", len(result.events))} candidate events &middot; pixel
  {result.pixel_size_um:g} &micro;m &middot; {escape(engine.get("name", "ctcimg"))}
  {escape(str(engine.get("version", "")))}</div>
</header>
<div id="toolbar">
  <span><b>Review</b> selected: <span id="review-selected"></span></span>
  <span><button data-score="0">0</button> <button data-score="1">1+</button>
  <button data-score="2">2+</button> <button data-score="3">3+</button>
  <button data-score="not_ctc">not CTC</button> <button data-score="clear">clear</button></span>
  <span class="keys">keys <kbd>0</kbd>&ndash;<kbd>3</kbd> score, <kbd>x</kbd> not a CTC,
  <kbd>u</kbd> clear, <kbd>j</kbd>/<kbd>k</kbd> or arrow keys move</span>
  <span id="review-status"></span>
  <span>export <label><input type="radio" name="scope" value="all" checked> all CTCs
  (unreviewed = engine score)</label> <label><input type="radio" name="scope"
  value="reviewed"> reviewed cells only</label></span>
  <button id="export" class="primary">Export corrections CSV</button>
  <button id="reset">Reset</button>
  <label>tile <select id="zoom"><option value="48">48 px</option>
  <option value="72" selected>72 px</option><option value="96">96 px</option></select></label>
</div>
<main>
<div class="cards">
  <div class="panel"><h2>CTCs</h2><div class="big" id="ctc-count">{total}</div>
  {reviewer_html}{focus_html}</div>
  <div class="panel"><h2>HER2 bins</h2><table class="t">
    <tr><th>bin</th><th>CTCs</th><th>%</th></tr>{bins}</table></div>
  <div class="panel"><h2>Patient call</h2><table class="t">
    <tr><th>rule</th><th>call</th><th>definition</th></tr>{calls}</table>
    <div class="legend">bold: the headline rule</div></div>
  <div class="panel"><h2>HER2 signal of the CTCs</h2>
    {signal_histogram_svg([r[6] for r in payload["ctcs"] if r[6] is not None], edges)
     if len(edges) == 3 else ""}</div>
</div>
<details class="params panel" style="margin-top:12px"><summary>Engine
{escape(engine.get("name", "ctcimg"))} {escape(str(engine.get("version", "")))}: config,
input, checksums</summary><pre>{escape(params)}</pre></details>
"""


def _galleries(payload: dict) -> str:
    counts = {b: 0 for b in HER2_BINS}
    for record in payload["ctcs"]:
        counts[record[7]] = counts.get(record[7], 0) + 1
    edges = payload["edges"] or []
    parts = []
    for i, b in enumerate(HER2_BINS):
        lo = f"{edges[i - 1]:g}" if i > 0 and edges else "&minus;&infin;"
        hi = f"{edges[i]:g}" if i < 3 and edges else "&infin;"
        parts.append(
            f'<section class="bin" id="bin-{i}"><h2><span class="pill b{i}">{b}</span> '
            f'{counts.get(b, 0)} CTCs <span class="legend">signal {lo} to {hi}, sorted by '
            f'signal</span></h2>'
            f'<div class="legend">tiles: DAPI, CK, CD45, HER2 (grey), merge (DAPI blue, CK '
            f'green, CD45 red); bar {SCALE_BAR_UM} &micro;m</div>'
            f'<div class="gallery" data-bin="{escape(b)}"></div></section>')
    return "".join(parts)


def _rejected(result: ScoredResult, payload: dict) -> str:
    counts = result.summary.get("reject_counts") or {}
    reasons = [*REJECT_REASONS, *(r for r in payload["rejected"] if r not in REJECT_REASONS)]
    total = sum(int(counts.get(r, 0)) for r in reasons)
    shown = sum(len(v) for v in payload["rejected"].values())
    parts = [f'<details class="rejected"><summary>Rejected candidates: {total} '
             f'({shown} with thumbnails)</summary>']
    for reason in reasons:
        n = int(counts.get(reason, len(payload["rejected"].get(reason, []))))
        if not n:
            continue
        have = len(payload["rejected"].get(reason, []))
        note = "" if have == n else (
            f" &middot; thumbnails for {have}" if have else " &middot; no thumbnails cut")
        desc = escape(REJECT_REASONS.get(reason, ""))
        if have:
            parts.append(f'<details class="reason" data-reason="{escape(reason)}"><summary>'
                         f'<b>{escape(reason)}</b> {n}{note} <span class="desc">&mdash; {desc}'
                         f'</span></summary><div class="gallery"></div></details>')
        else:
            parts.append(f'<div class="reason" style="margin:8px 0 0 12px"><b>{escape(reason)}'
                         f'</b> {n}{note} <span class="desc">&mdash; {desc}</span></div>')
    parts.append("</details>")
    return "".join(parts)


def render_report(result: ScoredResult, image_format: str = "webp") -> str:
    """The report of a loaded result as one HTML document (a string)."""
    payload = build_payload(result, image_format)
    data = to_strict_json(payload, separators=(",", ":")).replace("</", "<\\/")
    title = f"ctcimg review {result.cartridge_id}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"generator\" content=\"ctcimg\"><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        + _header(result, payload) + _galleries(payload) + _rejected(result, payload)
        + "</main>"
        f'<script type="application/json" id="ctcimg-data">{data}</script>'
        f"<script>{JS}</script></body></html>\n"
    )
