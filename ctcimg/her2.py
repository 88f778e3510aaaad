"""HER2 scoring: per-CTC signal → 0 / 1+ / 2+ / 3+ by a threshold profile; calibration.

The HER2 signal of a cell is its background-corrected FITC mean over the cell minus the
local background in a ring around it, on the 12-bit scale. A :class:`Her2Profile`
holds the three signal edges between the bins; profiles are saved as JSON.
:func:`calibrate` fits edges to reviewer scores with scikit-learn decision stumps.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctcimg.channels import HER2_BINS
from ctcimg.errors import InputError

PROFILE_FORMAT = "ctcimg-her2-profile"
#: Scale of the asinh transform used when fitting edges (12-bit units).
_FIT_SCALE = 10.0


@dataclass(frozen=True)
class Her2Profile:
    """Edges of the HER2 bins on the per-cell signal scale (12-bit units).

    A cell scores 0 below ``edges[0]``, 1+ from ``edges[0]``, 2+ from ``edges[1]`` and
    3+ from ``edges[2]``.

    Examples
    --------
    >>> profile = Her2Profile(edges=(20.0, 80.0, 220.0))
    >>> profile.score([5.0, 20.0, 150.0, 1000.0]).tolist()
    [0, 1, 2, 3]
    """

    edges: tuple[float, float, float]
    name: str = "custom"
    description: str = ""
    fitted_from: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        if len(edges) != 3 or not all(math.isfinite(e) for e in edges):
            raise InputError(f"HER2 profile {self.name!r} needs three finite edges, got "
                             f"{self.edges!r}")
        if not edges[0] < edges[1] < edges[2]:
            raise InputError(f"HER2 profile {self.name!r}: bins out of order, edges "
                             f"{list(edges)} must increase (0 | 1+ | 2+ | 3+)")
        object.__setattr__(self, "edges", edges)

    def score(self, signal) -> np.ndarray:
        """Bin index 0–3 for each signal value."""
        return np.searchsorted(np.asarray(self.edges), np.asarray(signal, dtype=float),
                               side="right").astype(np.int8)

    def to_dict(self) -> dict:
        return {
            "format": PROFILE_FORMAT,
            "version": 1,
            "name": self.name,
            "description": self.description,
            "signal": "her2_signal",
            "units": "12-bit intensity above local background",
            "bins": list(HER2_BINS),
            "edges": list(self.edges),
            "fitted_from": self.fitted_from,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile as JSON (atomically)."""
        from ctcimg.io.atomic import write_json_atomic

        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Her2Profile:
        """Read a profile JSON; raises InputError naming the file when it is invalid."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise InputError(f"cannot read HER2 profile ({err.strerror})", path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"not valid JSON ({err})", path) from None
        if not isinstance(data, dict) or "edges" not in data:
            raise InputError("not a HER2 profile: no 'edges' list", path)
        if data.get("bins", list(HER2_BINS)) != list(HER2_BINS):
            raise InputError(f"bins must be {list(HER2_BINS)}, got {data.get('bins')}", path)
        edges = data["edges"]
        if not isinstance(edges, list) or not all(
            isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges
        ):
            raise InputError(f"'edges' must be a list of three numbers, got {edges!r}", path)
        try:
            return cls(edges=tuple(edges), name=str(data.get("name", path.stem)),
                       description=str(data.get("description", "")),
                       fitted_from=data.get("fitted_from") or {})
        except InputError as err:
            raise InputError(err.problem, path) from None


#: Default profile: edges midway (geometrically) between the simulator's HER2 levels as
#: measured by ctcimg's own signal on simulated cartridges. Calibrate on your reviewers'
#: labels (``ctcimg calibrate``) before trusting it on real images.
DEFAULT_PROFILE = Her2Profile(
    edges=(22.0, 75.0, 190.0),
    name="default",
    description="ctcimg default; set on simulated cartridges. Calibrate for real data.",
)


def load_profile(profile: str | os.PathLike | Her2Profile | None) -> Her2Profile:
    """The default profile, a profile object, or one loaded from a JSON path."""
    if profile is None:
        return DEFAULT_PROFILE
    if isinstance(profile, Her2Profile):
        return profile
    return Her2Profile.load(profile)


# --- calibration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted profile with its cross-validated agreement with the reviewers."""

    profile: Her2Profile
    n_events: int
    n_per_bin: dict[str, int]
    confusion: np.ndarray  # rows: reviewer 0..3, columns: predicted 0..3 (cross-validated)
    exact_agreement: float
    kappa_quadratic: float
    n_folds: int

    def summary(self) -> str:
        lines = [
            f"HER2 profile fitted on {self.n_events} reviewer-scored CTCs "
            f"({', '.join(f'{b}: {n}' for b, n in self.n_per_bin.items())})",
            f"edges (12-bit signal): 0 | {self.profile.edges[0]:.1f} | 1+ | "
            f"{self.profile.edges[1]:.1f} | 2+ | {self.profile.edges[2]:.1f} | 3+",
            f"{self.n_folds}-fold cross-validated confusion matrix "
            "(rows: reviewer, columns: ctcimg)",
            "          " + "".join(f"{b:>7}" for b in HER2_BINS),
        ]
        for label, row in zip(HER2_BINS, self.confusion, strict=True):
            lines.append(f"  {label:>6}  " + "".join(f"{int(v):>7}" for v in row))
        lines.append(f"exact agreement {self.exact_agreement:.3f}; "
                     f"quadratic-weighted Cohen's kappa {self.kappa_quadratic:.3f}")
        return "\n".join(lines)


