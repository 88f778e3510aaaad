"""The checks every survival function makes of the table it is given (cox, kaplan_meier,
logrank, rmst): the columns exist and are complete, times are non-negative numbers,
events are 0 or 1; and the order in which a grouping column's levels are shown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctcimg.errors import InputError


def require_complete(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise :class:`InputError` when a column is missing or a row has a missing value."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s): {', '.join(map(repr, missing))}")
    na = df[list(columns)].isna().any(axis=1).to_numpy()
    if na.any():
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(na)[:10])
        raise InputError(f"missing values in rows {rows} (drop or impute them first)")


def survival_arrays(df: pd.DataFrame, duration: str, event: str) -> tuple[np.ndarray, np.ndarray]:
    """Follow-up times and event indicators as float arrays, checked: times non-negative
    numbers, events 0 or 1 (:class:`InputError` otherwise)."""
    time = pd.to_numeric(df[duration], errors="coerce")
    if time.isna().any() or (time < 0).any():
        raise InputError(f"{duration!r} must be non-negative numbers")
    status = pd.to_numeric(df[event], errors="coerce")
    if not status.isin([0, 1]).all():
        raise InputError(f"{event!r} must be 0 or 1")
    return time.to_numpy(float), status.to_numpy(float)


def present_levels(s: pd.Series) -> list:
    """The levels of ``s`` present in the data: in category order if it is Categorical,
    else sorted (as text)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [c for c in s.cat.categories if (s == c).any()]
    return sorted(pd.unique(s).tolist(), key=str)
