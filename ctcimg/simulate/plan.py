"""Cartridge-level draws (stream ``[seed, 1]``): what goes into which frame.

The CTCs' HER2 levels (an exact quota of the spec's mix), a few touching clusters of 2–4
CTCs, their spread over the frames (capped by frame area), the decoys per frame (Poisson,
at least one of each kind per cartridge) and the default reviewer's random errors (about
5 % of CTCs missed, 1 in 20 of the CTC-like decoys called a CTC).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ctcimg.channels import FRAME_HEIGHT, FRAME_WIDTH
from ctcimg.simulate.bodies import DECOY_RATE
from ctcimg.simulate.spec import CartridgeSpec, ctc_capacity


@dataclass(frozen=True)
class _Plan:
    """Cartridge-level draws: which CTCs/decoys go to which frame, clusters, reviewer noise."""

    ctc_levels: tuple[tuple[tuple[int, ...], ...], ...]  # per frame: groups of HER2 levels
    cluster_ids: tuple[tuple[int, ...], ...]  # per frame: cluster id per group (-1 single)
    decoys: tuple[tuple[tuple[str, int], ...], ...]  # per frame: (kind, count)
    missed: frozenset[tuple[int, int]]  # (frame, ctc index in frame) the reviewer missed
    added: frozenset[tuple[int, int]]  # (frame, candidate-decoy index) reviewer called CTC


def _quota(n: int, fractions) -> list[int]:
    """Split ``n`` by ``fractions`` with the largest-remainder method (exact total)."""
    frac = np.asarray(fractions, dtype=float)
    frac = frac / frac.sum()
    raw = frac * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


@functools.lru_cache(maxsize=8)
def _plan(spec: CartridgeSpec) -> _Plan:
    rng = np.random.default_rng([spec.seed, 1])
    n_frames = spec.n_frames
    levels = np.repeat(np.arange(4), _quota(spec.n_ctc, spec.her2_mix))
    rng.shuffle(levels)
    # Groups: a few touching clusters of 2-4 CTCs, the rest single.
    groups: list[list[int]] = []
    n_clusters = spec.n_ctc // 12 if spec.n_ctc >= 5 else 0
    if spec.n_ctc >= 5:
        n_clusters = max(1, n_clusters)
    pos = 0
    for _ in range(n_clusters):
        size = int(min(rng.integers(2, 5), spec.n_ctc - pos))
        if size < 2:
            break
        groups.append(levels[pos:pos + size].tolist())
        pos += size
    groups.extend([[int(v)] for v in levels[pos:]])
    # Spread groups over frames; cap per frame by frame area so they can be placed.
    cap = ctc_capacity(1, spec.frame_shape, spec.pixel_size_um)
    per_frame: list[list[list[int]]] = [[] for _ in range(n_frames)]
    frame_ids: list[list[int]] = [[] for _ in range(n_frames)]
    load = np.zeros(n_frames, dtype=int)
    cluster_id = 0
    for group in groups:
        allowed = np.flatnonzero(load + len(group) <= cap)
        choices = allowed if allowed.size else np.arange(n_frames)
        f = int(rng.choice(choices))
        per_frame[f].append(group)
        if len(group) > 1:
            frame_ids[f].append(cluster_id)
            cluster_id += 1
        else:
            frame_ids[f].append(-1)
        load[f] += len(group)
    # Decoys per frame (Poisson), at least one of each kind in the cartridge.
    decoy_counts = np.zeros((n_frames, len(DECOY_RATE)), dtype=int)
    if spec.decoys > 0:
        scale = spec.decoys * spec.frame_shape[0] * spec.frame_shape[1] / (
            FRAME_HEIGHT * FRAME_WIDTH)
        for k, rate in enumerate(DECOY_RATE.values()):
            decoy_counts[:, k] = rng.poisson(rate * scale, size=n_frames)
            if decoy_counts[:, k].sum() == 0:
                decoy_counts[int(rng.integers(n_frames)), k] += 1
    decoys = tuple(
        tuple((kind, int(decoy_counts[f, k])) for k, kind in enumerate(DECOY_RATE))
        for f in range(n_frames)
    )
    # Reviewer noise: miss ~5 % of CTCs (at least one when there are 10+), and call
    # ~1 in 20 of the CTC-like decoys (doubles, nucleus beside) a CTC.
    ctc_slots = [(f + 1, i) for f in range(n_frames) for i in range(load[f])]
    n_missed = max(1 if spec.n_ctc >= 10 else 0, int(round(0.05 * spec.n_ctc)))
    missed = {ctc_slots[i] for i in rng.choice(len(ctc_slots), n_missed, replace=False)} \
        if n_missed else set()
    cand = [
        (f + 1, i)
        for f in range(n_frames)
        for i in range(decoy_counts[f, 1] + decoy_counts[f, 4])
    ]
    n_added = min(len(cand), max(1 if spec.n_ctc >= 10 else 0, int(round(0.05 * len(cand)))))
    added = {cand[i] for i in rng.choice(len(cand), n_added, replace=False)} if n_added else set()
    return _Plan(
        ctc_levels=tuple(tuple(tuple(g) for g in per_frame[f]) for f in range(n_frames)),
        cluster_ids=tuple(tuple(ids) for ids in frame_ids),
        decoys=decoys,
        missed=frozenset(missed),
        added=frozenset(added),
    )
