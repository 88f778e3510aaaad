"""Kaplan-Meier plots: step curves, censor ticks, numbers at risk, medians, log-rank P.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend switch); saving renders with the Agg (PNG) or SVG canvas.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ctcimg.stats.km import KMResult, LogrankResult, groups_of, kaplan_meier, logrank

#: Curve colours, in group order (CTC-HER2 negative first, then positive).
COLOURS: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _fmt(v: float) -> str:
    return "NR" if not np.isfinite(v) else f"{v:.1f}"


def _risk_times(km: KMResult, n: int = 6) -> np.ndarray:
    tmax = max(float(c.table["time"].max()) for c in km.curves.values())
    step = float(np.ceil(tmax / (n - 1))) if tmax > 0 else 1.0
    nice = [1, 2, 3, 5, 6, 10, 12, 20, 24, 25, 50, 100, 200, 250, 365, 500, 1000]
    step = next((s for s in nice if s >= step), step)
    return np.arange(0.0, tmax + step - 1e-9, step)


def _n_at_risk(table: pd.DataFrame, times: np.ndarray, n: int) -> list[int]:
    t = table["time"].to_numpy(float)
    r = table["n_risk"].to_numpy(int)
    out = []
    for x in times:
        i = np.searchsorted(t, x, side="left")
        out.append(int(r[i]) if i < len(t) else 0)
    return out


def draw_km(ax, ax_risk, km: KMResult, test: LogrankResult | None = None,
            title: str | None = None, xlabel: str = "Months",
            labels: dict[str, str] | None = None) -> None:
    """Draw ``km`` into ``ax`` and its numbers at risk into ``ax_risk``.

    Parameters
    ----------
    ax, ax_risk
        Matplotlib axes for the curves and the at-risk table (``ax_risk`` may be
        ``None``).
    km
        Kaplan-Meier result.
    test
        Log-rank result whose P is shown as the legend title.
    title, xlabel
        Axis texts.
    labels
        Display names of the groups.
    """
    labels = labels or {}
    times = _risk_times(km)
    for i, (g, curve) in enumerate(km.curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        t = np.concatenate([[0.0], curve.table["time"].to_numpy(float)])
        s = np.concatenate([[1.0], curve.table["survival"].to_numpy(float)])
        m = curve.median
        name = labels.get(g, g)
        label = (f"{name} (n={curve.n}, events={curve.events}): median {_fmt(m.time)} "
                 f"({_fmt(m.lower)}-{_fmt(m.upper)})")
        ax.step(t, s, where="post", color=colour, lw=1.8, label=label)
        cens = curve.table.loc[curve.table["n_censor"] > 0]
        ax.plot(cens["time"], cens["survival"], ls="none", marker="|", ms=8, mew=1.2,
                color=colour)
    ax.set_ylim(-0.02, 1.02)
    tmax = max(float(c.table["time"].max()) for c in km.curves.values())
    ax.set_xlim(0, max(tmax, times[-1]) * 1.02 if tmax > 0 else 1.0)
    ax.set_xticks(times)
    ax.set_ylabel("Progression-free survival")
    ax.grid(alpha=0.3)
    legend_title = None
    if test is not None:
        p = test.pvalue
        legend_title = f"log-rank P {'< 0.001' if p < 0.001 else f'= {p:.3f}'}"
    ax.legend(loc="upper right", fontsize=7, title=legend_title, title_fontsize=8,
              frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    if ax_risk is None:
        ax.set_xlabel(xlabel)
        return
    ax.tick_params(labelbottom=True)
    ax.set_xlabel(xlabel)
    ax_risk.set_xlim(ax.get_xlim())
    groups = list(km.curves)
    ax_risk.set_ylim(-0.5, len(groups) - 0.5)
    for i, g in enumerate(groups):
        row = len(groups) - 1 - i
        for x, n in zip(times, _n_at_risk(km.curves[g].table, times, km.curves[g].n),
                        strict=True):
            ax_risk.text(x, row, str(n), ha="center", va="center", fontsize=7,
                         color=COLOURS[i % len(COLOURS)])
    ax_risk.set_yticks(range(len(groups)))
    ax_risk.set_yticklabels([labels.get(g, g) for g in reversed(groups)], fontsize=7)
    ax_risk.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax_risk.spines[side].set_visible(False)
    ax_risk.tick_params(left=False, pad=16)
    ax_risk.set_title("Number at risk", fontsize=7, loc="left")


def plot_km(km: KMResult, test: LogrankResult | None = None, title: str | None = None,
            xlabel: str = "Months", labels: dict[str, str] | None = None) -> Figure:
    """Kaplan-Meier figure with a number-at-risk table under the axis.

    Parameters
    ----------
    km
        Result of :func:`ctcimg.stats.kaplan_meier`.
    test
        Optional log-rank result (P in the legend).
    title, xlabel, labels
        Texts; ``labels`` maps group values to display names.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(7, 5.2), dpi=100)
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 1], hspace=0.35)
    ax = fig.add_subplot(gs[0])
    ax_risk = fig.add_subplot(gs[1])
    draw_km(ax, ax_risk, km, test, title, xlabel, labels)
    fig.subplots_adjust(left=0.17, right=0.97, top=0.93, bottom=0.05)
    return fig


