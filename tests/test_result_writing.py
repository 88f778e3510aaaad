"""events.csv text without the csv module (no field needs quoting) equals pandas' output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctcimg.results import _csv_text


@pytest.mark.parametrize("reason", ["too_small", 'odd, "quoted"', "two\nlines"])
def test_events_csv_text_equals_pandas_with_and_without_quoting(reason):
    rng = np.random.default_rng(3)
    n = 200
    values = rng.normal(0, 1, n) * 10.0 ** rng.integers(-9, 9, n)
    values[::17] = np.nan
    values[5] = -0.0
    table = pd.DataFrame({
        "event_id": np.arange(1, n + 1, dtype=np.int64),
        "x_um": values,
        "area_px": rng.integers(0, 5000, n).astype(np.int32),
        "is_ctc": rng.random(n) < 0.3,
        "reject_reason": np.array(["", reason] * (n // 2), dtype=object),
        "her2_score": np.array(["3+", ""] * (n // 2), dtype=object),
    })
    for part in (table, table.iloc[:0]):
        columns = {name: part[name].to_numpy() for name in part.columns}
        assert _csv_text(columns) == part.to_csv(index=False, float_format="%.6g",
                                                 lineterminator="\n")
