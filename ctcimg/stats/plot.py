"""Kaplan-Meier plots (step curves, censor ticks, numbers at risk, medians, log-rank P)
and forest plots of Cox tables.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend switch); saving renders with the Agg (PNG) or SVG canvas.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ctcimg.io.atomic import write_bytes_atomic
from ctcimg.stats.cox import CoxResult, CoxTable
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


def term_counts(result: CoxResult) -> list[str]:
    """Patients/events behind each term of a Cox fit, as ``n/events``.

    A categorical term reads ``level n/events vs reference n/events``; a numeric
    term gives the whole model's ``n/events``.
    """
    out = []
    for j, term in enumerate(result.terms):
        if term.level is None:
            out.append(f"{result.n}/{result.events}")
            continue
        level = result.x[:, j] == 1
        siblings = [i for i, t in enumerate(result.terms) if t.covariate == term.covariate]
        ref = np.all(result.x[:, siblings] == 0, axis=1)
        out.append(f"{int(level.sum())}/{int(result.status[level].sum())} vs "
                   f"{int(ref.sum())}/{int(result.status[ref].sum())}")
    return out


def _p_text(p: float) -> str:
    return "" if not np.isfinite(p) else ("P<0.001" if p < 0.001 else f"P={p:.3f}")


def plot_forest(table: CoxTable, labels: dict[str, str] | None = None,
                title: str | None = None) -> Figure:
    """Forest plot of univariate and multivariate hazard ratios side by side.

    Parameters
    ----------
    table
        Result of :func:`ctcimg.stats.cox_table`.
    labels
        Display names of the terms (default: the term labels).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One row per term: label, ``n/events`` of the level and of its reference,
        then for each model the HR with its CI on a log axis (reference line at 1;
        a limit beyond the axis is drawn as an arrow) and ``HR (lower-upper), P``.
        Terms whose models used Firth's penalty are marked with a dagger.
    """
    labels = labels or {}
    tab = table.table
    terms = list(tab.index)
    counts = dict(zip(terms, term_counts(table.multivariate), strict=True))
    firth = set(table.firth_terms)
    rows = len(terms)
    lo, hi = _hr_axis_range(tab)
    fig = Figure(figsize=(12, 1.3 + 0.42 * rows), dpi=100)
    gs = fig.add_gridspec(1, 6, width_ratios=[3.0, 1.1, 2.3, 1.7, 2.3, 1.7], wspace=0.04)
    y = np.arange(rows)[::-1].astype(float)
    ax_lab = fig.add_subplot(gs[0])
    ax_n = fig.add_subplot(gs[1])
    for yi, term in zip(y, terms, strict=True):
        name = labels.get(term, term) + (" \u2020" if term in firth else "")
        ax_lab.text(0.0, yi, name, ha="left", va="center", fontsize=8)
        ax_n.text(0.95, yi, counts[term], ha="right", va="center", fontsize=7, color="#555")
    ax_n.set_title("n/events", fontsize=8)
    for k, (prefix, head) in enumerate((("uni", "Univariate"), ("multi", "Multivariate"))):
        _forest_panel(fig.add_subplot(gs[2 + 2 * k]), fig.add_subplot(gs[3 + 2 * k]), tab,
                      terms, y, prefix, head, COLOURS[k], (lo, hi))
    for ax in fig.axes:
        ax.set_ylim(-0.7, rows - 0.3)
        if ax.get_xscale() != "log":
            ax.set_xlim(0, 1)
            ax.axis("off")
    m = table.multivariate
    note = (f"Cox models, {m.ties} ties, "
            f"{'profile-likelihood' if m.ci == 'profile' else 'Wald'} CIs, Wald P")
    if firth:
        note += "; \u2020 Firth's penalised likelihood (monotone likelihood)"
    fig.text(0.01, 0.01, note, fontsize=7, color="#555", ha="left", va="bottom")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.99, top=1 - 0.6 / fig.get_figheight(),
                        bottom=0.7 / fig.get_figheight())
    return fig


def _hr_axis_range(tab: pd.DataFrame) -> tuple[float, float]:
    """The hazard-ratio axis of a forest plot: every finite HR and limit and 1, padded,
    within 0.01-100."""
    finite = tab[["uni_lower", "uni_upper", "multi_lower", "multi_upper", "uni_hr",
                  "multi_hr"]].to_numpy(float).ravel()
    finite = finite[np.isfinite(finite) & (finite > 0)]
    lo = max(min(finite.min(), 1.0) / 1.3, 1e-2) if finite.size else 0.1
    hi = min(max(finite.max(), 1.0) * 1.3, 1e2) if finite.size else 10.0
    return lo, hi


def _forest_panel(ax, ax_txt, tab: pd.DataFrame, terms: list, y: np.ndarray, prefix: str,
                  head: str, colour: str, limits: tuple[float, float]) -> None:
    """One model's column pair of the forest plot: HRs with their CIs on a log axis
    (``ax``), and ``HR (lower-upper), P`` as text (``ax_txt``)."""
    lo, hi = limits
    for yi, term in zip(y, terms, strict=True):
        hr, low, up = (float(tab.loc[term, f"{prefix}_{c}"]) for c in ("hr", "lower", "upper"))
        if not np.isfinite(hr) or hr <= 0:
            continue
        a, b = np.clip([low if low > 0 else lo, up if np.isfinite(up) else hi], lo, hi)
        ax.plot([a, b], [yi, yi], color=colour, lw=1.4)
        for limit, edge, marker in ((low, lo, "<"), (up, hi, ">")):
            if not (lo < limit < hi):
                ax.plot([edge], [yi], marker=marker, color=colour, ms=5)
        ax.plot([np.clip(hr, lo, hi)], [yi], marker="s", color=colour, ms=6)
        p = float(tab.loc[term, f"{prefix}_p"])
        ax_txt.text(0.03, yi, f"{hr:.2f} ({low:.2f}-{up:.2f})  {_p_text(p)}",
                    ha="left", va="center", fontsize=7)
    fine = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
    coarse = (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100)
    ticks = [t for t in (fine if hi / lo <= 200 else coarse) if lo <= t <= hi]
    ax.axvline(1.0, color="#444", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_title(head, fontsize=9)
    ax.set_xlabel("Hazard ratio (log scale)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_yticks([])
    ax.grid(axis="x", alpha=0.3)
    ax_txt.set_title("HR (95% CI)", fontsize=8)


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
        write_bytes_atomic(target, figure_bytes(fig, fmt))
        out.append(target)
    return out
