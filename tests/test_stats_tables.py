"""Table 1 tests: the Cochran rule reproduces the reference study's P values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ctcimg.stats import compare_2x2, table1

# DESIGN.md section 1: the study's 2x2 counts, its P (3 decimals) and the test used.
STUDY = [
    ("ER/PR", [[8, 25], [14, 11]], 0.014, "chi2"),
    ("metastases", [[5, 3], [17, 33]], 0.238, "fisher"),
    ("visceral", [[16, 28], [6, 8]], 0.663, "chi2"),
    ("DFS", [[12, 12], [10, 24]], 0.111, "chi2"),
    ("therapy line", [[5, 2], [17, 34]], 0.092, "fisher"),
    ("treatment", [[19, 24], [3, 12]], 0.096, "chi2"),
]


@pytest.mark.parametrize("name, table, p, test", STUDY, ids=[s[0] for s in STUDY])
def test_study_table1_p_values(name, table, p, test) -> None:
    res = compare_2x2(table)
    assert res.test == test
    assert round(res.pvalue, 3) == pytest.approx(p, abs=1e-12)
    assert (res.expected.min() >= 5) == (test == "chi2")


def test_discordance_by_interval_is_fisher_0043() -> None:
    res = compare_2x2([[29, 12], [7, 10]], test="fisher")
    assert res.test == "fisher"
    assert round(res.pvalue, 3) == 0.043
    # the Cochran rule would pick chi-square here (all expected >= 5): a different P
    assert compare_2x2([[29, 12], [7, 10]]).test == "chi2"
    assert round(compare_2x2([[29, 12], [7, 10]]).pvalue, 3) != 0.043


def test_explicit_tests_and_expected_counts() -> None:
    t = np.array([[8, 25], [14, 11]])
    chi = compare_2x2(t, "chi2")
    yates = compare_2x2(t, "yates")
    fisher = compare_2x2(t, "fisher")
    assert yates.pvalue > chi.pvalue  # continuity correction is conservative
    assert chi.statistic == pytest.approx(st.chi2_contingency(t, correction=False).statistic)
    assert fisher.pvalue == pytest.approx(st.fisher_exact(t).pvalue)
    assert fisher.statistic == pytest.approx(8 * 11 / (25 * 14))
    np.testing.assert_allclose(chi.expected.sum(axis=0), t.sum(axis=0))
    np.testing.assert_allclose(chi.expected.sum(axis=1), t.sum(axis=1))
    assert "chi-square" in str(chi)


def test_result_is_frozen_and_inputs_checked() -> None:
    res = compare_2x2([[1, 2], [3, 4]])
    with pytest.raises(AttributeError):
        res.pvalue = 0.5  # type: ignore[misc]
    for bad in ([[1, 2, 3], [4, 5, 6]], [[-1, 2], [3, 4]], [[0, 0], [0, 0]], [[1.5, 2], [3, 4]]):
        with pytest.raises(ValueError):
            compare_2x2(bad)
    with pytest.raises(ValueError):
        compare_2x2([[1, 2], [3, 4]], test="g-test")


def test_table1_counts_row_percent_tests() -> None:
    # ER/PR: 8 of 22 positive and 25 of 36 negative patients are ER/PR+
    n_pos, n_neg = 22, 36
    er = ["pos"] * 8 + ["neg"] * 14 + ["pos"] * 25 + ["neg"] * 11
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "ctc_her2": ["positive"] * n_pos + ["negative"] * n_neg,
        "er_pr": er,
        "line": ["1"] * 5 + ["2+"] * 17 + ["1"] * 2 + ["2+"] * 34,
        "age": rng.normal(55, 10, n_pos + n_neg).round(),
    })
    t1 = table1(df, categorical=["er_pr", "line"], continuous=["age"])
    er_rows = t1[t1.variable == "er_pr"].set_index("level")
    assert er_rows.loc["pos", "positive n"] == 8 and er_rows.loc["pos", "negative n"] == 25
    assert er_rows.loc["pos", "positive %"] == pytest.approx(100 * 8 / 33)
    assert er_rows.loc["neg", "p_text"] == "0.014"
    assert er_rows.loc["neg", "test"] == "Pearson chi-square"
    line = t1[t1.variable == "line"]
    assert line.iloc[0]["p_text"] == "0.092" and line.iloc[0]["test"].startswith("Fisher")
    age = t1[t1.variable == "age"].iloc[0]
    expect = st.mannwhitneyu(df.age[:n_pos], df.age[n_pos:], alternative="two-sided").pvalue
    assert age["p"] == pytest.approx(expect)
    assert age["level"] == "median (range)"
    lo, hi = df.age[:n_pos].min(), df.age[:n_pos].max()
    assert age["positive"] == f"{np.median(df.age[:n_pos]):.4g} ({lo:.4g}-{hi:.4g})"
