"""Where the bodies of a frame go: a free spot for each, clear of the bright cartridge edge.

Every body gets a circle (its centre and radius) that must clear the circles placed
before it; CTC groups are placed first, then decoys, confounders and leukocytes, so a
full frame drops leukocytes, never CTCs.
"""

from __future__ import annotations

import numpy as np

from ctcimg.simulate.bodies import _Body, _translate


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


def _put(rng, body: _Body, placed, shape, edge_keepout, tries=200) -> bool:
    """Move ``body`` to a free random spot (:func:`_place`) and record its circle in
    ``placed``; False (body unmoved) when the frame has no room for it."""
    where = _place(rng, placed, body.radius, shape, edge_keepout, tries=tries)
    if where is None:
        return False
    _translate(body, *where)
    placed.append((body.cx, body.cy, body.radius))
    return True
