"""Which bodies a frame holds and where they go: a free spot each, clear of the cartridge edge.

Every body gets a circle (its centre and radius) that must clear the circles placed
before it. CTC groups go first (they must all fit; a touching cluster of 2–4 CTCs is
built cell by cell, and 8 % of single CTCs are cut by the frame border), then the
decoys, the confounder model's bodies and the leukocytes, so a full frame drops
leukocytes, never CTCs. A dense frame (a confounder, :mod:`ctcimg.simulate.confounders`)
then gets its leukocyte carpet, whose cells may touch or overlap each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ctcimg.channels import FRAME_HEIGHT, FRAME_WIDTH
from ctcimg.simulate.bodies import _Body, _ctc_body, _decoy_body, _leukocyte_body, _translate
from ctcimg.simulate.confounders import (
    _confound_leukocyte,
    _confounder_body,
    _ConfounderPlan,
    _stuck_leukocytes,
)
from ctcimg.simulate.plan import _Plan, _plan
from ctcimg.simulate.spec import CartridgeSpec


@dataclass
class _Field:
    """One frame's free space while its bodies are placed, and the streams that place them."""

    number: int  # frame number
    shape: tuple[int, int]
    keepout: tuple[float, float, float, float]  # top, bottom, left, right (px)
    px: float  # pixel size, um
    rng: np.random.Generator  # the frame's stream
    crng: np.random.Generator | None  # the confounder model's stream; None without it
    placed: list[tuple[float, float, float]] = field(default_factory=list)  # circles x, y, r
    bodies: list[_Body] = field(default_factory=list)

    @property
    def area_scale(self) -> float:
        """The frame's area as a fraction of a full-size CellSearch frame."""
        h, w = self.shape
        return h * w / (FRAME_HEIGHT * FRAME_WIDTH)

    def put(self, body: _Body, rng: np.random.Generator, tries: int = 200) -> bool:
        """Move ``body`` to a free random spot (:func:`_place`), record its circle and keep
        it; False (body unmoved, not kept) when the frame has no room for it."""
        where = _place(rng, self.placed, body.radius, self.shape, self.keepout, tries=tries)
        if where is None:
            return False
        _translate(body, *where)
        self.placed.append((body.cx, body.cy, body.radius))
        self.bodies.append(body)
        return True


def _frame_bodies(spec: CartridgeSpec, frame_number: int,
                  keepout: tuple[float, float, float, float], rng: np.random.Generator,
                  crng: np.random.Generator | None,
                  conf: _ConfounderPlan | None) -> list[_Body]:
    """Every body of a frame, placed, in drawing order (``conf``: the confounder plan)."""
    plan = _plan(spec)
    index = frame_number - 1
    space = _Field(frame_number, spec.frame_shape, keepout, spec.pixel_size_um, rng, crng)
    contexts = conf.contexts[index] if conf else ("",) * len(plan.ctc_levels[index])
    _place_ctc_groups(space, plan, contexts)
    n_ctc_groups = len(space.placed)
    _place_decoys(space, plan)
    for kind, count in conf.counts[index] if conf else ():
        for _ in range(count):
            body = _confounder_body(crng, kind, space.px)
            body.confounder_stream = True
            space.put(body, crng)
    _place_leukocytes(space, spec.leukocytes_per_frame, confounded=conf is not None)
    if conf is not None and frame_number in conf.dense:
        _lay_carpet(space, n_ctc_groups)
    return space.bodies


def _place_ctc_groups(space: _Field, plan: _Plan, contexts: tuple[str, ...]) -> None:
    """The frame's CTC groups (single CTCs and touching clusters) with their stuck
    leukocytes (context ``doublet`` / ``leukocyte_cluster``), with the reviewer's calls."""
    rng = space.rng
    index = space.number - 1
    ctc_index = 0
    for group, cluster_id, context in zip(plan.ctc_levels[index], plan.cluster_ids[index],
                                          contexts, strict=True):
        members = [_ctc_body(rng, level, space.px, cluster_id=cluster_id) for level in group]
        _touch(rng, members)
        stuck = []
        if context:
            members[0].context = context
            stuck = _stuck_leukocytes(space.crng, members[0], context, space.px)
        cut = len(members) == 1 and rng.random() < 0.08 and not context
        _place_group(space, members, stuck, cut)
        for member in members:
            member.reviewer_assigned = (space.number, ctc_index) not in plan.missed
            ctc_index += 1
        for leukocyte in stuck:  # the reviewer never assigns a stuck leukocyte
            leukocyte.confounder_stream = True
        space.bodies.extend(members + stuck)


def _touch(rng: np.random.Generator, members: list[_Body]) -> None:
    """Make a touching cluster: move each next cell to touch a previous one."""
    for i in range(1, len(members)):
        for _ in range(100):
            j = int(rng.integers(i))
            phi = rng.uniform(0, 2 * math.pi)
            dist = members[j].radius + members[i].radius - 1.5
            x = members[j].cx + dist * math.cos(phi)
            y = members[j].cy + dist * math.sin(phi)
            ok = all(
                math.hypot(m.cx - x, m.cy - y) >= m.radius + members[i].radius - 2.0
                for m in members[:i]
            )
            if ok:
                break
        _translate(members[i], x, y)


