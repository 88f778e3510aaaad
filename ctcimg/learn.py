"""Learn a lab's CTC decision from its reviewers' labels, and a model file safe to share.

Every CellTracks export lists the candidates the instrument showed the operator and marks
those the operator confirmed as CTCs; ``ctcimg score`` writes that label on each matched
event (``reviewer_assigned``: "true", "false" or blank). :func:`train_gate_model` fits a
gradient-boosted tree classifier (scikit-learn's HistGradientBoostingClassifier) on the
measured features of labelled events, cross-validated by cartridge, and reports its
agreement with the reviewers beside the rule gate's (:func:`ctcimg.gate.gate`).

The hard rules that need no judgement (:data:`ctcimg.gate.HARD_RULES`: cartridge edge, too
large, CK negative, no nucleus) still apply first; the model decides the events that pass
them. The CTC decision never looks at HER2, positions, ids or frame numbers.

A model is saved as JSON (:meth:`GateModel.to_json`): the fitted trees as node arrays,
evaluated with NumPy (:meth:`GateModel.predict_proba`), so loading a file shared by another
lab never executes code. :func:`load_gate_model` checks every field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctcimg.errors import InputError
from ctcimg.gate import HARD_RULES
from ctcimg.io.tables import read_csv_table

#: ``format`` field of a gate-model file, and the version this ctcimg reads and writes.
MODEL_FORMAT = "ctcimg-gate-model"
MODEL_FORMAT_VERSION = 1
#: Label columns, in order of preference per event.
LABEL_COLUMNS = ("reviewer_is_ctc", "reviewer_assigned")
#: events.csv columns that are never model features: positions, ids, frame numbers, boxes,
#: outputs and labels (HER2 columns are excluded by prefix: the CTC decision must not
#: depend on the HER2 score).
EXCLUDED_COLUMNS = frozenset({
    "event_id", "frame", "label", "x_px", "y_px", "x_um", "y_um",
    "bbox_row0", "bbox_col0", "bbox_row1", "bbox_col1", "in_cartridge_edge",
    "is_ctc", "reject_reason", "ctc_probability", *LABEL_COLUMNS, "reviewer_score",
    # the frame's focus probe, measured on leukocytes only: NaN on every event a model decides
    "dapi_moment_px2",
})
#: Fewest labelled events per class (CTC / not) among the events a model decides.
MIN_LABELS_PER_CLASS = 30
#: A model file larger than this is refused before parsing (a model is ~100 kB).
MAX_MODEL_BYTES = 64 * 2**20
_TREE_KEYS = ("feature", "threshold", "missing_left", "left", "right", "value")


def model_features(columns: Sequence[str]) -> list[str]:
    """The measured features among ``columns`` a gate model uses, in the engine's order.

    Every segmentation feature (:data:`ctcimg.segment.FEATURE_COLUMNS`) present in
    ``columns`` except :data:`EXCLUDED_COLUMNS` and the ``her2_*`` columns.
    """
    from ctcimg.segment import FEATURE_COLUMNS

    present = set(columns)
    return [name for name in FEATURE_COLUMNS if name in present
            and name not in EXCLUDED_COLUMNS and not name.startswith("her2")]


# --------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class Agreement:
    """A CTC decision compared with the reviewers' on the same events.

    ``sensitivity`` = tp / (tp + fn), ``precision`` = tp / (tp + fp), ``kappa`` is
    Cohen's κ; each is None when undefined (no reviewer CTCs, no calls, one class).
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, reviewer: np.ndarray, decision: np.ndarray) -> Agreement:
        reviewer, decision = np.asarray(reviewer, bool), np.asarray(decision, bool)
        return cls(int(np.sum(reviewer & decision)), int(np.sum(~reviewer & decision)),
                   int(np.sum(reviewer & ~decision)), int(np.sum(~reviewer & ~decision)))

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def accuracy(self) -> float | None:
        return (self.tp + self.tn) / self.n if self.n else None

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def kappa(self) -> float | None:
        n = self.n
        if not n:
            return None
        observed = (self.tp + self.tn) / n
        chance = ((self.tp + self.fp) * (self.tp + self.fn)
                  + (self.fn + self.tn) * (self.fp + self.tn)) / n**2
        return (observed - chance) / (1.0 - chance) if chance < 1.0 else None

    def to_dict(self) -> dict:
        def rounded(v):
            return None if v is None else round(v, 4)

        return {"n": self.n, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "agreement": rounded(self.accuracy), "sensitivity": rounded(self.sensitivity),
                "precision": rounded(self.precision), "kappa": rounded(self.kappa)}


