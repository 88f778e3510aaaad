"""simulate_clinical: deterministic, well-formed, and carries the intended HR."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctcimg.stats import cox, simulate_clinical
from ctcimg.stats.simulate_clinical import HR_CTC_HER2


def _patients(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "cartridge_id": [f"P{i:04d}" for i in range(n)],
        "call_liu": rng.choice(["positive", "negative", "not_evaluable"], n, p=[0.35, 0.5, 0.15]),
    })


def test_deterministic_and_well_formed() -> None:
    pats = _patients(200)
    a, b = simulate_clinical(pats, seed=7), simulate_clinical(pats, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(simulate_clinical(pats, seed=8))
    assert list(a.patient_id) == list(pats.cartridge_id)
    for col in ("pfs_months", "progressed", "hormone_receptor", "interval_gt_1y", "age",
                "visceral_metastases"):
        assert col in a.columns and a[col].notna().all()
    assert (a.pfs_months > 0).all()
    assert set(a.progressed) <= {0, 1}
    assert set(a.hormone_receptor) == {"pos", "neg"}
    assert set(a.interval_gt_1y) == {"yes", "no"}
    assert set(a.visceral_metastases) == {"yes", "no"}


def test_positive_patients_have_longer_pfs_hr_near_035() -> None:
    pats = _patients(1500, seed=1)
    clin = simulate_clinical(pats, seed=3)
    df = clin.assign(ctc_her2=pats.call_liu.to_numpy())
    df = df[df.ctc_her2 != "not_evaluable"]
    fit = cox(df, "pfs_months", "progressed",
              ["ctc_her2", "hormone_receptor", "visceral_metastases", "interval_gt_1y"],
              ci="wald", reference={"ctc_her2": "negative"})
    row = fit.table.loc["ctc_her2: positive vs negative"]
    assert row.hr_lower < HR_CTC_HER2 < row.hr_upper
    assert row.hr == pytest.approx(HR_CTC_HER2, rel=0.2)


def test_needs_columns() -> None:
    with pytest.raises(ValueError, match="call_liu"):
        simulate_clinical(pd.DataFrame({"cartridge_id": ["a"]}), seed=0)
