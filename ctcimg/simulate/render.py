"""One frame as a pure function of ``(spec, frame_number)``, and the truth of its objects.

:func:`render_frame` draws the frame's optics (:mod:`ctcimg.simulate.optics`), places its
bodies (:mod:`ctcimg.simulate.placement`), draws each into a small patch (textured stains,
the PSF blur, the HER2 signal scaled to its level) and records what it drew as a
:class:`ctcimg.simulate.truth.SimulatedObject`.
"""

from __future__ import annotations

import math

import numpy as np

from ctcimg.channels import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    MAX_12BIT,
    edge_sides,
    edge_sides_at,
)
from ctcimg.io.celltracks_xp import bottom_up_position
from ctcimg.simulate.bodies import (
    _Body,
    _ctc_body,
    _decoy_body,
    _leukocyte_body,
    _rho,
    _translate,
)
from ctcimg.simulate.confounders import (
    _confound_leukocyte,
    _confounder_body,
    _confounder_plan,
    _stuck_leukocytes,
)
from ctcimg.simulate.optics import (
    _GAIN,
    _READ_NOISE,
    _background,
    _edge_band,
    _noise_bank,
    _opencv,
)
from ctcimg.simulate.placement import _place, _put
from ctcimg.simulate.plan import _plan
from ctcimg.simulate.spec import CartridgeSpec
from ctcimg.simulate.truth import SimulatedObject


def _soft(rho, r):
    """Anti-aliased mask of ``rho < 1`` for a shape of radius ``r`` px."""
    return np.clip((1.0 - rho) * r + 0.5, 0.0, 1.0)


def _texture(rng, shape, sigma=1.3):
    cv2 = _opencv()

    t = rng.standard_normal((*shape, 2), dtype=np.float32)
    t = cv2.GaussianBlur(t, (0, 0), sigma)
    return t / (t.std() + 1e-6)


def _render_body(body: _Body, rng, psf_sigma: float, her2_nonspecific: float = 0.0):
    """Draw one object into a small patch.

    Returns (y0, x0, patch HxWx4, cell ∪ nucleus mask, hard cell mask, mean nonspecific
    HER2 over the cell); ``her2_nonspecific`` is added uniformly over the cell body after
    the object's own HER2 is scaled to its signal.
    """
    cv2 = _opencv()

    pad = int(math.ceil(3 * psf_sigma)) + 3
    if body.cd45_membrane >= 0:  # the rim ring reaches outside the cell
        pad += int(math.ceil(body.cd45_rim_px))
    r = body.radius
    x0 = int(math.floor(body.cx - r)) - pad
    y0 = int(math.floor(body.cy - r)) - pad
    x1 = int(math.ceil(body.cx + r)) + pad + 1
    y1 = int(math.ceil(body.cy + r)) + pad + 1
    h, w = y1 - y0, x1 - x0
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    tex = _texture(rng, (h, w))
    patch = np.zeros((h, w, 4), dtype=np.float32)
    if body.na:
        nrho = _rho(xx, yy, body.nx, body.ny, body.na, body.nb, body.ntheta)
        nuc = _soft(nrho, min(body.na, body.nb))
        nuc_hard = nrho < 1.0
    else:
        nuc = np.zeros((h, w), np.float32)
        nuc_hard = np.zeros((h, w), bool)
    if body.a:
        rho = _rho(xx, yy, body.cx, body.cy, body.a, body.b, body.theta, body.wobble)
        rcell = min(body.a, body.b)
        cell = _soft(rho, rcell)
        hard = rho < 1.0
        # membrane ring just inside the rim, ~1.3 px wide
        ring = np.exp(-(((1.0 - rho) * rcell - 1.0) / 1.3) ** 2)
        ring *= rho < 1.15
    else:  # bare nucleus: no cell body
        cell = nuc
        hard = nuc_hard
        ring = np.zeros((h, w), np.float32)
    # DAPI: chromatin texture inside the nucleus
    patch[..., 0] = body.dapi * nuc * (1.0 + 0.18 * tex[..., 0])
    # CK: granular cytoplasm, dimmer over the nucleus (or, confounders, over/around it)
    if body.ck and body.ck_over_nucleus:
        around = _soft(nrho / 1.15, 1.15 * min(body.na, body.nb))
        patch[..., 1] = body.ck * around * cell * (1.0 + 0.3 * tex[..., 1])
    elif body.ck:
        patch[..., 1] = body.ck * cell * (1.0 + 0.3 * tex[..., 1]) * (1.0 - 0.35 * nuc)
    # CD45: membrane-dominant; confounders: a fraction on a ring peaking at the rim,
    # FWHM cd45_rim_px, as much outside the cell as inside
    if body.cd45 and body.cd45_membrane >= 0:
        rim = np.exp(-(((rho - 1.0) * rcell / (body.cd45_rim_px / 1.665)) ** 2))
        profile = body.cd45_membrane * rim + (1.0 - body.cd45_membrane) * cell
        patch[..., 2] = body.cd45 * profile * (1.0 + 0.15 * tex[..., 1])
    elif body.cd45:
        patch[..., 2] = body.cd45 * (0.45 * cell + 0.8 * ring) * (1.0 + 0.15 * tex[..., 1])
    if body.her2:
        patch[..., 3] = ((1.0 - body.membrane) * cell + body.membrane * 2.5 * ring) * (
            1.0 + 0.2 * tex[..., 0]
        )
    np.maximum(patch, 0.0, out=patch)
    patch = cv2.GaussianBlur(patch, (0, 0), psf_sigma)
    if body.her2:
        sel = hard if hard.any() else cell > 0.5
        mean = float(patch[..., 3][sel].mean()) if sel.any() else 0.0
        if mean > 0:
            patch[..., 3] *= body.her2 / mean
    nonspecific_mean = 0.0
    if her2_nonspecific > 0:
        nonspecific = cv2.GaussianBlur(cell.astype(np.float32), (0, 0), psf_sigma)
        nonspecific *= np.float32(her2_nonspecific)
        patch[..., 3] += nonspecific
        nonspecific_mean = float(nonspecific[hard].mean()) if hard.any() else 0.0
    return y0, x0, patch, hard | nuc_hard, hard, nonspecific_mean