def counts_agree(predicted: np.ndarray, reviewer: np.ndarray) -> np.ndarray:
    """Per cartridge: the CTC count is within ±1 of the reviewers', or ±5 % when larger."""
    predicted, reviewer = np.asarray(predicted, float), np.asarray(reviewer, float)
    return np.abs(predicted - reviewer) <= np.maximum(1.0, 0.05 * reviewer)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class GateModel:
    """A fitted CTC classifier: boosted trees as padded node arrays, evaluated with NumPy.

    Attributes
    ----------
    features : tuple of str
        Feature columns, in the order the trees index them.
    threshold : float
        An event is a CTC when its probability is at least this.
    baseline : float
        Raw score (log-odds) before the trees.
    trees : dict of str to ndarray
        ``feature``, ``threshold``, ``missing_left``, ``left``, ``right``, ``value``, each
        (n_trees, max_nodes), and ``n_nodes`` per tree; a leaf points to itself, so
        walking ``depth`` steps from the root ends on a leaf for every tree.
    depth : int
        Longest root-to-leaf path.
    info : dict
        What the file records besides the trees: ctcimg version, label source, training
        events and cartridges with checksums, cross-validated figures, feature importance.
    sha256 : str
        Checksum of the model file (of :meth:`to_json` for a model not read from a file).
    """

    features: tuple[str, ...]
    threshold: float
    baseline: float
    trees: Mapping[str, np.ndarray] = field(repr=False)
    depth: int
    info: dict = field(repr=False)
    sha256: str = ""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of being a CTC for each row of ``X`` (n, len(features)), float64.

        NaN features follow each split's learned missing-value direction.
        """
        X = np.asarray(X, np.float64)
        n_trees, width = self.trees["feature"].shape
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"X must be (n, {len(self.features)}), not {X.shape}")
        feature, threshold, missing_left, left, right, value = (
            self.trees[k].ravel() for k in _TREE_KEYS)
        offset = np.arange(n_trees) * width  # flat index of each tree's root
        node = np.broadcast_to(offset, (len(X), n_trees)).copy()
        rows = np.arange(len(X))[:, None]
        for _ in range(self.depth):
            x = X[rows, feature[node]]
            go_left = np.where(np.isnan(x), missing_left[node], x <= threshold[node])
            node = offset + np.where(go_left, left[node], right[node])
        raw = self.baseline + value[node].sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))

    def decide(self, features: Mapping[str, np.ndarray], is_ctc: np.ndarray,
               reason: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply the model to the events the hard rules let through.

        Parameters
        ----------
        features
            Feature columns (every name in :attr:`features`).
        is_ctc, reason
            The rule gate's verdict (:func:`ctcimg.gate.gate`).

        Returns
        -------
        is_ctc, reason, probability
            Events failing a hard rule keep their reason and get probability NaN; the
            others are CTCs when the probability reaches the threshold, else reason
            ``classifier``.
        """
        reason = np.asarray(reason, object)
        decided = ~np.isin(reason, HARD_RULES)
        probability = np.full(len(reason), np.nan)
        if decided.any():
            X = np.column_stack([np.asarray(features[name], np.float64)[decided]
                                 for name in self.features])
            probability[decided] = self.predict_proba(X)
        with np.errstate(invalid="ignore"):
            is_ctc = decided & (probability >= self.threshold)
        reason = np.where(decided, np.where(is_ctc, "", "classifier"), reason).astype(object)
        return is_ctc, reason, probability

    def to_dict(self) -> dict:
        """The file content (JSON-ready)."""
        trees = []
        for t, n in enumerate(self.trees["n_nodes"].tolist()):
            tree = {k: self.trees[k][t, :n] for k in _TREE_KEYS}
            leaf = tree["left"] == np.arange(n)
            trees.append({
                "feature": np.where(leaf, -1, tree["feature"]).tolist(),
                "threshold": [v if math.isfinite(v) else None  # +inf: "not missing"
                              for v in np.where(leaf, 0.0, tree["threshold"]).tolist()],
                "missing_left": tree["missing_left"].astype(int).tolist(),
                "left": np.where(leaf, -1, tree["left"]).tolist(),
                "right": np.where(leaf, -1, tree["right"]).tolist(),
                "value": np.where(leaf, tree["value"], 0.0).tolist(),
            })
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            **self.info,
            "features": list(self.features),
            "hard_rules": list(HARD_RULES),
            "threshold": self.threshold,
            "classifier": {"kind": "gradient_boosted_trees", "link": "logistic",
                           "baseline": self.baseline, "trees": trees},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file atomically; returns its path."""
        from ctcimg.io.atomic import write_text_atomic

        path = Path(path)
        write_text_atomic(path, self.to_json())
        return path

    def require_features(self, available: Sequence[str], source: str = "this ctcimg") -> None:
        """Raise :class:`InputError` when a feature the model needs is not in ``available``."""
        missing = [name for name in self.features if name not in set(available)]
        if missing:
            raise InputError(f"the gate model needs feature column(s) {', '.join(missing)} "
                             f"that {source} does not measure (trained with ctcimg "
                             f"{self.info.get('ctcimg_version')}); retrain it")


def _from_sklearn(model, features: Sequence[str], threshold: float, info: dict) -> GateModel:
    """A :class:`GateModel` equal to a fitted binary HistGradientBoostingClassifier."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        if np.any(nodes["is_categorical"]):
            raise ValueError("categorical splits are not supported")
        trees.append({
            "feature": nodes["feature_idx"].astype(int),
            "threshold": nodes["num_threshold"].astype(float),
            "missing_left": nodes["missing_go_to_left"].astype(bool),
            "left": np.where(nodes["is_leaf"], -1, nodes["left"].astype(np.int64)),
            "right": np.where(nodes["is_leaf"], -1, nodes["right"].astype(np.int64)),
            "value": np.where(nodes["is_leaf"], nodes["value"], 0.0).astype(float),
        })
    baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
    return _assemble(list(features), float(threshold), baseline, trees, info)


