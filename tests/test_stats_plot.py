"""Kaplan-Meier plots: PNG has curves where they should be; SVG is produced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from ctcimg.stats import kaplan_meier, logrank, plot_km, plot_km_panels, save_figure
from ctcimg.stats.plot import COLOURS


def _cohort(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pos = rng.random(n) < 0.4
    t = rng.exponential(np.where(pos, 20.0, 6.0))
    c = rng.uniform(5, 40, n)
    return pd.DataFrame({
        "pfs": np.minimum(t, c).round(2), "ev": (t <= c).astype(int),
        "ctc_her2": np.where(pos, "positive", "negative"),
        "hr": np.where(rng.random(n) < 0.6, "pos", "neg"),
    })


def _mask(img: np.ndarray, hex_colour: str, tol: float = 0.06) -> np.ndarray:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.all(np.abs(img[..., :3] - rgb) < tol, axis=-1)


def test_png_has_both_curves_with_positive_above(tmp_path) -> None:
    df = _cohort()
    km = kaplan_meier(df, "pfs", "ev", "ctc_her2")
    fig = plot_km(km, logrank(df, "pfs", "ev", "ctc_her2"), title="PFS")
    png, svg = save_figure(fig, tmp_path / "km.png", formats=("png", "svg"))
    img = mpimg.imread(png)
    assert img.shape[:2] == (520, 700)
    neg, pos = _mask(img, COLOURS[0]), _mask(img, COLOURS[1])
    assert neg.sum() > 500 and pos.sum() > 500
    # in the curve area (upper 3/4), the longer-PFS group's curve lies higher on average
    top = img.shape[0] * 3 // 4
    rows_neg = np.nonzero(neg[:top])[0]
    rows_pos = np.nonzero(pos[:top])[0]
    assert rows_pos.mean() < rows_neg.mean()
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "log-rank P" in text and "Number at risk" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_single_group_has_no_second_colour(tmp_path) -> None:
    df = _cohort()
    km = kaplan_meier(df, "pfs", "ev")
    (png,) = save_figure(plot_km(km), tmp_path / "one.png")
    img = mpimg.imread(png)
    assert _mask(img, COLOURS[0]).sum() > 500
    assert _mask(img, COLOURS[1]).sum() == 0


def test_subgroup_panels(tmp_path) -> None:
    df = _cohort()
    fig = plot_km_panels(df, "pfs", "ev", "ctc_her2", "hr")
    (png,) = save_figure(fig, tmp_path / "panels.png")
    img = mpimg.imread(png)
    assert img.shape[1] == pytest.approx(2 * 620, abs=2)
    half = img.shape[1] // 2
    for part in (img[:, :half], img[:, half:]):
        assert _mask(part, COLOURS[0]).sum() > 200 and _mask(part, COLOURS[1]).sum() > 200


def _forest_table():
    from ctcimg.stats import cox_table

    df = _cohort(150, seed=3)
    df["age"] = np.random.default_rng(3).normal(55, 9, len(df)).round()
    return df, cox_table(df, "pfs", "ev", ["ctc_her2", "hr", "age"],
                         reference={"ctc_her2": "negative"})


def test_forest_plot_draws_each_hazard_ratio_and_ci(tmp_path) -> None:
    from ctcimg.stats.plot import plot_forest, term_counts

    df, tab = _forest_table()
    fig = plot_forest(tab, title="PFS")
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert [ax.get_title() for ax in panels] == ["Univariate", "Multivariate"]
    terms = list(tab.table.index)
    for ax, prefix in zip(panels, ("uni", "multi"), strict=True):
        squares = [ln for ln in ax.lines if ln.get_marker() == "s"]
        bars = [ln for ln in ax.lines if ln.get_marker() in ("None", "", None)
                and len(ln.get_xdata()) == 2 and ln.get_linestyle() == "-"]
        assert len(squares) == len(terms) == len(bars)
        lo, hi = ax.get_xlim()
        for sq, bar in zip(squares, bars, strict=True):
            row = len(terms) - 1 - int(round(sq.get_ydata()[0]))  # first term on top
            r = tab.table.iloc[row]
            assert sq.get_xdata()[0] == pytest.approx(r[f"{prefix}_hr"])
            np.testing.assert_allclose(bar.get_xdata(),
                                       np.clip([r[f"{prefix}_lower"], r[f"{prefix}_upper"]],
                                               lo, hi))
        assert lo < 1 < hi
    # n/events: the CTC-HER2+ level and its reference, and the whole model for age
    counts = term_counts(tab.multivariate)
    pos = df.ctc_her2 == "positive"
    assert counts[0] == (f"{pos.sum()}/{df.ev[pos].sum()} vs "
                         f"{(~pos).sum()}/{df.ev[~pos].sum()}")
    assert counts[2] == f"{len(df)}/{df.ev.sum()}"
    png, svg = save_figure(fig, tmp_path / "forest.png", formats=("png", "svg"))
    img = mpimg.imread(png)
    assert _mask(img, COLOURS[0]).sum() > 100 and _mask(img, COLOURS[1]).sum() > 100
    text = svg.read_text()
    assert "Hazard ratio (log scale)" in text and "n/events" in text
    assert "\u2020" not in text  # no Firth rows here


def test_forest_plot_marks_firth_rows_and_unbounded_limits() -> None:
    from ctcimg.stats import cox_table
    from ctcimg.stats.plot import plot_forest

    df = _cohort(80, seed=4)
    df["rare"] = np.where(np.arange(len(df)) % 10 == 0, "a", "b")
    df.loc[df.rare == "a", "ev"] = 0
    tab = cox_table(df, "pfs", "ev", ["ctc_her2", "rare"], reference={"rare": "b"},
                    firth="auto")
    assert tab.firth_terms == ("rare: a vs b",)
    fig = plot_forest(tab)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "rare: a vs b \u2020" in labels and "ctc_her2: negative vs positive" in labels
    assert any("Firth" in t.get_text() for t in fig.texts)
    # a limit beyond the axis is drawn as an arrow at the axis edge
    for ax, prefix in zip([a for a in fig.axes if a.get_xscale() == "log"], ("uni", "multi"),
                          strict=True):
        lo, hi = ax.get_xlim()
        beyond = (tab.table[f"{prefix}_upper"] > hi).sum() + (tab.table[f"{prefix}_lower"]
                                                             < lo).sum()
        arrows = [ln for ln in ax.lines if ln.get_marker() in ("<", ">")]
        assert len(arrows) == beyond
        assert all(ln.get_xdata()[0] in (lo, hi) for ln in arrows)
