"""Synthetic clinical table for a simulated cohort, with known effect sizes.

PFS depends on CTC-HER2 status as in the reference study, where HER2-targeted
therapy helped CTC-HER2-positive patients: hazard ratio :data:`HR_CTC_HER2`
(positive vs negative) on an exponential baseline, with modest covariate effects
and uniform administrative censoring plus random drop-out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: True PFS hazard ratio, CTC-HER2 positive vs negative.
HR_CTC_HER2 = 0.35
#: Median PFS (months) of a CTC-HER2-negative, reference-covariate patient.
BASELINE_MEDIAN_MONTHS = 7.0
#: Hazard ratios of the other covariates (level vs reference).
HR_COVARIATES: dict[str, float] = {
    "hormone_receptor": 0.8,  # pos vs neg
    "visceral_metastases": 1.4,  # yes vs no
    "interval_gt_1y": 0.9,  # yes vs no
}
#: Hazard ratio applied to patients without an evaluable call, vs CTC-HER2 negative.
HR_NOT_EVALUABLE = 0.7


def simulate_clinical(patients: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Make a clinical table for the patients of a (simulated) cohort.

    Parameters
    ----------
    patients
        Table with ``cartridge_id`` and ``call_liu`` (``positive``, ``negative`` or
        ``not_evaluable``; anything else is treated as not evaluable).
    seed
        Random seed; the same patients and seed give the same table.

    Returns
    -------
    pandas.DataFrame
        ``patient_id`` (= ``cartridge_id``), ``pfs_months``, ``progressed`` (0/1),
        ``hormone_receptor`` (pos/neg), ``interval_gt_1y`` (yes/no), ``age``
        (years), ``visceral_metastases`` (yes/no), ``therapy_line`` (1 / 2+) and
        ``her2_therapy`` (trastuzumab/lapatinib/other), one row per patient in
        input order.

    Notes
    -----
    PFS is exponential with hazard
    ``log(2) / BASELINE_MEDIAN_MONTHS * HR_CTC_HER2**positive * prod(HR_cov**x)``;
    censoring is the earlier of administrative follow-up (uniform 18-48 months)
    and an exponential drop-out (5 %/month). Covariates are drawn independently of
    the call except hormone receptor, which is negative more often among
    CTC-HER2-positive patients (as in the study's Table 1).
    """
    if "cartridge_id" not in patients.columns or "call_liu" not in patients.columns:
        raise ValueError("patients needs columns 'cartridge_id' and 'call_liu'")
    rng = np.random.default_rng(seed)
    n = len(patients)
    call = patients["call_liu"].astype(str).str.strip().str.lower().to_numpy()
    positive = call == "positive"
    evaluable = np.isin(call, ("positive", "negative"))
    hr_pos_prob = np.where(positive, 0.36, 0.69)
    hormone = rng.random(n) < hr_pos_prob
    interval = rng.random(n) < 0.6
    visceral = rng.random(n) < 0.72
    line2 = rng.random(n) < 0.7
    age = np.clip(np.round(rng.normal(52, 10, n)), 28, 85).astype(int)
    therapy = rng.choice(np.array(["trastuzumab", "lapatinib", "other"]), size=n,
                         p=[0.7, 0.2, 0.1])
    log_hr = (positive * np.log(HR_CTC_HER2)
              + (~evaluable) * np.log(HR_NOT_EVALUABLE)
              + hormone * np.log(HR_COVARIATES["hormone_receptor"])
              + visceral * np.log(HR_COVARIATES["visceral_metastases"])
              + interval * np.log(HR_COVARIATES["interval_gt_1y"]))
    rate = np.log(2) / BASELINE_MEDIAN_MONTHS * np.exp(log_hr)
    event_time = rng.exponential(1.0 / rate)
    follow_up = rng.uniform(18, 48, n)
    dropout = rng.exponential(1 / 0.05, n)
    censor = np.minimum(follow_up, dropout)
    progressed = (event_time <= censor).astype(int)
    pfs = np.round(np.maximum(np.minimum(event_time, censor), 0.1), 1)
    return pd.DataFrame({
        "patient_id": patients["cartridge_id"].astype(str).to_numpy(),
        "pfs_months": pfs,
        "progressed": progressed,
        "hormone_receptor": np.where(hormone, "pos", "neg"),
        "interval_gt_1y": np.where(interval, "yes", "no"),
        "age": age,
        "visceral_metastases": np.where(visceral, "yes", "no"),
        "therapy_line": np.where(line2, "2+", "1"),
        "her2_therapy": therapy,
    })