def _assemble(features: list[str], threshold: float, baseline: float, trees: list[dict],
              info: dict, sha256: str | None = None) -> GateModel:
    """Pad per-tree node lists (leaves: children -1) into a :class:`GateModel`."""
    width = max(len(t["left"]) for t in trees)
    padded = {
        "feature": np.zeros((len(trees), width), np.int64),
        "threshold": np.zeros((len(trees), width), np.float64),
        "missing_left": np.zeros((len(trees), width), bool),
        "left": np.tile(np.arange(width), (len(trees), 1)),
        "right": np.tile(np.arange(width), (len(trees), 1)),
        "value": np.zeros((len(trees), width), np.float64),
        "n_nodes": np.array([len(t["left"]) for t in trees], np.int64),
    }
    depth = 0
    for t, tree in enumerate(trees):
        n = len(tree["left"])
        left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
        leaf = left < 0
        own = np.arange(n)
        padded["feature"][t, :n] = np.where(leaf, 0, tree["feature"])
        thresholds = np.array([np.inf if v is None else v for v in tree["threshold"]], float)
        padded["threshold"][t, :n] = np.where(leaf, 0.0, thresholds)
        padded["missing_left"][t, :n] = tree["missing_left"]
        padded["left"][t, :n] = np.where(leaf, own, left)
        padded["right"][t, :n] = np.where(leaf, own, right)
        padded["value"][t, :n] = np.where(leaf, tree["value"], 0.0)
        node_depth = np.zeros(n, int)
        for i in np.flatnonzero(~leaf):  # children have larger indices: one forward pass
            node_depth[left[i]] = node_depth[right[i]] = node_depth[i] + 1
        depth = max(depth, int(node_depth.max()))
    for array in padded.values():
        array.flags.writeable = False
    model = GateModel(tuple(features), threshold, baseline, padded, depth, info, "")
    digest = sha256 or hashlib.sha256(model.to_json().encode()).hexdigest()
    return GateModel(tuple(features), threshold, baseline, padded, depth, info, digest)


# --------------------------------------------------------------------------- loading


def load_gate_model(model: str | os.PathLike | GateModel | None) -> GateModel | None:
    """Read and check a gate-model file (JSON; never executes code); pass a model through.

    Raises
    ------
    InputError
        Naming the file and the first problem: not JSON (a pickle is refused, never
        loaded), another format or version, or any field missing or malformed.
    """
    if model is None or isinstance(model, GateModel):
        return model
    path = Path(model)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise InputError(f"{size} bytes is too large for a gate model", path)
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such gate-model file", path) from None
    if data[:1] == b"\x80" or data[:2] in (b"PK", b"\x1f\x8b"):
        raise InputError("not a ctcimg gate model: a pickle or archive file (ctcimg reads "
                         "only its JSON model format and never unpickles)", path)
    try:
        content = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"not a ctcimg gate model: not valid JSON ({err})", path) from None
    try:
        return _parse_model(content, hashlib.sha256(data).hexdigest())
    except _Malformed as err:
        raise InputError(f"malformed gate model: {err}", path) from None


class _Malformed(ValueError):
    pass


def _no_constant(name: str):
    raise _Malformed(f"{name} is not allowed in a model file")


