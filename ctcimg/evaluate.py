"""Compare scored events with a simulated cartridge's hidden truth.

Used by the accuracy benchmark and tests: events and truth objects are matched one
to one within a frame (Hungarian assignment on centroid distance, at most 5 µm apart).
An object cut by the frame border is matched by the centroid of its part inside the
frame (``x_visible_px``, ``y_visible_px``), the only part an engine can see: a CTC
centred 15 px outside the frame shows a sliver whose centroid lies 20 px from its
centre. True CTCs centred outside their frame are counted apart, as those on the
cartridge-edge band are: frames tile the cartridge, and a cell belongs to the frame that
holds its centre (the usual rule for not counting a cell cut by a tile border twice).
With a confounder truth (``ctcimg.simulate``, ``confounders`` > 0) :class:`Accuracy` also
holds a row per confounder (:data:`CONFOUNDER_ROWS`) and false positives by kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctcimg.channels import HER2_BINS
from ctcimg.rules import RULES

MATCH_DISTANCE_UM = 5.0


def read_truth(truth_dir: str | os.PathLike):
    """The truth objects table (objects.csv) of one simulated cartridge, with the centroid
    of each object's part inside its frame (``x_visible_px``, ``y_visible_px``; the
    object taken as a disc of its ``diameter_um``) when cartridge.json gives the frame
    shape and pixel size, and whether its centre lies inside the frame (``centre_in_frame``;
    pixel centres 0..W-1 span -0.5..W-0.5)."""
    import json

    import pandas as pd

    truth = pd.read_csv(Path(truth_dir) / "objects.csv")
    meta = Path(truth_dir) / "cartridge.json"
    if meta.exists() and {"x_px", "y_px", "diameter_um"} <= set(truth.columns):
        parameters = json.loads(meta.read_text()).get("parameters", {})
        if "frame_shape" in parameters and "pixel_size_um" in parameters:
            radius_px = truth["diameter_um"].to_numpy(float) / 2 / parameters["pixel_size_um"]
            x, y = truth["x_px"].to_numpy(float), truth["y_px"].to_numpy(float)
            h, w = parameters["frame_shape"]
            truth["x_visible_px"], truth["y_visible_px"] = visible_centroids(
                x, y, radius_px, (h, w))
            truth["centre_in_frame"] = ((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5)
                                        & (y <= h - 0.5))
    return truth


def visible_centroids(x_px: np.ndarray, y_px: np.ndarray, radius_px: np.ndarray,
                      frame_shape: tuple[int, int], samples: int = 41
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Centroid of the part of each disc inside the frame (pixel centres 0..W-1 span
    -0.5..W-0.5), from a ``samples`` × ``samples`` grid over the disc; the centre itself
    for a disc wholly inside, NaN for one wholly outside."""
    h, w = frame_shape
    x = np.array(x_px, float)
    y = np.array(y_px, float)
    r = np.asarray(radius_px, float)
    crossing = np.flatnonzero((x - r < -0.5) | (y - r < -0.5) | (x + r > w - 0.5)
                              | (y + r > h - 0.5))
    offsets = np.linspace(-1.0, 1.0, samples)
    dy, dx = (v.ravel() for v in np.meshgrid(offsets, offsets, indexing="ij"))
    in_disc = dy ** 2 + dx ** 2 <= 1.0
    dy, dx = dy[in_disc], dx[in_disc]
    for i in crossing:
        px, py = x[i] + r[i] * dx, y[i] + r[i] * dy
        inside = (px >= -0.5) & (px <= w - 0.5) & (py >= -0.5) & (py <= h - 0.5)
        x[i], y[i] = (px[inside].mean(), py[inside].mean()) if inside.any() else (np.nan,
                                                                                  np.nan)
    return x, y


def match_events(events, truth, pixel_size_um: float,
                 max_distance_um: float = MATCH_DISTANCE_UM) -> np.ndarray:
    """For each truth object, the row position in ``events`` it matches, or -1 (by the
    centroid of its part inside the frame where the truth has it, see :func:`read_truth`)."""
    from scipy.optimize import linear_sum_assignment

    matched = np.full(len(truth), -1, dtype=np.int64)
    limit_px = max_distance_um / pixel_size_um
    event_frames = events["frame"].to_numpy()
    truth_frames = truth["frame"].to_numpy()
    visible = "x_visible_px" in truth and "y_visible_px" in truth
    truth_x = truth["x_visible_px" if visible else "x_px"].to_numpy(float)
    truth_y = truth["y_visible_px" if visible else "y_px"].to_numpy(float)
    for frame in np.unique(truth_frames):
        t_rows = np.flatnonzero(truth_frames == frame)
        e_rows = np.flatnonzero(event_frames == frame)
        if not len(e_rows):
            continue
        dx = truth_x[t_rows, None] - events["x_px"].to_numpy()[None, e_rows]
        dy = truth_y[t_rows, None] - events["y_px"].to_numpy()[None, e_rows]
        distance = np.nan_to_num(np.hypot(dx, dy), nan=np.inf)
        cost = np.where(distance <= limit_px, distance, 1e9)
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < 1e9
        matched[t_rows[rows[ok]]] = e_rows[cols[ok]]
    return matched