def plot_km_panels(df: pd.DataFrame, duration: str, event: str, group: str, panel: str,
                   conf_type: str | None = None, conventions: str = "sas",
                   xlabel: str = "Months", labels: dict[str, str] | None = None) -> Figure:
    """One Kaplan-Meier panel per level of ``panel`` (subgroup analyses).

    Parameters
    ----------
    df
        One row per patient.
    duration, event, group
        As for :func:`ctcimg.stats.kaplan_meier`.
    panel
        Subgroup column, e.g. ``hormone_receptor`` or ``interval_gt_1y``.
    conf_type, conventions
        Passed to :func:`ctcimg.stats.kaplan_meier`.
    xlabel, labels
        Texts.

    Returns
    -------
    matplotlib.figure.Figure
    """
    levels = groups_of(df, panel)
    fig = Figure(figsize=(6.2 * len(levels), 5.2), dpi=100)
    gs = fig.add_gridspec(2, len(levels), height_ratios=[4, 1], hspace=0.35, wspace=0.35)
    for j, lev in enumerate(levels):
        sub = df.loc[df[panel] == lev]
        km = kaplan_meier(sub, duration, event, group, conf_type, conventions=conventions)
        test = logrank(sub, duration, event, group) if len(km.curves) > 1 else None
        draw_km(fig.add_subplot(gs[0, j]), fig.add_subplot(gs[1, j]), km, test,
                f"{panel} = {lev}", xlabel, labels)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.05)
    return fig


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """Render ``fig`` as ``png`` or ``svg`` bytes (deterministic metadata)."""
    buf = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buf, format="svg", metadata={"Date": None})
    elif fmt == "png":
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    else:
        raise ValueError("fmt must be 'png' or 'svg'")
    return buf.getvalue()


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then rename over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Figure, path: str | Path, formats: Sequence[str] | None = None) -> list[Path]:
    """Save ``fig`` atomically; format from the suffix, or each of ``formats``.

    Parameters
    ----------
    fig
        The figure.
    path
        Target file; with ``formats``, its suffix is replaced per format.
    formats
        E.g. ``("png", "svg")``.

    Returns
    -------
    list of Path
        Files written.
    """
    path = Path(path)
    fmts = list(formats) if formats else [path.suffix.lstrip(".").lower()]
    out = []
    for fmt in fmts:
        target = path.with_suffix(f".{fmt}") if formats else path
        out.append(write_atomic(target, figure_bytes(fig, fmt)))
    return out