def _parse_model(content, sha256: str) -> GateModel:
    """The model a model file's JSON ``content`` describes; :class:`_Malformed` names the
    first field that is wrong (fields in file order)."""
    _need(isinstance(content, dict), "the top level must be a JSON object")
    features = _model_features(content)
    threshold = _number(content.get("threshold"), "threshold")
    _need(0.0 < threshold < 1.0, "threshold must lie between 0 and 1")
    _check_training(content.get("training"))
    _need(isinstance(content.get("cross_validation"), dict), "cross_validation must be an object")
    _need(isinstance(content.get("important_features"), list),
          "important_features must be a list")
    classifier = content.get("classifier")
    _need(isinstance(classifier, dict) and classifier.get("kind") == "gradient_boosted_trees"
          and classifier.get("link") == "logistic",
          "classifier must be gradient_boosted_trees with a logistic link")
    baseline = _number(classifier.get("baseline"), "classifier.baseline")
    trees = classifier.get("trees")
    _need(isinstance(trees, list) and trees, "classifier.trees must be a non-empty list")
    for t, tree in enumerate(trees):
        _check_tree(tree, f"classifier.trees[{t}]", len(features))
    info = {key: content[key] for key in
            ("ctcimg_version", "label_source", "training", "cross_validation",
             "important_features")}
    return _assemble(features, threshold, baseline, trees, info, sha256)


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise _Malformed(message)


def _number(value, what: str) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value), f"{what} must be a finite number")
    return float(value)


def _count(value, what: str) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
          f"{what} must be a non-negative integer")
    return value


def _model_features(content: dict) -> list[str]:
    """The format fields, the versions and label source, then the features (returned)
    and the hard rules of a model file."""
    _need(content.get("format") == MODEL_FORMAT, f"format must be {MODEL_FORMAT!r}, not "
          f"{content.get('format')!r}")
    _need(content.get("format_version") == MODEL_FORMAT_VERSION,
          f"format_version {content.get('format_version')!r} is not {MODEL_FORMAT_VERSION} "
          "(the version this ctcimg reads)")
    for key in ("ctcimg_version", "label_source"):
        _need(isinstance(content.get(key), str) and content[key] != "", f"{key} must be a text")
    features = content.get("features")
    _need(isinstance(features, list) and features and all(isinstance(f, str) for f in features)
          and len(set(features)) == len(features), "features must be a list of distinct names")
    bad = [f for f in features if f in EXCLUDED_COLUMNS or f.startswith("her2")]
    _need(not bad, f"features include non-feature column(s) {', '.join(bad)}")
    _need(content.get("hard_rules") == list(HARD_RULES),
          f"hard_rules must be {list(HARD_RULES)}")
    return features


def _check_training(training) -> None:
    """The ``training`` object of a model file: counts and one entry per cartridge."""
    _need(isinstance(training, dict), "training must be an object")
    for key in ("n_events", "n_ctc", "n_cartridges"):
        _count(training.get(key), f"training.{key}")
    cartridges = training.get("cartridges")
    _need(isinstance(cartridges, list) and len(cartridges) == training["n_cartridges"],
          "training.cartridges must list n_cartridges entries")
    for entry in cartridges:
        _need(isinstance(entry, dict) and isinstance(entry.get("name"), str)
              and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64
              and all(c in "0123456789abcdef" for c in entry["sha256"]),
              "each training.cartridges entry needs a name and a sha256 (64 hex digits)")
        _count(entry.get("n_labelled"), "training.cartridges[].n_labelled")


def _check_tree(tree, where: str, n_features: int) -> None:
    """One tree's node arrays: the keys, equal lengths, value types, and a structure where
    children follow their parent and features index the model's features."""
    _need(isinstance(tree, dict) and set(tree) == set(_TREE_KEYS),
          f"{where} must have exactly the keys {', '.join(_TREE_KEYS)}")
    n = len(tree["left"]) if isinstance(tree["left"], list) else -1
    _need(n >= 1 and all(isinstance(tree[k], list) and len(tree[k]) == n for k in _TREE_KEYS),
          f"{where}: node arrays of equal length")
    for key in ("feature", "left", "right"):
        _need(all(isinstance(v, int) and not isinstance(v, bool) for v in tree[key]),
              f"{where}.{key} must hold integers")
    for v in tree["value"]:
        _number(v, f"{where}.value[]")
    for v in tree["threshold"]:  # null: +infinity (a split of missing vs not)
        if v is not None:
            _number(v, f"{where}.threshold[]")
    _need(all(v in (0, 1) for v in tree["missing_left"]), f"{where}.missing_left must be 0/1")
    for i in range(n):
        left, right, feature = tree["left"][i], tree["right"][i], tree["feature"][i]
        if left == -1 and right == -1 and feature == -1:
            continue
        _need(i < left < n and i < right < n,
              f"{where} node {i}: children must come after their parent, within the tree")
        _need(0 <= feature < n_features, f"{where} node {i}: feature index out of range")