def render_frame(
    spec: CartridgeSpec, frame_number: int
) -> tuple[np.ndarray, list[SimulatedObject]]:
    """Render one frame exactly as :func:`~ctcimg.simulate.simulate_cartridge` writes it.

    Parameters
    ----------
    spec
        The cartridge spec (``SimulatedCartridge.spec``).
    frame_number
        1-based frame number.

    Returns
    -------
    pixels : ndarray of uint16, shape (4, H, W)
        The 12-bit frame (0–4095, rounded and clipped) in canonical channel order
        :data:`ctcimg.channels.CHANNELS` (DAPI, CK, CD45, HER2); the TIFF holds the same
        pages in CellSearch order, contrast-stretched.
    objects : list of SimulatedObject
        The truth for this frame. ``object_id`` is frame × 10000 + index.
    """
    if not 1 <= frame_number <= spec.n_frames:
        raise ValueError(f"frame_number {frame_number} outside 1..{spec.n_frames}")
    plan = _plan(spec)
    rng = np.random.default_rng([spec.seed, 3, frame_number])
    # confounders draw from their own streams, so without them nothing below changes
    conf = _confounder_plan(spec) if spec.confounders > 0 else None
    crng = np.random.default_rng([spec.seed, 7, frame_number]) if conf else None
    defocused = conf is not None and frame_number in conf.defocused
    dense = conf is not None and frame_number in conf.dense
    h, w = spec.frame_shape
    px = spec.pixel_size_um
    rows, cols = spec.grid
    if spec.scan_from_bottom:
        sides = edge_sides_at(*bottom_up_position(frame_number, rows, cols), rows, cols)
    else:
        sides = edge_sides(frame_number, rows, cols)
    # band width 50-150 px, at most a fifth of the frame side it lies across
    widths = {
        s: float(rng.uniform(50, 150)) * min(1.0, 0.2 * (h if s in ("top", "bottom") else w) / 150)
        for s in sides
    }
    keepout = tuple(0.5 * widths.get(s, 0.0) for s in ("top", "bottom", "left", "right"))
    psf_sigma = float(rng.uniform(1.0, 1.5))
    if defocused:
        psf_sigma = float(crng.uniform(2.5, 4.5))

    frame = _background(rng, (h, w))
    if conf is not None:
        frame *= np.float32(conf.background_scale)
    if sides:
        _edge_band(rng, frame, sides, widths)

    f_idx = frame_number - 1
    bodies: list[_Body] = []
    assigned: list[bool] = []  # reviewer's call per body
    own_stream: list[bool] = []  # body drawn by the confounder model: textured from crng
    placed: list[tuple[float, float, float]] = []
    contexts = conf.contexts[f_idx] if conf else ("",) * len(plan.ctc_levels[f_idx])
    # CTC groups first (they must all fit), then decoys, then leukocytes.
    ctc_index = 0
    for group, cid, context in zip(plan.ctc_levels[f_idx], plan.cluster_ids[f_idx], contexts,
                                   strict=True):
        members = [_ctc_body(rng, lvl, px, cluster_id=cid) for lvl in group]
        if len(members) > 1:  # touching cluster: each next cell touches a previous one
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
        stuck = []
        if context:
            members[0].context = context
            stuck = _stuck_leukocytes(crng, members[0], context, px)
        gx = sum(m.cx for m in members) / len(members)
        gy = sum(m.cy for m in members) / len(members)
        grad = max(math.hypot(m.cx - gx, m.cy - gy) + m.radius for m in members + stuck)
        cut = len(members) == 1 and rng.random() < 0.08 and not context
        where = _place(rng, placed, grad, (h, w), keepout, cut=cut, tries=500)
        if where is None:
            where = _place(rng, placed, grad, (h, w), keepout, margin=-grad, tries=500)
        if where is None:
            raise ValueError(
                f"frame {frame_number}: no room for {len(members)} more CTC(s) in a "
                f"{w} x {h} px frame; use more frames or larger frames"
            )
        for m in members + stuck:
            _translate(m, where[0] - gx, where[1] - gy)
        placed.append((where[0], where[1], grad))
        bodies.extend(members)
        for _ in members:
            assigned.append((frame_number, ctc_index) not in plan.missed)
            ctc_index += 1
        own_stream.extend([False] * len(members))
        bodies.extend(stuck)  # the reviewer never assigns a stuck leukocyte
        assigned.extend([False] * len(stuck))
        own_stream.extend([True] * len(stuck))
    n_ctc_groups = len(placed)
    decoy_index = 0
    for kind, count in plan.decoys[f_idx]:
        for _ in range(count):
            body = _decoy_body(rng, kind, px)
            if not _put(rng, body, placed, (h, w), keepout):
                continue
            bodies.append(body)
            own_stream.append(False)
            if kind in ("ck_cd45_double", "nucleus_outside"):
                assigned.append((frame_number, decoy_index) in plan.added)
                decoy_index += 1
            else:
                assigned.append(False)
    for kind, count in conf.counts[f_idx] if conf else ():
        for _ in range(count):
            body = _confounder_body(crng, kind, px)
            if not _put(crng, body, placed, (h, w), keepout):
                continue
            bodies.append(body)
            assigned.append(False)
            own_stream.append(True)
    lo, hi = spec.leukocytes_per_frame
    scale = h * w / (FRAME_HEIGHT * FRAME_WIDTH)
    n_leuko = int(round(rng.integers(lo, hi + 1) * min(1.0, scale)))
    for _ in range(n_leuko):
        body = _leukocyte_body(rng, px)
        if not _put(rng, body, placed, (h, w), keepout, tries=30):
            continue
        if conf is not None:
            _confound_leukocyte(crng, body, px)  # stains only: the placed circle holds
        bodies.append(body)
        assigned.append(False)
        own_stream.append(False)
    if dense:
        # leukocyte carpet: touching or overlapping each other by up to 2 px, half in
        # patches; CTC groups keep a 1 px gap so no untagged doublet appears
        obstacles = [(x, y, r + 3.0) for x, y, r in placed[:n_ctc_groups]] + placed[n_ctc_groups:]
        patches = [(crng.uniform(0, w), crng.uniform(0, h), crng.uniform(40, 150))
                   for _ in range(int(crng.integers(1, 4)))]
        target = int(round(crng.integers(300, 701) * min(1.0, scale)))
        for _ in range(max(0, target - sum(b.kind == "leukocyte" for b in bodies))):
            body = _confound_leukocyte(crng, _leukocyte_body(crng, px), px)
            near = patches[int(crng.integers(len(patches)))] if crng.random() < 0.5 else None
            where = _place(crng, obstacles, body.radius, (h, w), keepout,
                           margin=float(crng.uniform(-2.0, 0.0)), tries=30, near=near)
            if where is None:
                continue
            _translate(body, *where)
            obstacles.append((body.cx, body.cy, body.radius))
            bodies.append(body)
            assigned.append(False)
            own_stream.append(True)

    objects: list[SimulatedObject] = []
    her2_nonspecific = conf.her2_nonspecific if conf else 0.0
    for index, body in enumerate(bodies):
        y0, x0, patch, union, hard, nonspecific = _render_body(
            body, crng if own_stream[index] else rng, psf_sigma, her2_nonspecific)
        ph, pw = patch.shape[:2]
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + ph, h), min(x0 + pw, w)
        if ya < yb and xa < xb:
            frame[:, ya:yb, xa:xb] += patch[ya - y0:yb - y0, xa - x0:xb - x0].transpose(2, 0, 1)
        ys, xs = np.nonzero(union)
        cy = float(ys.mean()) + y0
        cx = float(xs.mean()) + x0
        by0, by1 = int(ys.min()) + y0, int(ys.max()) + y0
        bx0, bx1 = int(xs.min()) + x0, int(xs.max()) + x0
        cut = by0 < 0 or bx0 < 0 or by1 > h - 1 or bx1 > w - 1
        # edge zone: the band plus its glow (twice the band width from the outer side)
        in_edge = (
            ("top" in widths and by0 < 2 * widths["top"])
            or ("bottom" in widths and by1 > h - 1 - 2 * widths["bottom"])
            or ("left" in widths and bx0 < 2 * widths["left"])
            or ("right" in widths and bx1 > w - 1 - 2 * widths["right"])
        )
        if body.kind == "bare_nucleus":
            diameter = 2 * math.sqrt(body.na * body.nb) * px
        else:
            diameter = 2 * math.sqrt(body.a * body.b) * px
        her2_mean = float(patch[..., 3][hard].mean()) - nonspecific if hard.any() else 0.0
        # what CellSearch shows its reviewer: DAPI+ CK+ candidates (a stuck leukocyte
        # shows within its CTC's event, a CK-dim CD45-dim leukocyte only with CK)
        presented = assigned[index] or body.kind in (
            "ctc", "ck_cd45_double", "nucleus_outside", "ck_dim_leukocyte", "autofluorescent",
        ) or (body.kind == "cd45_dim_leukocyte" and body.ck > 20)
        objects.append(SimulatedObject(
            object_id=frame_number * 10000 + index,
            frame=frame_number,
            x_px=round(cx, 2),
            y_px=round(cy, 2),
            kind=body.kind,
            her2_level=body.her2_level,
            her2_signal=round(her2_mean, 2),
            diameter_um=round(diameter, 2),
            cluster_id=body.cluster_id,
            cut_by_border=bool(cut),
            in_edge_zone=bool(in_edge),
            reviewer_assigned=bool(assigned[index]),
            bbox=(max(bx0, 0), max(by0, 0), min(bx1, w - 1), min(by1, h - 1)),
            presented=bool(presented and body.context != "stuck"),
            context=body.context,
            defocused=defocused,
            dense=dense,
            her2_nonspecific=round(nonspecific, 2),
            ck_amplitude=body.ck,
            beyond_edge_band_px=min(
                (position - widths[side] for side, position in (
                    ("top", cy), ("bottom", h - 1 - cy), ("left", cx), ("right", w - 1 - cx))
                 if side in widths), default=math.inf),
        ))

    # Shot + read noise (Gaussian approximation), then 12-bit quantisation and saturation.
    bank = _noise_bank(spec.seed, (h, w))
    for c in range(4):
        dy = int(rng.integers(0, bank.shape[0] - h + 1))
        dx = int(rng.integers(0, bank.shape[1] - w + 1))
        img = frame[c]
        sd = np.multiply(img, np.float32(_GAIN))
        sd += np.float32(_READ_NOISE**2)
        np.sqrt(sd, out=sd)
        sd *= bank[dy:dy + h, dx:dx + w]
        img += sd
    np.clip(frame, 0, MAX_12BIT, out=frame)
    np.rint(frame, out=frame)
    return frame.astype(np.uint16), objects