#: Confounder rows of :attr:`Accuracy.rows`: CTCs with leukocytes stuck to them (truth
#: ``context``), CTCs in out-of-focus frames and in leukocyte-carpet frames.
CONFOUNDER_ROWS: tuple[str, ...] = ("doublet", "leukocyte_cluster", "defocused", "dense")


@dataclass(frozen=True)
class RowAccuracy:
    """CTC detection within one confounder row.

    Attributes
    ----------
    found, total
        True CTCs of the row (off the cartridge-edge band, centred in their frame) that
        ctcimg called CTC, and all.
    called, correct
        Events ctcimg called CTC that belong to the row, and those of them matched to a true
        CTC. ``doublet`` / ``leukocyte_cluster``: calls matched to the row's CTCs or to the
        leukocytes stuck to them; ``defocused`` / ``dense``: calls in those frames.
    """

    found: int = 0
    total: int = 0
    called: int = 0
    correct: int = 0

    @property
    def sensitivity(self) -> float:
        return self.found / self.total if self.total else float("nan")

    @property
    def precision(self) -> float:
        return self.correct / self.called if self.called else float("nan")

    def __add__(self, other: RowAccuracy) -> RowAccuracy:
        return RowAccuracy(self.found + other.found, self.total + other.total,
                           self.called + other.called, self.correct + other.correct)


@dataclass(frozen=True)
class Accuracy:
    """Agreement of one or more scored cartridges with their truth.

    ``rows`` (name → :class:`RowAccuracy`, names :data:`CONFOUNDER_ROWS`) and
    ``false_positives`` (label → events called CTC that matched a truth object of that
    label) are empty without a confounder truth. Labels are the non-CTC kinds, with
    ``stuck_<kind>`` for leukocytes stuck to a CTC (not counted under their kind) and
    ``unmatched`` for calls that match no truth object.
    """

    n_true_ctc: int  # away from the cartridge-edge band, centred inside their frame
    n_edge_ctc: int  # on the band (in_edge_zone): rejected by design, not in sensitivity
    edge_found: int
    n_outside_ctc: int  # off the band, centred outside their frame: not in sensitivity
    outside_found: int
    n_called_ctc: int
    true_positive: int
    her2_agree: int
    her2_compared: int
    decoys: dict[str, tuple[int, int]]  # kind -> (rejected, total)
    her2_confusion: np.ndarray
    rows: dict[str, RowAccuracy] = field(default_factory=dict)
    false_positives: dict[str, int] = field(default_factory=dict)

    @property
    def sensitivity(self) -> float:
        return self.true_positive / self.n_true_ctc if self.n_true_ctc else float("nan")

    @property
    def precision(self) -> float:
        """ctcimg CTCs that are true CTCs (wherever they lie) over all ctcimg CTCs."""
        correct = self.true_positive + self.edge_found + self.outside_found
        return correct / self.n_called_ctc if self.n_called_ctc else float("nan")

    @property
    def her2_exact(self) -> float:
        return self.her2_agree / self.her2_compared if self.her2_compared else float("nan")

    def __add__(self, other: Accuracy) -> Accuracy:
        kinds = set(self.decoys) | set(other.decoys)
        return Accuracy(
            self.n_true_ctc + other.n_true_ctc,
            self.n_edge_ctc + other.n_edge_ctc,
            self.edge_found + other.edge_found,
            self.n_outside_ctc + other.n_outside_ctc,
            self.outside_found + other.outside_found,
            self.n_called_ctc + other.n_called_ctc,
            self.true_positive + other.true_positive,
            self.her2_agree + other.her2_agree,
            self.her2_compared + other.her2_compared,
            {k: tuple(a + b for a, b in zip(self.decoys.get(k, (0, 0)),
                                             other.decoys.get(k, (0, 0)), strict=True))
             for k in kinds},
            self.her2_confusion + other.her2_confusion,
            {k: self.rows.get(k, RowAccuracy()) + other.rows.get(k, RowAccuracy())
             for k in (*self.rows, *(k for k in other.rows if k not in self.rows))},
            {k: self.false_positives.get(k, 0) + other.false_positives.get(k, 0)
             for k in (*self.false_positives,
                       *(k for k in other.false_positives if k not in self.false_positives))},
        )