# --------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class LabelledEvents:
    """Events of several cartridges with reviewer labels, as :func:`read_labelled` found them.

    Attributes
    ----------
    table : pandas.DataFrame
        Every event of every file, plus ``cartridge`` (index into :attr:`cartridges`) and
        ``reviewer_label`` (1 CTC, 0 not, -1 unlabelled).
    features : tuple of str
        :func:`model_features` of the tables (the same in every file).
    cartridges : tuple of dict
        Per file: ``name``, ``path``, ``sha256``, ``n_labelled``.
    label_source : str
        The label column(s) used, e.g. ``reviewer_assigned``.
    """

    table: object
    features: tuple[str, ...]
    cartridges: tuple[dict, ...]
    label_source: str


def _events_file(path: Path) -> tuple[Path, str]:
    from ctcimg.score import EVENTS_FILE

    if path.is_dir():
        if not (path / EVENTS_FILE).is_file():
            raise InputError(f"no {EVENTS_FILE} in this folder (give result folders from "
                             "'ctcimg score' / 'ctcimg batch', or events.csv files)", path)
        return path / EVENTS_FILE, path.name
    if not path.is_file():
        raise InputError("no such file or folder", path)
    return path, path.parent.name if path.name == EVENTS_FILE else path.stem


def _parse_labels(values, column: str, path: Path) -> np.ndarray:
    """Reviewer labels as 1 / 0 / -1 (blank); anything else is an error naming the line."""
    text = values.fillna("").astype(str).str.strip().str.lower()
    labels = np.full(len(text), -1, np.int8)
    labels[text.isin(("1", "true", "1.0")).to_numpy()] = 1
    labels[text.isin(("0", "false", "0.0")).to_numpy()] = 0
    bad = np.flatnonzero((labels == -1) & (text != "").to_numpy())
    if bad.size:
        lines = ", ".join(str(i + 2) for i in bad[:5])
        raise InputError(f"{column} must be true/false or 1/0 (or blank), not "
                         f"{values.iloc[bad[0]]!r} (line {lines})", path)
    return labels


def _table_labels(table, columns: Sequence[str], path: Path, sources: set[str]) -> np.ndarray:
    """Each event's label from the first of ``columns`` that holds one (1 / 0 / -1 blank);
    adds the columns that gave a label to ``sources``."""
    present = [c for c in columns if c in table.columns]
    if not present:
        raise InputError(f"no label column ({' or '.join(columns)}); score the "
                         "cartridge with its CellTracks XML, or add reviewer_is_ctc", path)
    labels = np.full(len(table), -1, np.int8)
    for column in present:  # earlier columns win where they hold a label
        parsed = _parse_labels(table[column], column, path)
        use = (labels == -1) & (parsed != -1)
        labels[use] = parsed[use]
        if use.any():
            sources.add(column)
    return labels


def _table_features(table, path: Path, features: list[str] | None, first: Path | None
                    ) -> list[str]:
    """The model features of one events table, checked: numeric, the same as the first
    table's (``features``, from ``first``), with the columns the hard rules need."""
    found = model_features(table.columns)
    if not found:
        raise InputError("no feature columns (an events.csv from 'ctcimg score' "
                         "expected)", path)
    if features is not None and found != features:
        missing = [f for f in features if f not in found]
        extra = [f for f in found if f not in features]
        raise InputError(f"feature columns differ from {first}'s: "
                         + "; ".join(part for part in (
                             f"missing {', '.join(missing)}" if missing else "",
                             f"extra {', '.join(extra)}" if extra else "") if part)
                         + " (score every cartridge with the same ctcimg)", path)
    numeric = [f for f in found if table[f].dtype.kind not in "biuf"]
    if numeric:
        raise InputError(f"feature column(s) {', '.join(numeric)} hold non-numbers", path)
    for required in ("diameter_um", "ck_area_um2", "ck_mean", "dapi_area_um2",
                     "cd45_mean", "cd45_ring", "in_cartridge_edge"):
        if required not in table.columns:
            raise InputError(f"no {required} column (needed for the gate's hard rules)", path)
    return found


