"""HER2 scoring: per-CTC signal → 0 / 1+ / 2+ / 3+ by a threshold profile; calibration.

The HER2 signal of a cell is its background-corrected FITC mean over the cell minus the
local background in a ring around it, on the 12-bit scale. A :class:`Her2Profile`
holds the three signal edges between the bins; profiles are saved as JSON.
:func:`calibrate` fits edges to reviewer scores with scikit-learn decision stumps.

A sample's own leukocytes are an internal control: they are HER2-negative and carry the
same nonspecific FITC binding as its CTCs. :func:`leukocyte_reference` measures their
signal per cartridge, and a profile with ``reference="leukocytes"`` bins the CTC signal
minus the leukocyte median (``her2_signal_referenced``), so that bins do not drift with
the nonspecific binding of a sample.
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
from ctcimg.io.tables import read_csv_table

PROFILE_FORMAT = "ctcimg-her2-profile"
#: What a profile's edges apply to: reference name → events.csv column binned.
REFERENCES: dict[str, str] = {"none": "her2_signal", "leukocytes": "her2_signal_referenced"}
#: Fewest leukocytes a cartridge needs for a leukocyte-referenced profile.
MIN_REFERENCE_LEUKOCYTES = 20
#: Fewest leukocytes a frame needs to count in the per-frame median of the reference.
MIN_FRAME_LEUKOCYTES = 5
#: Scale of the asinh transform used when fitting edges (12-bit units).
_FIT_SCALE = 10.0


@dataclass(frozen=True)
class Her2Profile:
    """Edges of the HER2 bins on the per-cell signal scale (12-bit units).

    A cell scores 0 below ``edges[0]``, 1+ from ``edges[0]``, 2+ from ``edges[1]`` and
    3+ from ``edges[2]``. With ``reference="leukocytes"`` the edges apply to the signal
    minus the median signal of the sample's leukocytes (:data:`REFERENCES`).

    Attributes
    ----------
    edges : tuple of 3 floats
        Signal at which 1+, 2+ and 3+ begin (12-bit units above the local background),
        increasing.
    name : str
        Short name recorded with every result.
    description : str
        Free text: where the edges come from.
    fitted_from : dict
        What ``ctcimg calibrate`` fitted the edges on (events per reviewer bin); empty
        for a hand-set profile. Not compared between profiles.
    reference : str
        What the edges are measured from: "none" (the cell's own ring background) or
        "leukocytes" (the sample's leukocyte median subtracted too; needs at least 20
        leukocytes per cartridge).

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
    reference: str = "none"

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        if len(edges) != 3 or not all(math.isfinite(e) for e in edges):
            raise InputError(f"HER2 profile {self.name!r} needs three finite edges, got "
                             f"{self.edges!r}")
        if not edges[0] < edges[1] < edges[2]:
            raise InputError(f"HER2 profile {self.name!r}: bins out of order, edges "
                             f"{list(edges)} must increase (0 | 1+ | 2+ | 3+)")
        object.__setattr__(self, "edges", edges)
        if self.reference not in REFERENCES:
            raise InputError(f"HER2 profile {self.name!r}: unknown reference "
                             f"{self.reference!r}; expected one of {list(REFERENCES)}")

    @property
    def signal_column(self) -> str:
        """The events.csv column the edges apply to."""
        return REFERENCES[self.reference]

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
            "signal": self.signal_column,
            "reference": self.reference,
            "units": "12-bit intensity above local background"
                     + (", minus the sample's leukocyte median" if self.reference != "none"
                        else ""),
            "bins": list(HER2_BINS),
            "edges": list(self.edges),
            "fitted_from": self.fitted_from,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile as JSON (atomically)."""
        from ctcimg.io.atomic import write_json_atomic

        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def from_dict(cls, data, default_name: str = "custom") -> Her2Profile:
        """A profile from its :meth:`to_dict` form (a profile JSON's content).

        ``name`` defaults to ``default_name``, ``reference`` to "none"; the derived keys
        (format, version, signal, units, bins) may be left out, and must match when given.
        Raises InputError naming an unknown key or a bad value.
        """
        if not isinstance(data, dict) or "edges" not in data:
            raise InputError("not a HER2 profile: no 'edges' list")
        unknown = [key for key in data if key not in _PROFILE_KEYS]
        if unknown:
            raise InputError(f"unknown HER2 profile key(s) {', '.join(map(repr, unknown))}; "
                             f"expected {', '.join(_PROFILE_KEYS)}")
        if data.get("bins", list(HER2_BINS)) != list(HER2_BINS):
            raise InputError(f"bins must be {list(HER2_BINS)}, got {data.get('bins')}")
        edges = data["edges"]
        if not isinstance(edges, list | tuple) or not all(
            isinstance(e, int | float) and not isinstance(e, bool) for e in edges
        ):
            raise InputError(f"'edges' must be a list of three numbers, got {edges!r}")
        for key in ("name", "description", "reference", "units"):
            if key in data and not isinstance(data[key], str):
                raise InputError(f"{key!r} must be a string, got {data[key]!r}")
        fitted_from = data.get("fitted_from") or {}
        if not isinstance(fitted_from, dict):
            raise InputError(f"'fitted_from' must be a mapping, got {fitted_from!r}")
        profile = cls(edges=tuple(edges), name=data.get("name", default_name),
                      description=data.get("description", ""), fitted_from=fitted_from,
                      reference=data.get("reference", "none"))
        derived = profile.to_dict()
        for key in ("format", "version", "signal"):
            if key in data and data[key] != derived[key]:
                raise InputError(f"{key!r} is {data[key]!r}; a profile with reference "
                                 f"{profile.reference!r} has {derived[key]!r}")
        return profile

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
        try:
            return cls.from_dict(data, default_name=path.stem)
        except InputError as err:
            raise InputError(err.problem, path) from None


#: Keys of a profile's :meth:`Her2Profile.to_dict` form.
_PROFILE_KEYS = ("format", "version", "name", "description", "signal", "reference", "units",
                 "bins", "edges", "fitted_from")


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


# --- per-sample leukocyte reference ---------------------------------------------------------


@dataclass(frozen=True)
class LeukocyteReference:
    """HER2 signal of a sample's leukocytes (CD45+, CK−): its nonspecific FITC binding.

    Attributes
    ----------
    n
        Leukocytes measured.
    median, spread
        Median and robust spread (1.4826 · MAD) of their ``her2_signal``, 12-bit units;
        None when there are fewer than :data:`MIN_REFERENCE_LEUKOCYTES`.
    """

    n: int
    median: float | None
    spread: float | None

    def to_dict(self) -> dict:
        return {"source": "leukocytes", "n": self.n, "median": self.median,
                "spread": self.spread, "min_n": MIN_REFERENCE_LEUKOCYTES}


def leukocyte_reference(signal, is_leukocyte, frame=None) -> LeukocyteReference:
    """Median and spread of the HER2 signal over the events flagged ``is_leukocyte``.

    With ``frame`` (each event's frame number), the median is the median over frames of
    each frame's leukocyte median (frames with at least :data:`MIN_FRAME_LEUKOCYTES`),
    so that a few crowded frames cannot outvote the rest: in a leukocyte carpet the
    background grid itself sits on nonspecifically stained cell bodies, and those
    leukocytes read low. ``spread`` is the robust spread of all leukocytes.

    Examples
    --------
    >>> ref = leukocyte_reference(np.arange(30.0), np.ones(30, bool))
    >>> ref.n, ref.median
    (30, 14.5)
    """
    keep = np.asarray(is_leukocyte, bool) & np.isfinite(np.asarray(signal, float))
    values = np.asarray(signal, float)[keep]
    if len(values) < MIN_REFERENCE_LEUKOCYTES:
        return LeukocyteReference(len(values), None, None)
    median = float(np.median(values))
    spread = float(1.4826 * np.median(np.abs(values - median)))
    if frame is not None:
        frames = np.asarray(frame)[keep]
        numbers, counts = np.unique(frames, return_counts=True)
        usable = numbers[counts >= MIN_FRAME_LEUKOCYTES]
        if len(usable):
            median = float(np.median([np.median(values[frames == f]) for f in usable]))
    return LeukocyteReference(len(values), round(median, 4), round(spread, 4))


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


def read_labelled_events(path: str | os.PathLike, signal_column: str = "her2_signal"):
    """Read an events CSV with a ``reviewer_score`` column; keep the scored CTC rows.

    Returns the ``signal_column`` (``her2_signal``, or ``her2_signal_referenced`` for a
    leukocyte-referenced profile) and the scores of those rows.

    ``reviewer_score`` may be 0–3 or "0", "1+", "2+", "3+"; blank means not reviewed, and
    "not_ctc" (from the review report) drops the row. Raises InputError naming the file
    and the rows at fault.
    """
    import pandas as pd

    path = Path(path)
    table = read_csv_table(path, dtype={"reviewer_score": str})
    missing = [c for c in (signal_column, "reviewer_score") if c not in table.columns]
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
    signal = pd.to_numeric(table.loc[keep, signal_column], errors="coerce")
    bad = signal[signal.isna()].index
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:10])
        raise InputError(f"{signal_column} missing or not a number on line(s) {rows}", path)
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
              name: str = "calibrated", reference: str = "none") -> CalibrationResult:
    """Fit a profile to reviewer scores and measure its cross-validated agreement.

    Parameters
    ----------
    signal
        Per-CTC HER2 signal (``her2_signal`` column of events.csv).
    score
        Reviewer scores 0–3.
    n_folds
        Stratified folds for the agreement estimate (reduced when a bin is rare).
    reference
        What ``signal`` is: ``"none"`` (``her2_signal``) or ``"leukocytes"``
        (``her2_signal_referenced``); recorded in the profile.

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
        edges=profile_edges, name=name, reference=reference,
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
