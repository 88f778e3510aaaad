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