def read_labelled(paths: Sequence[str | os.PathLike], label: str | None = None
                  ) -> LabelledEvents:
    """Read events tables with reviewer labels for :func:`train_gate_model`.

    Parameters
    ----------
    paths
        Result folders (events.csv inside) or events.csv files, one per cartridge.
    label
        The label column; default: per event ``reviewer_is_ctc`` (0/1, the review report's
        corrections or added by hand) where given, else ``reviewer_assigned`` (true/false
        from the CellTracks XML; blank = not presented to the operator).

    Raises
    ------
    InputError
        A missing file, a table without a label column or without the feature columns,
        tables whose feature columns differ, a label value that is not a label, a file
        given twice.
    """
    import pandas as pd

    if not paths:
        raise InputError("no labelled events given")
    columns = (label,) if label else LABEL_COLUMNS
    tables, cartridges, sources = [], [], set()
    features: list[str] | None = None
    first: Path | None = None
    for index, raw in enumerate(paths):
        path, name = _events_file(Path(raw))
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        twin = next((c for c in cartridges if c["sha256"] == digest), None)
        if twin is not None:
            raise InputError(f"the same events as {twin['path']} (given twice?)", path)
        table = read_csv_table(path, dtype={c: str for c in (*LABEL_COLUMNS, "reject_reason",
                                                             "her2_score", label) if c},
                               low_memory=False)
        labels = _table_labels(table, columns, path, sources)
        found = _table_features(table, path, features, first)
        if features is None:
            features, first = found, path
        table["cartridge"] = index
        table["reviewer_label"] = labels
        tables.append(table)
        cartridges.append({"name": name, "path": str(path), "sha256": digest,
                           "n_labelled": int(np.count_nonzero(labels != -1))})
    if not sources:
        raise InputError(f"no labelled events in {len(paths)} table(s): every "
                         f"{' / '.join(columns)} is blank")
    events = pd.concat(tables, ignore_index=True, sort=False)
    return LabelledEvents(events, tuple(features), tuple(cartridges),
                          "+".join(c for c in columns if c in sources))


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingReport:
    """What :func:`train_gate_model` fitted and measured.

    Attributes
    ----------
    model : GateModel
        Fitted on every labelled event; :attr:`GateModel.info` holds the figures below.
    confusion : ndarray
        Cross-validated 2 × 2 counts, rows reviewer (not CTC, CTC), columns model.
    model_agreement, rule_agreement : Agreement
        Cross-validated model and the rule gate vs the reviewers, over labelled events.
    counts : pandas.DataFrame
        Per cartridge: name, reviewer, model and rule-gate CTC counts.
    importance : list of (str, float)
        Features by mean permutation importance on the held-out folds (drop in κ).
    """

    model: GateModel
    confusion: np.ndarray
    model_agreement: Agreement
    rule_agreement: Agreement
    counts: object
    importance: list

    def __str__(self) -> str:
        def pct(v):
            return "   -" if v is None else f"{v:.3f}"

        info = self.model.info
        training = info["training"]
        m, r = self.model_agreement, self.rule_agreement
        model_ok = counts_agree(self.counts["model"], self.counts["reviewer"])
        rule_ok = counts_agree(self.counts["rule_gate"], self.counts["reviewer"])
        lines = [
            f"trained on {training['n_events']} labelled events ({training['n_ctc']} reviewer "
            f"CTCs) from {training['n_cartridges']} cartridges, label {info['label_source']}, "
            f"{len(self.model.features)} features",
            f"cross-validated by cartridge ({info['cross_validation']['folds']} folds); "
            "confusion (rows reviewer, columns model):",
            "                 model: not CTC      CTC",
            f"  reviewer not CTC  {self.confusion[0, 0]:>12d} {self.confusion[0, 1]:>8d}",
            f"  reviewer CTC      {self.confusion[1, 0]:>12d} {self.confusion[1, 1]:>8d}",
            "",
            "                        model   rule gate",
            f"  agreement            {pct(m.accuracy)}   {pct(r.accuracy)}",
            f"  sensitivity          {pct(m.sensitivity)}   {pct(r.sensitivity)}",
            f"  precision            {pct(m.precision)}   {pct(r.precision)}",
            f"  Cohen's kappa        {pct(m.kappa)}   {pct(r.kappa)}",
            f"  CTC count within ±1 / ±5 % of reviewers: {int(model_ok.sum())}/{len(model_ok)}"
            f" cartridges (rule gate {int(rule_ok.sum())}/{len(rule_ok)})",
            "",
            "most important features (drop in kappa when permuted, held-out folds):",
            *(f"  {name:<32s} {value:.3f}" for name, value in self.importance[:8]),
        ]
        return "\n".join(lines)


