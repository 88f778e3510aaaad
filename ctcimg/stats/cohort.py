"""Read the patients table (from ``ctcimg batch``) and a clinical table, validate, join.

Every problem with a user's file raises :class:`ctcimg.errors.InputError` naming the
file and the offending rows (1-based data-row numbers, i.e. file line minus one),
unless the caller asked for an explicit exclusion, which is then recorded in
:attr:`Cohort.excluded` so the report can count it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctcimg.errors import InputError
from ctcimg.io.tables import read_csv_table
from ctcimg.rules import RULES as BUILTIN_RULES

#: Call values the batch command writes.
CALL_VALUES: tuple[str, ...] = ("positive", "negative", "not_evaluable")
#: Positivity rules whose calls the patients table carries (``call_<rule>``).
RULES: tuple[str, ...] = tuple(BUILTIN_RULES)
#: Columns the patients table must have.
PATIENT_COLUMNS: tuple[str, ...] = ("cartridge_id", "status")
#: Name of the CTC-HER2 status column in a joined cohort.
GROUP = "ctc_her2"
#: Name of the CTC-detection column (``none``: 0 CTCs, ``detected``: >= 1) of
#: :attr:`Cohort.all_data`.
CTC_GROUP = "ctc_detected"

_MAX_LISTED = 10


def _rows(index: Sequence[int] | pd.Index) -> str:
    """Format data-row numbers (0-based positions) as a short 1-based list."""
    rows = [int(i) + 1 for i in index]
    text = ", ".join(str(r) for r in rows[:_MAX_LISTED])
    if len(rows) > _MAX_LISTED:
        text += f", ... ({len(rows)} rows)"
    return f"row{'s' if len(rows) > 1 else ''} {text}"


def _read_csv(path: str | Path, id_column: str) -> pd.DataFrame:
    path = Path(path)
    df = read_csv_table(path, dtype={id_column: str}, skipinitialspace=True)
    if df.shape[1] < 2:
        raise InputError(
            f"cannot read as CSV: found {df.shape[1]} column(s); expected a comma-separated "
            "table with a header row", path)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _require(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in df.columns)}", path)


def _duplicates(ids: pd.Series, what: str, path: Path) -> None:
    dup = ids.duplicated(keep=False) & ids.notna()
    if dup.any():
        pos = np.flatnonzero(dup.to_numpy())
        names = sorted(set(ids[dup]))
        raise InputError(f"duplicate {what} {', '.join(names[:_MAX_LISTED])} at {_rows(pos)}",
                         path)


def load_patients(path: str | Path, rule: str = "liu") -> pd.DataFrame:
    """Read a patients table written by ``ctcimg batch``.

    Parameters
    ----------
    path
        CSV with at least ``cartridge_id``, ``status`` and ``call_<rule>``.
    rule
        Positivity rule whose call column is used (``liu``, ``pestrin``, ``riethdorf``
        or any ``call_<name>`` column present).

    Returns
    -------
    pandas.DataFrame
        The table, ids as strings, with the call column validated.

    Raises
    ------
    InputError
        Unreadable CSV, missing columns, duplicate or empty ids, unknown call values.
    """
    path = Path(path)
    df = _read_csv(path, "cartridge_id")
    call = f"call_{rule}"
    _require(df, [*PATIENT_COLUMNS, call], path)
    ids = df["cartridge_id"].astype("string").str.strip()
    if ids.isna().any() or (ids == "").any():
        raise InputError(f"empty cartridge_id at {_rows(np.flatnonzero(ids.isna() | (ids == '')))}",
                         path)
    _duplicates(ids, "cartridge_id", path)
    df["cartridge_id"] = ids.astype(str)
    status = df["status"].astype("string").str.strip().str.lower()
    bad = ~status.isin(["ok", "failed"])
    if bad.any():
        raise InputError(f"status must be ok or failed; bad values at "
                         f"{_rows(np.flatnonzero(bad.to_numpy()))}", path)
    df["status"] = status.astype(str)
    calls = df[call].astype("string").str.strip().str.lower()
    ok = df["status"] == "ok"
    bad = ok & ~calls.isin(CALL_VALUES).fillna(False)
    if bad.any():
        raise InputError(f"{call} must be one of {', '.join(CALL_VALUES)}; bad values at "
                         f"{_rows(np.flatnonzero(bad.to_numpy()))}", path)
    df[call] = calls.astype(object).where(calls.notna(), None)
    if "ctc_count" in df.columns:
        count = pd.to_numeric(df["ctc_count"], errors="coerce")
        bad = ok & ~(count.notna() & (count >= 0) & (count == count.round()))
        if bad.any():
            raise InputError("ctc_count must be a whole number >= 0; bad values at "
                             f"{_rows(np.flatnonzero(bad.to_numpy()))}", path)
        mismatch = ok & ((count == 0) != (df[call] == "not_evaluable"))
        if mismatch.any():
            raise InputError(f"{call} must be not_evaluable exactly when ctc_count is 0; "
                             f"it is not at {_rows(np.flatnonzero(mismatch.to_numpy()))}", path)
        df["ctc_count"] = count.astype("Int64")
    return df


def load_clinical(
    path: str | Path,
    *,
    id_column: str = "patient_id",
    time: str = "pfs_months",
    event: str = "progressed",
    covariates: Sequence[str] = (),
    missing: str = "error",
) -> tuple[pd.DataFrame, tuple[tuple[str, str], ...]]:
    """Read and validate a clinical table.

    Parameters
    ----------
    path
        CSV with one row per patient.
    id_column, time, event
        Names of the patient-id, follow-up time and event (0 = censored, 1 = event)
        columns.
    covariates
        Further columns that must be present and complete.
    missing
        ``"error"`` (default): a missing time, event or covariate is an error.
        ``"exclude"``: such rows are dropped and returned as exclusions.

    Returns
    -------
    (pandas.DataFrame, tuple of (id, reason))
        The validated table (time float, event int 0/1) and the excluded rows.

    Raises
    ------
    InputError
        Unreadable CSV, missing columns, duplicate ids, missing values (unless
        excluded), non-numeric or negative times, events other than 0/1.
    """
    if missing not in ("error", "exclude"):
        raise ValueError("missing must be 'error' or 'exclude'")
    path = Path(path)
    df = _read_csv(path, id_column)
    needed = [id_column, time, event, *[c for c in covariates if c not in (time, event)]]
    _require(df, needed, path)
    ids = df[id_column].astype("string").str.strip()
    df[id_column] = ids
    if ids.isna().any() or (ids == "").any():
        raise InputError(f"empty {id_column} at "
                         f"{_rows(np.flatnonzero((ids.isna() | (ids == '')).to_numpy()))}", path)
    _duplicates(ids, id_column, path)
    df[id_column] = ids.astype(str)

    excluded: list[tuple[str, str]] = []
    cols = [time, event, *[c for c in covariates if c not in (time, event)]]
    na = df[cols].isna() | df[cols].apply(
        lambda s: s.astype("string").str.strip().eq("").fillna(False))
    if na.to_numpy().any():
        rows = np.flatnonzero(na.any(axis=1).to_numpy())
        which = [c for c in cols if na[c].any()]
        if missing == "error":
            raise InputError(f"missing values in {', '.join(repr(c) for c in which)} at "
                             f"{_rows(rows)}", path)
        for r in rows:
            gone = [c for c in cols if na.iloc[r][c]]
            excluded.append((df[id_column].iloc[r], f"missing {', '.join(gone)}"))
        df = df.drop(index=df.index[rows]).reset_index(drop=True)

    t = pd.to_numeric(df[time], errors="coerce")
    bad = t.isna() | ~np.isfinite(t.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        raise InputError(f"{time!r} must be a number; bad values at "
                         f"{_rows(np.flatnonzero(bad.to_numpy()))}", path)
    if (t < 0).any():
        raise InputError(f"negative {time!r} at {_rows(np.flatnonzero((t < 0).to_numpy()))}",
                         path)
    e = pd.to_numeric(df[event], errors="coerce")
    bad = ~e.isin([0, 1])
    if bad.any():
        raise InputError(f"{event!r} must be 0 (censored) or 1 (event); bad values at "
                         f"{_rows(np.flatnonzero(bad.to_numpy()))}", path)
    df[time] = t.astype(float)
    df[event] = e.astype(int)
    return df, tuple(excluded)


@dataclass(frozen=True, eq=False)
class Cohort:
    """Patients joined with their clinical data.

    Attributes
    ----------
    data
        One row per evaluable patient: clinical columns plus ``ctc_her2``
        (``positive``/``negative`` under :attr:`rule`) and ``cartridge_id``.
    excluded
        ``(id, reason)`` for every patient left out of the CTC-HER2 comparisons.
    all_data
        Every patient with a successful cartridge and clinical data, including those
        with 0 CTCs, with ``ctc_count`` and ``ctc_detected`` (``none``/``detected``);
        empty when the patients table has no ``ctc_count`` column.
    rule
        Positivity rule used for ``ctc_her2``.
    n_patients, n_clinical
        Rows in the two input tables.
    """

    data: pd.DataFrame
    excluded: tuple[tuple[str, str], ...]
    rule: str
    n_patients: int
    n_clinical: int
    time: str
    event: str
    covariates: tuple[str, ...] = field(default=())
    all_data: pd.DataFrame = field(default_factory=pd.DataFrame)

    def exclusion_counts(self) -> dict[str, int]:
        """Number of excluded patients per reason."""
        counts: dict[str, int] = {}
        for _, reason in self.excluded:
            key = reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def join(
    patients: pd.DataFrame,
    clinical: pd.DataFrame,
    *,
    id_column: str = "patient_id",
    time: str = "pfs_months",
    event: str = "progressed",
    covariates: Sequence[str] = (),
    rule: str = "liu",
    unmatched: str = "error",
    clinical_excluded: Sequence[tuple[str, str]] = (),
    patients_path: str | Path | None = None,
    clinical_path: str | Path | None = None,
) -> Cohort:
    """Join patient calls (``cartridge_id``) with clinical rows (``id_column``).

    Parameters
    ----------
    patients, clinical
        Tables from :func:`load_patients` and :func:`load_clinical`.
    unmatched
        ``"error"`` (default): an id present in one table but not the other is an
        error naming the ids. ``"exclude"``: such patients are dropped and recorded.
    clinical_excluded
        Exclusions already made while loading the clinical table.
    patients_path, clinical_path
        File names used in error messages.

    Returns
    -------
    Cohort
        Evaluable patients (status ok and call positive/negative); failed cartridges
        and not-evaluable calls are recorded in ``excluded``.
    """
    if unmatched not in ("error", "exclude"):
        raise ValueError("unmatched must be 'error' or 'exclude'")
    call = f"call_{rule}"
    pid = patients["cartridge_id"].astype(str)
    cid = clinical[id_column].astype(str)
    dropped = {i for i, _ in clinical_excluded}
    cid_set, pid_set = set(cid), set(pid)
    no_clin = [i for i in pid if i not in cid_set and i not in dropped]
    no_pat = [i for i in cid if i not in pid_set]
    excluded: list[tuple[str, str]] = list(clinical_excluded)
    if unmatched == "error":
        if no_clin:
            pos = np.flatnonzero(pid.isin(no_clin).to_numpy())
            raise InputError(
                f"{len(no_clin)} cartridge_id(s) have no row in the clinical table: "
                f"{', '.join(no_clin[:_MAX_LISTED])} ({_rows(pos)})", patients_path)
        if no_pat:
            pos = np.flatnonzero(cid.isin(no_pat).to_numpy())
            raise InputError(
                f"{len(no_pat)} {id_column}(s) match no cartridge_id in the patients table: "
                f"{', '.join(no_pat[:_MAX_LISTED])} ({_rows(pos)})", clinical_path)
    else:
        excluded += [(i, "no clinical data") for i in no_clin]
        excluded += [(i, "no patients-table row") for i in no_pat]
    merged = patients.merge(clinical, left_on="cartridge_id", right_on=id_column, how="inner",
                            suffixes=("", "_clinical"))
    failed = merged["status"] != "ok"
    excluded += [(i, "cartridge failed") for i in merged.loc[failed, "cartridge_id"]]
    ne = ~failed & (merged[call] == "not_evaluable")
    excluded += [(i, "not evaluable (0 CTCs)") for i in merged.loc[ne, "cartridge_id"]]
    data = merged.loc[~failed & ~ne].copy()
    data[GROUP] = pd.Categorical(data[call], categories=["negative", "positive"])
    data = data.reset_index(drop=True)
    all_data = pd.DataFrame()
    if "ctc_count" in merged.columns:
        all_data = merged.loc[~failed].copy().reset_index(drop=True)
        all_data["ctc_count"] = all_data["ctc_count"].astype(int)
        all_data[CTC_GROUP] = pd.Categorical(
            np.where(all_data["ctc_count"] > 0, "detected", "none"),
            categories=["none", "detected"])
    return Cohort(data=data, excluded=tuple(excluded), rule=rule,
                  n_patients=len(patients), n_clinical=len(clinical), time=time, event=event,
                  covariates=tuple(covariates), all_data=all_data)


def ctc_cutoff_column(cutoff: int) -> str:
    """Name of the column :func:`add_ctc_cutoffs` makes for ``ctc_count >= cutoff``."""
    return f"ctc_ge_{cutoff}"


def add_ctc_cutoffs(df: pd.DataFrame, cutoffs: Sequence[int]) -> pd.DataFrame:
    """A copy of ``df`` with a ``ctc_ge_<c>`` column (``yes``/``no``) per cut-off.

    Parameters
    ----------
    df
        Table with a ``ctc_count`` column.
    cutoffs
        Whole numbers >= 1: ``ctc_ge_<c>`` is ``yes`` when ``ctc_count >= c``.

    Returns
    -------
    pandas.DataFrame
    """
    out = df.copy()
    for c in cutoffs:
        if int(c) != c or c < 1:
            raise InputError(f"CTC cut-offs must be whole numbers >= 1, got {c!r}")
        out[ctc_cutoff_column(int(c))] = pd.Categorical(
            np.where(out["ctc_count"] >= c, "yes", "no"), categories=["no", "yes"])
    return out


def load_cohort(
    patients_path: str | Path,
    clinical_path: str | Path,
    *,
    id_column: str = "patient_id",
    time: str = "pfs_months",
    event: str = "progressed",
    covariates: Sequence[str] = (),
    rule: str = "liu",
    missing: str = "error",
    unmatched: str = "error",
) -> Cohort:
    """Read both tables and :func:`join` them; see there for the parameters."""
    patients = load_patients(patients_path, rule=rule)
    clinical, excl = load_clinical(clinical_path, id_column=id_column, time=time, event=event,
                                   covariates=covariates, missing=missing)
    return join(patients, clinical, id_column=id_column, time=time, event=event,
                covariates=covariates, rule=rule, unmatched=unmatched, clinical_excluded=excl,
                patients_path=patients_path, clinical_path=clinical_path)