def read_labelled_events(path: str | os.PathLike):
    """Read an events CSV with a ``reviewer_score`` column; keep the scored CTC rows.

    ``reviewer_score`` may be 0–3 or "0", "1+", "2+", "3+"; blank means not reviewed, and
    "not_ctc" (from the review report) drops the row. Raises InputError naming the file
    and the rows at fault.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"reviewer_score": str})
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV ({str(err).strip().splitlines()[0]})", path) \
            from None
    missing = [c for c in ("her2_signal", "reviewer_score") if c not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; expected an events.csv "
                         "from 'ctcimg score' with an added reviewer_score column (0-3)", path)
    raw = table["reviewer_score"].fillna("").astype(str).str.strip()
    keep = (raw != "") & (raw.str.lower() != "not_ctc")
    mapping = {"0": 0, "1": 1, "2": 2, "3": 3, "1+": 1, "2+": 2, "3+": 3, "0.0": 0, "1.0": 1,
               "2.0": 2, "3.0": 3}
    scores = raw[keep].map(mapping)
    bad = scores[scores.isna()].index
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:10])  # +2: header line, 1-based
        values = ", ".join(repr(v) for v in raw[bad[:5]])
        raise InputError(f"reviewer_score outside 0-3 on line(s) {rows} ({values})", path)
    signal = pd.to_numeric(table.loc[keep, "her2_signal"], errors="coerce")
    bad = signal[signal.isna()].index
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:10])
        raise InputError(f"her2_signal missing or not a number on line(s) {rows}", path)
    return signal.to_numpy(float), scores.to_numpy(int)


def fit_edges(signal: np.ndarray, score: np.ndarray) -> tuple[float, float, float]:
    """Fit the three bin edges: one decision stump per edge (score ≥ k vs signal).

    Each edge is the single threshold on the (asinh-transformed) signal that best
    separates the CTCs a reviewer scored ≥ k from the rest (scikit-learn's
    ``DecisionTreeClassifier(max_depth=1)``, Gini criterion); it sits midway between the
    two neighbouring signals on the transformed scale. Unlike a logistic fit, a stump is
    not pulled by a few cells scored far from their signal.
    """
    from sklearn.tree import DecisionTreeClassifier

    x = np.arcsinh(np.asarray(signal, float) / _FIT_SCALE).reshape(-1, 1)
    edges = []
    for k in (1, 2, 3):
        y = np.asarray(score) >= k
        if y.all() or not y.any():
            raise InputError(f"cannot fit the {HER2_BINS[k - 1]} | {HER2_BINS[k]} edge: every "
                             f"scored CTC is on one side of it")
        stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(x, y)
        if stump.tree_.node_count < 3:
            raise InputError(f"cannot place the {HER2_BINS[k - 1]} | {HER2_BINS[k]} edge: "
                             "the HER2 signal does not separate the scores around it")
        threshold = float(stump.tree_.threshold[0])
        right_positive = stump.tree_.value[2, 0, 1] > stump.tree_.value[2, 0, 0]
        if not right_positive:
            raise InputError(f"reviewer scores do not increase with HER2 signal around the "
                             f"{HER2_BINS[k]} edge")
        edges.append(_FIT_SCALE * math.sinh(threshold))
    if not edges[0] < edges[1] < edges[2]:
        raise InputError(f"fitted edges {edges} are out of order; the labels overlap too much "
                         "(score more cells in the middle bins)")
    return tuple(edges)


def calibrate(signal, score, n_folds: int = 5, seed: int = 0,
              name: str = "calibrated") -> CalibrationResult:
    """Fit a profile to reviewer scores and measure its cross-validated agreement.

    Parameters
    ----------
    signal
        Per-CTC HER2 signal (``her2_signal`` column of events.csv).
    score
        Reviewer scores 0–3.
    n_folds
        Stratified folds for the agreement estimate (reduced when a bin is rare).

    Returns
    -------
    CalibrationResult
        Profile fitted on all events; confusion matrix, exact agreement and
        quadratic-weighted Cohen's kappa from cross-validation.
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix
    from sklearn.model_selection import StratifiedKFold

    signal = np.asarray(signal, float)
    score = np.asarray(score, int)
    counts = np.bincount(score, minlength=4)
    if (counts == 0).any():
        empty = [HER2_BINS[i] for i in np.flatnonzero(counts == 0)]
        raise InputError(f"no reviewer-scored CTCs in bin(s) {', '.join(empty)}; every bin "
                         "needs examples to place its edges")
    folds = int(min(n_folds, counts.min()))
    predicted = np.empty_like(score)
    if folds >= 2:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for train, test in splitter.split(signal, score):
            edges = fit_edges(signal[train], score[train])
            predicted[test] = Her2Profile(edges).score(signal[test])
    else:  # a bin with one example: no held-out estimate possible
        folds = 1
    profile_edges = fit_edges(signal, score)
    if folds == 1:
        predicted = Her2Profile(profile_edges).score(signal)
    profile = Her2Profile(
        edges=profile_edges, name=name,
        description="fitted by ctcimg calibrate on reviewer scores",
        fitted_from={"n_events": int(score.size),
                     "n_per_bin": {b: int(n) for b, n in zip(HER2_BINS, counts, strict=True)}},
    )
    return CalibrationResult(
        profile=profile,
        n_events=int(score.size),
        n_per_bin={b: int(n) for b, n in zip(HER2_BINS, counts, strict=True)},
        confusion=confusion_matrix(score, predicted, labels=[0, 1, 2, 3]),
        exact_agreement=float(np.mean(predicted == score)),
        kappa_quadratic=float(cohen_kappa_score(score, predicted, weights="quadratic")),
        n_folds=folds,
    )
