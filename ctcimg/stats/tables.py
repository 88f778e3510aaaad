"""Table 1: patient characteristics by CTC-HER2 status, with the test used for each P.

Convention (DESIGN.md section 1): a 2x2 table is tested with Pearson's chi-square
*without* continuity correction when every expected count is at least 5, otherwise
with the two-sided Fisher exact test (the Cochran rule, ``test="auto"``). This
reproduces the reference study's P values. Continuous covariates are summarised as
median (range) and compared with the two-sided Mann-Whitney rank-sum test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

TESTS: tuple[str, ...] = ("auto", "chi2", "yates", "fisher")
TEST_NAMES: dict[str, str] = {
    "chi2": "Pearson chi-square",
    "yates": "chi-square, Yates-corrected",
    "fisher": "Fisher exact (two-sided)",
    "mannwhitney": "Mann-Whitney U",
    "chi2_rxc": "Pearson chi-square (r x c)",
}


@dataclass(frozen=True, eq=False)
class TwoByTwo:
    """Result of :func:`compare_2x2`.

    Attributes
    ----------
    test
        Test actually used: ``chi2``, ``yates`` or ``fisher``.
    statistic
        Chi-square statistic, or the sample odds ratio for Fisher's test.
    pvalue
        Two-sided P value.
    expected
        Expected counts under independence (2x2 float array).
    table
        The observed counts.
    """

    test: str
    statistic: float
    pvalue: float
    expected: np.ndarray
    table: np.ndarray

    def __str__(self) -> str:
        return f"{TEST_NAMES[self.test]}: statistic {self.statistic:.4g}, P = {self.pvalue:.3g}"


def compare_2x2(table: Sequence[Sequence[int]] | np.ndarray, test: str = "auto") -> TwoByTwo:
    """Test independence in a 2x2 table of counts.

    Parameters
    ----------
    table
        ``[[a, b], [c, d]]`` non-negative integer counts.
    test
        ``"auto"`` (Cochran rule: Pearson chi-square without continuity correction if
        every expected count is >= 5, else two-sided Fisher exact), ``"chi2"``,
        ``"yates"`` or ``"fisher"``.

    Returns
    -------
    TwoByTwo
        Frozen result with ``pvalue``, ``test``, ``statistic``, ``expected``.

    Examples
    --------
    >>> round(compare_2x2([[8, 25], [14, 11]]).pvalue, 3)
    0.014
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, not {test!r}")
    obs = np.asarray(table)
    if obs.shape != (2, 2):
        raise ValueError(f"a 2x2 table is needed, got shape {obs.shape}")
    if np.any(obs < 0) or np.any(obs != np.round(obs)):
        raise ValueError("counts must be non-negative integers")
    obs = obs.astype(np.int64)
    n = obs.sum()
    if n == 0:
        raise ValueError("the table is empty")
    expected = np.outer(obs.sum(axis=1), obs.sum(axis=0)) / n
    if test == "auto":
        test = "chi2" if np.all(expected >= 5) else "fisher"
    if test == "fisher":
        res = st.fisher_exact(obs, alternative="two-sided")
        return TwoByTwo("fisher", float(res.statistic), float(res.pvalue), expected, obs)
    if np.any(expected == 0):
        # a zero margin: no evidence against independence
        return TwoByTwo(test, 0.0, 1.0, expected, obs)
    res = st.chi2_contingency(obs, correction=(test == "yates"))
    return TwoByTwo(test, float(res.statistic), float(res.pvalue), expected, obs)


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def table1(
    df: pd.DataFrame,
    group: str = "ctc_her2",
    categorical: Sequence[str] = (),
    continuous: Sequence[str] = (),
    test: str = "auto",
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Patient characteristics by group (two groups), one row per level.

    Parameters
    ----------
    df
        One row per patient.
    group
        Two-level grouping column (default ``ctc_her2``).
    categorical
        Columns summarised as counts and row percentages (the share of patients
        with that level who fall in each group); 2-level variables are tested with
        :func:`compare_2x2` (``test``), more levels with Pearson's r x c chi-square.
    continuous
        Columns summarised as median (range), tested with Mann-Whitney U.
    groups
        Order of the two groups (default: categories of ``group`` reversed if it is
        ``ctc_her2``, i.e. positive first; else sorted).

    Returns
    -------
    pandas.DataFrame
        Columns ``variable``, ``level``, then for each group ``<g> n``, ``<g> %``,
        ``<g>`` (formatted), and ``test``, ``p``, ``p_text``. The P value sits on the
        first row of each variable.
    """
    groups = _two_groups(df, group, groups)
    g = df[group].astype(object)
    rows: list[dict] = []
    for var in categorical:
        rows += _categorical_rows(df, group, g, var, groups, test)
    for var in continuous:
        rows.append(_continuous_row(df, g, var, groups))
    return pd.DataFrame(rows)


def _two_groups(df: pd.DataFrame, group: str, groups: Sequence[str] | None) -> list:
    """The two groups of :func:`table1` in column order (see its ``groups``)."""
    if groups is None:
        if group == "ctc_her2":
            groups = ["positive", "negative"]
        else:
            groups = sorted(pd.unique(df[group].dropna()).tolist(), key=str)
    groups = list(groups)
    if len(groups) != 2:
        raise ValueError(f"table1 needs exactly two groups in {group!r}, got {groups}")
    return groups


def _categorical_rows(df: pd.DataFrame, group: str, g: pd.Series, var: str, groups: list,
                      test: str) -> list[dict]:
    """Rows of one categorical variable: a level each, the P value on the first."""
    sub = df.loc[df[var].notna() & g.isin(groups)]
    levels = sorted(pd.unique(sub[var]).tolist(), key=str)
    if isinstance(df[var].dtype, pd.CategoricalDtype):
        levels = [c for c in df[var].cat.categories if c in set(levels)]
    counts = np.array([[int(((sub[var] == lev) & (sub[group].astype(object) == grp)).sum())
                        for grp in groups] for lev in levels])
    if len(levels) == 2:
        res = compare_2x2(counts, test=test)
        p, used = res.pvalue, res.test
    elif len(levels) > 2:
        ok = counts.sum(axis=1) > 0
        r = st.chi2_contingency(counts[ok], correction=False)
        p, used = float(r.pvalue), "chi2_rxc"
    else:
        p, used = float("nan"), ""
    rows = []
    for i, lev in enumerate(levels):
        tot = counts[i].sum()
        row = {"variable": var, "level": str(lev)}
        for j, grp in enumerate(groups):
            pct = 100.0 * counts[i, j] / tot if tot else float("nan")
            row[f"{grp} n"] = int(counts[i, j])
            row[f"{grp} %"] = pct
            row[str(grp)] = f"{counts[i, j]} ({pct:.0f}%)"
        row["test"] = TEST_NAMES.get(used, used) if i == 0 else ""
        row["p"] = p if i == 0 else float("nan")
        row["p_text"] = _fmt_p(p) if i == 0 else ""
        rows.append(row)
    return rows


def _continuous_row(df: pd.DataFrame, g: pd.Series, var: str, groups: list) -> dict:
    """The row of one continuous variable: median (range) per group, Mann-Whitney P."""
    vals = [pd.to_numeric(df.loc[g == grp, var], errors="coerce").dropna().to_numpy()
            for grp in groups]
    if all(len(v) for v in vals):
        p = float(st.mannwhitneyu(vals[0], vals[1], alternative="two-sided").pvalue)
    else:
        p = float("nan")
    row = {"variable": var, "level": "median (range)"}
    for grp, v in zip(groups, vals, strict=True):
        row[f"{grp} n"] = len(v)
        row[f"{grp} %"] = float("nan")
        row[str(grp)] = (f"{np.median(v):.4g} ({v.min():.4g}-{v.max():.4g})" if len(v)
                         else "")
    row["test"] = TEST_NAMES["mannwhitney"]
    row["p"] = p
    row["p_text"] = _fmt_p(p)
    return row