def train_gate_model(labelled: LabelledEvents | Sequence[str | os.PathLike], *,
                     label: str | None = None, threshold: float = 0.5, folds: int = 5,
                     seed: int = 0) -> TrainingReport:
    """Fit a lab's CTC decision to its reviewers' labels and cross-validate it by cartridge.

    The model learns on the labelled events that pass the hard rules
    (:data:`ctcimg.gate.HARD_RULES`); those failing one stay non-CTCs, as when scoring.
    Figures compare the cross-validated decision (hard rules, then the model) and the
    default rule gate with the reviewers on every labelled event; per-cartridge CTC counts
    count every event of the cartridge.

    Parameters
    ----------
    labelled
        :func:`read_labelled` output, or the paths to give it.
    label
        Label column (see :func:`read_labelled`).
    threshold
        Probability at or above which an event is a CTC.
    folds
        Cross-validation folds (grouped by cartridge; at most one per cartridge).
    seed
        Seed of the permutation importance.

    Raises
    ------
    InputError
        Fewer than 2 cartridges, one class only, or fewer than
        :data:`MIN_LABELS_PER_CLASS` labels of a class among the events a model decides.
    """
    from threadpoolctl import threadpool_limits

    from ctcimg.gate import gate

    if not isinstance(labelled, LabelledEvents):
        labelled = read_labelled(labelled, label)
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must lie between 0 and 1, not {threshold}")
    table, features = labelled.table, list(labelled.features)
    rule_ctc, rule_reason = gate(table)
    decided = ~np.isin(rule_reason, HARD_RULES)
    labels = table["reviewer_label"].to_numpy()
    groups = table["cartridge"].to_numpy()
    n_groups = len(labelled.cartridges)
    train_rows = decided & (labels != -1)
    _check_enough_labels(labels[train_rows], n_groups)
    X = table[features].to_numpy(np.float64)
    classifier = functools.partial(_classifier, seed)
    # one OpenMP thread: a few thousand events gain nothing from more, and on a machine
    # shared with scoring workers, spinning OpenMP threads slow everything down
    with threadpool_limits(limits=1, user_api="openmp"):
        cv_proba, importance, n_folds = _cross_validate(classifier, X, labels, groups,
                                                        train_rows, decided, n_groups,
                                                        folds, seed)
        final = classifier().fit(X[train_rows], labels[train_rows])
    cv_ctc = decided & (np.nan_to_num(cv_proba, nan=-1.0) >= threshold)
    has_label = labels != -1
    reviewer = labels[has_label] == 1
    model_agreement = Agreement.of(reviewer, cv_ctc[has_label])
    rule_agreement = Agreement.of(reviewer, rule_ctc[has_label])
    counts = _counts_table(labelled, labels, cv_ctc, rule_ctc)
    ranked = sorted(zip(features, importance, strict=True), key=lambda p: -p[1])
    info = _training_info(labelled, labels[train_rows], n_folds, model_agreement,
                          rule_agreement, counts, ranked)
    model = _from_sklearn(final, features, threshold, info)
    confusion = np.array([[model_agreement.tn, model_agreement.fp],
                          [model_agreement.fn, model_agreement.tp]])
    return TrainingReport(model, confusion, model_agreement, rule_agreement, counts, ranked)


def _check_enough_labels(training_labels: np.ndarray, n_groups: int) -> None:
    """Raise :class:`InputError` unless both classes have enough labels among the events a
    model decides, from at least 2 cartridges."""
    n_ctc, n_not = int(np.sum(training_labels == 1)), int(np.sum(training_labels == 0))
    if min(n_ctc, n_not) == 0:
        raise InputError(f"the reviewer labels hold one class only ({n_ctc} CTCs, {n_not} "
                         "non-CTCs among events passing the hard rules); a model needs both")
    if min(n_ctc, n_not) < MIN_LABELS_PER_CLASS:
        raise InputError(f"too few labels: {n_ctc} reviewer CTCs and {n_not} non-CTCs among "
                         f"events passing the hard rules; need at least {MIN_LABELS_PER_CLASS}"
                         " of each (add cartridges)")
    if n_groups < 2:
        raise InputError("cross-validation by cartridge needs labelled events from at least "
                         "2 cartridges")


