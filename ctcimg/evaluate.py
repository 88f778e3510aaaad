"""Compare scored events with a simulated cartridge's hidden truth.

Used by the accuracy benchmark and tests: events and truth objects are matched one
to one within a frame (Hungarian assignment on centroid distance, at most 5 µm apart).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcimg.channels import HER2_BINS
from ctcimg.rules import RULES

MATCH_DISTANCE_UM = 5.0


def read_truth(truth_dir: str | os.PathLike):
    """The truth objects table (objects.csv) of one simulated cartridge."""
    import pandas as pd

    return pd.read_csv(Path(truth_dir) / "objects.csv")


def match_events(events, truth, pixel_size_um: float,
                 max_distance_um: float = MATCH_DISTANCE_UM) -> np.ndarray:
    """For each truth object, the row position in ``events`` it matches, or -1."""
    from scipy.optimize import linear_sum_assignment

    matched = np.full(len(truth), -1, dtype=np.int64)
    limit_px = max_distance_um / pixel_size_um
    event_frames = events["frame"].to_numpy()
    truth_frames = truth["frame"].to_numpy()
    for frame in np.unique(truth_frames):
        t_rows = np.flatnonzero(truth_frames == frame)
        e_rows = np.flatnonzero(event_frames == frame)
        if not len(e_rows):
            continue
        dx = truth["x_px"].to_numpy()[t_rows, None] - events["x_px"].to_numpy()[None, e_rows]
        dy = truth["y_px"].to_numpy()[t_rows, None] - events["y_px"].to_numpy()[None, e_rows]
        distance = np.hypot(dx, dy)
        cost = np.where(distance <= limit_px, distance, 1e9)
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < 1e9
        matched[t_rows[rows[ok]]] = e_rows[cols[ok]]
    return matched


@dataclass(frozen=True)
class Accuracy:
    """Agreement of one or more scored cartridges with their truth."""

    n_true_ctc: int  # away from the cartridge-edge band
    n_edge_ctc: int  # on the band (in_edge_zone): rejected by design, not in sensitivity
    edge_found: int
    n_called_ctc: int
    true_positive: int
    her2_agree: int
    her2_compared: int
    decoys: dict[str, tuple[int, int]]  # kind -> (rejected, total)
    her2_confusion: np.ndarray

    @property
    def sensitivity(self) -> float:
        return self.true_positive / self.n_true_ctc if self.n_true_ctc else float("nan")

    @property
    def precision(self) -> float:
        """ctcimg CTCs that are true CTCs (on the edge band or not) over all ctcimg CTCs."""
        correct = self.true_positive + self.edge_found
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
            self.n_called_ctc + other.n_called_ctc,
            self.true_positive + other.true_positive,
            self.her2_agree + other.her2_agree,
            self.her2_compared + other.her2_compared,
            {k: tuple(a + b for a, b in zip(self.decoys.get(k, (0, 0)),
                                             other.decoys.get(k, (0, 0)), strict=True))
             for k in kinds},
            self.her2_confusion + other.her2_confusion,
        )


def evaluate(events, truth, pixel_size_um: float) -> Accuracy:
    """Match events to truth and count CTC, decoy and HER2 agreement.

    A truth CTC counts as found when its matched event is a CTC; every ctcimg CTC that
    matches no truth CTC counts against precision. A decoy counts as rejected when it is
    not matched to an event called CTC. True CTCs on the bright cartridge-edge band
    (``in_edge_zone``) are counted apart: ctcimg rejects events there by design.
    """
    matched = match_events(events, truth, pixel_size_um)
    is_ctc = events["is_ctc"].to_numpy()
    kinds = truth["kind"].to_numpy()
    called = np.zeros(len(truth), bool)
    called[matched >= 0] = is_ctc[matched[matched >= 0]]
    true_ctc = kinds == "ctc"
    on_edge = truth["in_edge_zone"].to_numpy().astype(bool) if "in_edge_zone" in truth else \
        np.zeros(len(truth), bool)
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
    return Accuracy(
        n_true_ctc=int((true_ctc & ~on_edge).sum()),
        n_edge_ctc=int((true_ctc & on_edge).sum()),
        edge_found=int((found & on_edge).sum()),
        n_called_ctc=int(is_ctc.sum()),
        true_positive=int((found & ~on_edge).sum()),
        her2_agree=int(np.trace(confusion)),
        her2_compared=int(confusion.sum()),
        decoys=decoys,
        her2_confusion=confusion,
    )


def matched_ctc_signals(events, truth, pixel_size_um: float) -> tuple[np.ndarray, np.ndarray]:
    """HER2 signal and true HER2 level of every true CTC that ctcimg found as a CTC.

    The pairs stand in for reviewer scores when calibrating on simulated cartridges.
    """
    matched = match_events(events, truth, pixel_size_um)
    rows = (truth["kind"].to_numpy() == "ctc") & (matched >= 0)
    found = events.iloc[matched[rows]]
    keep = found["is_ctc"].to_numpy()
    return (found["her2_signal"].to_numpy()[keep],
            truth["her2_level"].to_numpy()[rows][keep].astype(int))


def truth_calls(truth) -> dict[str, str]:
    """Patient calls under every built-in rule from the true HER2 levels of the CTCs."""
    levels = truth.loc[truth["kind"] == "ctc", "her2_level"].astype(int)
    counts = {b: int((levels == i).sum()) for i, b in enumerate(HER2_BINS)}
    return {name: rule.call(counts) for name, rule in RULES.items()}