def evaluate(events, truth, pixel_size_um: float) -> Accuracy:
    """Match events to truth and count CTC, decoy and HER2 agreement.

    A truth CTC counts as found when its matched event is a CTC; every ctcimg CTC that
    matches no truth CTC counts against precision. A decoy counts as rejected when it is
    not matched to an event called CTC. True CTCs on the bright cartridge-edge band
    (``in_edge_zone``) are counted apart: ctcimg rejects events there by design; so are
    those centred outside their frame (``centre_in_frame``, see :func:`read_truth`).
    """
    matched = match_events(events, truth, pixel_size_um)
    is_ctc = events["is_ctc"].to_numpy()
    kinds = truth["kind"].to_numpy()
    called = np.zeros(len(truth), bool)
    called[matched >= 0] = is_ctc[matched[matched >= 0]]
    true_ctc = kinds == "ctc"
    on_edge = truth["in_edge_zone"].to_numpy().astype(bool) if "in_edge_zone" in truth else \
        np.zeros(len(truth), bool)
    outside = ~truth["centre_in_frame"].to_numpy().astype(bool) & ~on_edge \
        if "centre_in_frame" in truth else np.zeros(len(truth), bool)
    counted = ~on_edge & ~outside
    found = true_ctc & called
    confusion = np.zeros((4, 4), np.int64)
    scores = events["her2_score"].to_numpy()
    for t_row in np.flatnonzero(found):
        level = int(truth["her2_level"].iloc[t_row])
        confusion[level, HER2_BINS.index(scores[matched[t_row]])] += 1
    decoys = {}
    for kind in sorted(set(kinds) - {"ctc"}):
        rows = kinds == kind
        decoys[kind] = (int((~called[rows]).sum()), int(rows.sum()))
    confounder_rows, false_positives = (
        _confounder_rows(events, truth, matched, called, counted) if "context" in truth
        else ({}, {}))
    return Accuracy(
        n_true_ctc=int((true_ctc & counted).sum()),
        n_edge_ctc=int((true_ctc & on_edge).sum()),
        edge_found=int((found & on_edge).sum()),
        n_outside_ctc=int((true_ctc & outside).sum()),
        outside_found=int((found & outside).sum()),
        n_called_ctc=int(is_ctc.sum()),
        true_positive=int((found & counted).sum()),
        her2_agree=int(np.trace(confusion)),
        her2_compared=int(confusion.sum()),
        decoys=decoys,
        her2_confusion=confusion,
        rows=confounder_rows,
        false_positives=false_positives,
    )


def _confounder_rows(events, truth, matched, called, counted):
    """Per-confounder CTC rows and false positives by kind (see :class:`Accuracy`)."""
    kinds = truth["kind"].to_numpy()
    context = truth["context"].fillna("").astype(str).to_numpy()
    frames = truth["frame"].to_numpy()
    is_ctc = events["is_ctc"].to_numpy().astype(bool)
    true_ctc = kinds == "ctc"
    # a stuck leukocyte belongs to the nearest CTC of its frame that has one stuck to it
    owner_context = context.copy()
    hosts = np.flatnonzero(true_ctc & np.isin(context, ("doublet", "leukocyte_cluster")))
    x, y = truth["x_px"].to_numpy(), truth["y_px"].to_numpy()
    for i in np.flatnonzero(context == "stuck"):
        same = hosts[frames[hosts] == frames[i]]
        if same.size:
            owner_context[i] = context[same[np.argmin(np.hypot(x[same] - x[i], y[same] - y[i]))]]
    matched_to_ctc = np.zeros(len(events), bool)
    matched_to_ctc[matched[(matched >= 0) & true_ctc]] = True
    rows = {}
    for name in ("doublet", "leukocyte_cluster"):
        members = true_ctc & (context == name)
        belongs = (members | ((context == "stuck") & (owner_context == name))) & called
        rows[name] = RowAccuracy(
            found=int((members & called & counted).sum()),
            total=int((members & counted).sum()),
            called=int(belongs.sum()),
            correct=int((members & called).sum()),
        )
    event_frames = events["frame"].to_numpy()
    for name in ("defocused", "dense"):
        flagged = truth[name].to_numpy().astype(bool)
        in_row = np.isin(event_frames, np.unique(frames[flagged])) & is_ctc
        members = true_ctc & flagged & counted
        rows[name] = RowAccuracy(
            found=int((members & called).sum()),
            total=int(members.sum()),
            called=int(in_row.sum()),
            correct=int((in_row & matched_to_ctc).sum()),
        )
    false_positives = {}
    for kind in sorted(set(kinds) - {"ctc"}):
        for stuck in (False, True):
            rows_of = (kinds == kind) & ((context == "stuck") == stuck)
            if rows_of.any():
                label = f"stuck_{kind}" if stuck else kind
                false_positives[label] = int((rows_of & called).sum())
    matched_any = np.zeros(len(events), bool)
    matched_any[matched[matched >= 0]] = True
    false_positives["unmatched"] = int((is_ctc & ~matched_any).sum())
    return rows, false_positives