def _classifier(seed: int):
    """A fresh, unfitted classifier with the settings every gate model is trained with."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    # settings picked on development cohorts (seeds 2001/2002); classes weighted
    # equally, as reviewer CTCs often outnumber the presented non-CTCs
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
                                          max_leaf_nodes=15, min_samples_leaf=20,
                                          class_weight="balanced", early_stopping=False,
                                          random_state=seed)


def _training_info(labelled: LabelledEvents, training_labels: np.ndarray, n_folds: int,
                   model_agreement: Agreement, rule_agreement: Agreement, counts,
                   ranked: list) -> dict:
    """:attr:`GateModel.info` of a trained model: training data, cross-validated figures
    and the most important features."""
    from ctcimg import __version__

    model_ok = counts_agree(counts["model"], counts["reviewer"])
    rule_ok = counts_agree(counts["rule_gate"], counts["reviewer"])
    return {
        "ctcimg_version": __version__,
        "label_source": labelled.label_source,
        "training": {
            "n_events": len(training_labels),
            "n_ctc": int(np.sum(training_labels == 1)),
            "n_cartridges": len(labelled.cartridges),
            "cartridges": [{k: c[k] for k in ("name", "sha256", "n_labelled")}
                           for c in labelled.cartridges],
        },
        "cross_validation": {
            "folds": n_folds,
            "grouped_by": "cartridge",
            "model": {**model_agreement.to_dict(),
                      "counts_within": int(model_ok.sum()), "cartridges": len(model_ok)},
            "rule_gate": {**rule_agreement.to_dict(),
                          "counts_within": int(rule_ok.sum()), "cartridges": len(rule_ok)},
        },
        "important_features": [[name, round(float(v), 4)] for name, v in ranked[:10]],
    }


def _cross_validate(classifier, X, labels, groups, train_rows, decided, n_groups, folds,
                    seed) -> tuple[np.ndarray, np.ndarray, int]:
    """Out-of-fold probabilities of the decided events (NaN elsewhere), the mean held-out
    permutation importance per feature, and the number of folds (grouped by cartridge)."""
    from sklearn.model_selection import GroupKFold

    n_folds = min(folds, n_groups)
    cv_proba = np.full(len(X), np.nan)
    importance = np.zeros(X.shape[1])
    for fit_groups, test_groups in GroupKFold(n_splits=n_folds).split(
            np.zeros(n_groups), groups=np.arange(n_groups)):
        fit = train_rows & np.isin(groups, fit_groups)
        if len(np.unique(labels[fit])) < 2:
            raise InputError("a cross-validation fold holds one class only; add cartridges "
                             "with both reviewer CTCs and non-CTCs")
        fold_model = classifier().fit(X[fit], labels[fit])
        test = decided & np.isin(groups, test_groups)
        if test.any():
            cv_proba[test] = fold_model.predict_proba(X[test])[:, 1]
        held_out = test & (labels != -1)
        importance += _permutation_importance(fold_model, X[held_out], labels[held_out], seed)
    return cv_proba, importance / n_folds, n_folds


def _permutation_importance(model, X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Drop in Cohen's κ on (X, y) when each feature is shuffled (mean of 3 shuffles)."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import cohen_kappa_score, make_scorer

    if len(np.unique(y)) < 2:
        return np.zeros(X.shape[1])
    result = permutation_importance(model, X, y, scoring=make_scorer(cohen_kappa_score),
                                    n_repeats=3, random_state=seed)
    return result.importances_mean


def _counts_table(labelled: LabelledEvents, labels, model_ctc, rule_ctc):
    import pandas as pd

    groups = labelled.table["cartridge"].to_numpy()
    n = len(labelled.cartridges)

    def per_cartridge(flags):
        return np.bincount(groups[flags], minlength=n)

    return pd.DataFrame({
        "cartridge": [c["name"] for c in labelled.cartridges],
        "reviewer": per_cartridge(labels == 1),
        "model": per_cartridge(model_ctc),
        "rule_gate": per_cartridge(np.asarray(rule_ctc, bool)),
    })


def evaluate_gate_model(model: GateModel, labelled: LabelledEvents) -> tuple[
        Agreement, Agreement, object]:
    """Agreement of ``model`` (after the hard rules) and of the rule gate with held-out labels.

    Returns
    -------
    model_agreement, rule_agreement : Agreement
        Over the labelled events.
    counts : pandas.DataFrame
        Per cartridge: reviewer, model and rule-gate CTC counts.
    """
    from ctcimg.gate import gate

    model.require_features(labelled.features, "these events")
    table = labelled.table
    rule_ctc, rule_reason = gate(table)
    model_ctc, _, _ = model.decide(table, rule_ctc, rule_reason)
    labels = table["reviewer_label"].to_numpy()
    has_label = labels != -1
    reviewer = labels[has_label] == 1
    return (Agreement.of(reviewer, model_ctc[has_label]),
            Agreement.of(reviewer, rule_ctc[has_label]),
            _counts_table(labelled, labels, model_ctc, rule_ctc))
