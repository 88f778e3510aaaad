"""Inline SVG histogram of the CTCs' HER2 signal with the profile's bin edges.

Signals span from about zero to thousands, and the low edges matter as much as the high
ones, so the axis is asinh-scaled (linear near zero, logarithmic above ~10), the same
transform :func:`ctcimg.her2.fit_edges` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

from ctcimg.channels import HER2_BINS

#: Fill colour of each HER2 bin, shared with the gallery's CSS.
BIN_COLOURS = {"0": "#7f8c9a", "1+": "#e0b23a", "2+": "#e07b2a", "3+": "#c2312f"}
_SCALE = 10.0


def _t(value):
    return np.arcsinh(np.asarray(value, float) / _SCALE)


def signal_histogram_svg(signal, edges, *, width: int = 640, height: int = 220,
                         n_bins: int = 40) -> str:
    """Render a histogram of HER2 signal as an SVG element.

    Parameters
    ----------
    signal : array_like
        HER2 signal of each CTC (NaN values are ignored).
    edges : sequence of 3 floats
        The profile's edges between 0 | 1+ | 2+ | 3+, drawn as dashed lines.
    width, height : int
        Size in CSS pixels.
    n_bins : int
        Bars, equally wide on the asinh scale.

    Returns
    -------
    str
        ``<svg>`` markup; bars are coloured by the HER2 bin their centre falls in.

    Examples
    --------
    >>> svg = signal_histogram_svg([5, 30, 100, 400], (22, 75, 190))
    >>> svg.startswith("<svg") and svg.count('class="edge"') == 3
    True
    """
    signal = np.asarray(signal, float)
    signal = signal[np.isfinite(signal)]
    edges = [float(e) for e in edges]
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    lo = min(float(signal.min()) if signal.size else 0.0, -5.0)
    hi = max(float(signal.max()) if signal.size else 0.0, edges[-1] * 2.0)
    t_lo, t_hi = float(_t(lo)), float(_t(hi))
    span = t_hi - t_lo
    t_lo, t_hi = t_lo - 0.02 * span, t_hi + 0.02 * span
    bar_edges = np.linspace(t_lo, t_hi, n_bins + 1)
    counts, _ = np.histogram(_t(signal), bins=bar_edges)
    plot = _Plot(plot_w, plot_h, t_lo, t_hi, max(int(counts.max()) if counts.size else 0, 1))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Histogram of HER2 signal of {signal.size} CTCs">']
    parts += _bin_regions(plot, edges)
    parts += _bars(plot, counts, bar_edges, edges)
    parts += _axes(plot, edges, height)
    parts.append("</svg>")
    return "".join(parts)


_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 12, 22, 40  # margins around the plot, CSS pixels
#: Signal values labelled on the x axis (those within its range).
_TICKS = (-100, -10, 0, 10, 30, 100, 300, 1000, 3000, 10000)


@dataclass(frozen=True)
class _Plot:
    """The plot area (inside the margins) and its scales: x over the asinh-scaled signal
    ``t_lo..t_hi``, y over CTC counts ``0..y_max``."""

    width: int
    height: int
    t_lo: float
    t_hi: float
    y_max: int

    @property
    def base(self) -> int:
        return _TOP + self.height

    def x_of(self, t):
        return _LEFT + (t - self.t_lo) / (self.t_hi - self.t_lo) * self.width

    def y_of(self, c):
        return _TOP + self.height - c / self.y_max * self.height


def _bin_regions(plot: _Plot, edges: list[float]) -> list[str]:
    """Each HER2 bin's stretch of the axis as a faint background, with its label."""
    x_of, parts = plot.x_of, []
    bounds = [plot.t_lo, *(float(_t(e)) for e in edges), plot.t_hi]
    for label, a, b in zip(HER2_BINS, bounds[:-1], bounds[1:], strict=True):
        a, b = max(a, plot.t_lo), min(b, plot.t_hi)
        if b <= a:
            continue
        parts.append(f'<rect x="{x_of(a):.1f}" y="{_TOP}" width="{x_of(b) - x_of(a):.1f}" '
                     f'height="{plot.height}" fill="{BIN_COLOURS[label]}" opacity="0.08"/>')
        parts.append(f'<text x="{(x_of(a) + x_of(b)) / 2:.1f}" y="{_TOP - 7}" '
                     f'text-anchor="middle" class="bin-label" fill="{BIN_COLOURS[label]}">'
                     f'{escape(label)}</text>')
    return parts


def _bars(plot: _Plot, counts: np.ndarray, bar_edges: np.ndarray, edges: list[float]
          ) -> list[str]:
    """The bars, coloured by the bin of their centre, then the bin edges as dashed lines."""
    x_of, y_of, parts = plot.x_of, plot.y_of, []
    for count, a, b in zip(counts, bar_edges[:-1], bar_edges[1:], strict=True):
        if not count:
            continue
        centre = float(np.sinh((a + b) / 2) * _SCALE)
        label = HER2_BINS[int(np.searchsorted(edges, centre, side="right"))]
        parts.append(f'<rect class="bar" x="{x_of(a) + 0.5:.1f}" y="{y_of(count):.1f}" '
                     f'width="{max(x_of(b) - x_of(a) - 1, 1):.1f}" '
                     f'height="{plot.base - y_of(count):.1f}" fill="{BIN_COLOURS[label]}">'
                     f'<title>{int(count)} CTCs, signal {np.sinh(a) * _SCALE:.0f} to '
                     f'{np.sinh(b) * _SCALE:.0f}</title></rect>')
    for edge in edges:
        x = x_of(float(_t(edge)))
        parts.append(f'<line class="edge" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" '
                     f'y2="{plot.base}" stroke="#222" stroke-dasharray="4 3"/>')
    return parts


def _axes(plot: _Plot, edges: list[float], height: int) -> list[str]:
    """Both axes with their ticks, tick labels and titles."""
    base, right = plot.base, _LEFT + plot.width
    parts = [f'<line x1="{_LEFT}" x2="{right}" y1="{base}" y2="{base}" stroke="#444"/>',
             f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{base}" stroke="#444"/>']
    for tick in _TICKS:
        t = float(_t(tick))
        if plot.t_lo <= t <= plot.t_hi:
            x = plot.x_of(t)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" '
                         'stroke="#444"/>')
            parts.append(f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{tick}</text>')
    for c in sorted({0, plot.y_max // 2, plot.y_max}):
        parts.append(f'<text x="{_LEFT - 6}" y="{plot.y_of(c) + 4:.1f}" text-anchor="end">{c}'
                     '</text>')
    middle = _TOP + plot.height / 2
    parts.append(f'<text x="{_LEFT + plot.width / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                 'HER2 signal (12-bit above local background, asinh scale); dashed: bin edges '
                 f'{", ".join(f"{e:g}" for e in edges)}</text>')
    parts.append(f'<text x="12" y="{middle:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {middle:.1f})">CTCs</text>')
    return parts