def matched_ctc_signals(events, truth, pixel_size_um: float, column: str = "her2_signal"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """HER2 signal (``column``: ``her2_signal`` or ``her2_signal_referenced``) and true HER2
    level of every true CTC that ctcimg found as a CTC.

    The pairs stand in for reviewer scores when calibrating on simulated cartridges.
    """
    matched = match_events(events, truth, pixel_size_um)
    rows = (truth["kind"].to_numpy() == "ctc") & (matched >= 0)
    found = events.iloc[matched[rows]]
    keep = found["is_ctc"].to_numpy()
    return (found[column].to_numpy()[keep],
            truth["her2_level"].to_numpy()[rows][keep].astype(int))


def truth_calls(truth, counted_only: bool = False) -> dict[str, str]:
    """Patient calls under every built-in rule from the true HER2 levels of the CTCs.

    ``counted_only``: only the CTCs sensitivity is measured on (off the cartridge-edge
    band, centred in their frame; see :func:`evaluate`), so that a CTC rejected by design
    does not count as a scoring error.
    """
    levels = truth.loc[true_ctcs(truth, counted_only), "her2_level"].to_numpy().astype(int)
    return _calls_of_levels(levels)


def signal_levels(signal) -> np.ndarray:
    """HER2 level 0-3 that a CTC's true signal (truth ``her2_signal``) lies nearest to: the
    signal binned at the geometric midpoints between the simulator's level means
    (:data:`ctcimg.simulate.HER2_LEVEL_SIGNAL`), the best boundaries for lognormal levels
    of equal spread.

    The simulator draws a CTC's signal around its level's mean with a lognormal spread, so
    neighbouring levels overlap: a few 2+ cells stain as brightly as 3+ ones, and no
    measurement of the image can tell their level. Binning the true signals gives the
    ceiling an engine can reach.

    Examples
    --------
    >>> signal_levels([5.0, 30.0, 220.0, 240.0]).tolist()
    [0, 1, 2, 3]
    """
    from ctcimg.simulate import HER2_LEVEL_SIGNAL

    means = np.array([HER2_LEVEL_SIGNAL[level] for level in range(len(HER2_BINS))])
    edges = np.sqrt(means[:-1] * means[1:])
    return np.searchsorted(edges, np.asarray(signal, float), side="right")


def signal_calls(truth, counted_only: bool = False) -> dict[str, str]:
    """Patient calls under every built-in rule from the CTCs' true signals
    (:func:`signal_levels`): what a perfect measurement of every CTC's staining would
    call, against which :func:`truth_calls` shows how often the simulator's overlapping
    levels alone flip a call. ``counted_only`` as for :func:`truth_calls`."""
    signal = truth.loc[true_ctcs(truth, counted_only), "her2_signal"].to_numpy(float)
    return _calls_of_levels(signal_levels(signal))


def true_ctcs(truth, counted_only: bool = False) -> np.ndarray:
    """Boolean mask of the truth rows that are CTCs; with ``counted_only`` only those
    sensitivity is measured on (see :func:`truth_calls`)."""
    ctc = (truth["kind"] == "ctc").to_numpy().copy()
    if counted_only:
        if "in_edge_zone" in truth:
            ctc &= ~truth["in_edge_zone"].to_numpy().astype(bool)
        if "centre_in_frame" in truth:
            ctc &= truth["centre_in_frame"].to_numpy().astype(bool)
    return ctc


def _calls_of_levels(levels: np.ndarray) -> dict[str, str]:
    counts = {b: int((levels == i).sum()) for i, b in enumerate(HER2_BINS)}
    return {name: rule.call(counts) for name, rule in RULES.items()}