def _place_group(space: _Field, members: list[_Body], stuck: list[_Body], cut: bool) -> None:
    """Move a CTC group and its stuck leukocytes, as one circle, to a free spot (``cut``: on
    the frame border); when none is free, overlapping others; else the frame is too full."""
    rng, shape, keepout = space.rng, space.shape, space.keepout
    gx = sum(m.cx for m in members) / len(members)
    gy = sum(m.cy for m in members) / len(members)
    grad = max(math.hypot(m.cx - gx, m.cy - gy) + m.radius for m in members + stuck)
    where = _place(rng, space.placed, grad, shape, keepout, cut=cut, tries=500)
    if where is None:
        where = _place(rng, space.placed, grad, shape, keepout, margin=-grad, tries=500)
    if where is None:
        h, w = shape
        raise ValueError(
            f"frame {space.number}: no room for {len(members)} more CTC(s) in a "
            f"{w} x {h} px frame; use more frames or larger frames"
        )
    for m in members + stuck:
        _translate(m, where[0] - gx, where[1] - gy)
    space.placed.append((where[0], where[1], grad))


def _place_decoys(space: _Field, plan: _Plan) -> None:
    """The frame's decoys; the reviewer calls some CTC-like ones (doubles, nucleus beside) a
    CTC (:attr:`_Plan.added`)."""
    decoy_index = 0
    for kind, count in plan.decoys[space.number - 1]:
        for _ in range(count):
            body = _decoy_body(space.rng, kind, space.px)
            if not space.put(body, space.rng):
                continue
            if kind in ("ck_cd45_double", "nucleus_outside"):
                body.reviewer_assigned = (space.number, decoy_index) in plan.added
                decoy_index += 1


def _place_leukocytes(space: _Field, per_frame: tuple[int, int], confounded: bool) -> None:
    """The frame's leukocytes (``per_frame`` scaled to the frame's area) where room is left;
    with confounders restained (:func:`_confound_leukocyte`) once placed."""
    lo, hi = per_frame
    n_leukocytes = int(round(space.rng.integers(lo, hi + 1) * min(1.0, space.area_scale)))
    for _ in range(n_leukocytes):
        body = _leukocyte_body(space.rng, space.px)
        if space.put(body, space.rng, tries=30) and confounded:
            _confound_leukocyte(space.crng, body, space.px)  # stains only: the circle holds


def _lay_carpet(space: _Field, n_ctc_groups: int) -> None:
    """A dense frame's leukocyte carpet: 300–700 leukocytes per full-size frame in all,
    touching or overlapping each other by up to 2 px, half in 1–3 patches; the first
    ``n_ctc_groups`` circles (CTC groups) keep a 1 px gap so no untagged doublet appears."""
    crng = space.crng
    h, w = space.shape
    obstacles = ([(x, y, r + 3.0) for x, y, r in space.placed[:n_ctc_groups]]
                 + space.placed[n_ctc_groups:])
    patches = [(crng.uniform(0, w), crng.uniform(0, h), crng.uniform(40, 150))
               for _ in range(int(crng.integers(1, 4)))]
    target = int(round(crng.integers(300, 701) * min(1.0, space.area_scale)))
    for _ in range(max(0, target - sum(b.kind == "leukocyte" for b in space.bodies))):
        body = _confound_leukocyte(crng, _leukocyte_body(crng, space.px), space.px)
        near = patches[int(crng.integers(len(patches)))] if crng.random() < 0.5 else None
        where = _place(crng, obstacles, body.radius, space.shape, space.keepout,
                       margin=float(crng.uniform(-2.0, 0.0)), tries=30, near=near)
        if where is None:
            continue
        _translate(body, *where)
        obstacles.append((body.cx, body.cy, body.radius))
        body.confounder_stream = True
        space.bodies.append(body)


def _place(rng, placed, radius, shape, edge_keepout, margin=3.0, cut=False, tries=200,
           near=None):
    """Random centre whose circle clears every placed circle; None when the frame is full.

    ``near = (x, y, spread)`` draws the centre around (x, y) (Gaussian, sd ``spread`` px)
    instead of uniformly over the frame.
    """
    h, w = shape
    top, bottom, left, right = edge_keepout
    arr = np.asarray(placed, dtype=float).reshape(-1, 3)
    for _ in range(tries):
        if cut:
            side = int(rng.integers(4))
            t = rng.uniform(-0.45, 0.45) * radius
            if side == 0:
                x, y = rng.uniform(radius, w - radius), t
            elif side == 1:
                x, y = rng.uniform(radius, w - radius), h - 1 - t
            elif side == 2:
                x, y = t, rng.uniform(radius, h - radius)
            else:
                x, y = w - 1 - t, rng.uniform(radius, h - radius)
        elif near is not None:
            x = rng.normal(near[0], near[2])
            y = rng.normal(near[1], near[2])
        else:
            x = rng.uniform(0, w)
            y = rng.uniform(0, h)
        if y < top or y > h - 1 - bottom or x < left or x > w - 1 - right:
            continue
        if arr.size:
            d = np.hypot(arr[:, 0] - x, arr[:, 1] - y) - arr[:, 2] - radius - margin
            if d.min() < 0:
                continue
        return x, y
    return None
