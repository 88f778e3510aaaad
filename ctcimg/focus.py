"""Focus: how blurred each frame is, and a cell size that the blur does not inflate.

A frame imaged out of focus (a wider point-spread function) makes every object larger
above the detection threshold: a sub-4 µm speck of bright CK and DAPI then measures as
a 6-10 µm cell and passes the gate's diameter criterion. The thresholded diameter
cannot tell the two apart there; intensity-weighted second moments can, because a blur
adds to them instead of multiplying them. For an object of second moment ``m_obj``
(summed over both axes, px²) seen through a Gaussian PSF of width σ::

    m = m_obj + 2 σ²

so the difference between frames of the same cartridge is the difference of their
2σ², whatever the object. ctcimg measures it on the leukocytes of each frame (their
nuclei are similar in size from frame to frame): a frame's ``frame_blur_px2`` is the
lower quartile of the DAPI second moments of its leukocyte-like events minus the median
of those frame quartiles over the cartridge (≈ 0 for frames in the cartridge's usual
focus, 2(σ² − σ_usual²) for an out-of-focus frame). The lower quartile, not the median:
in a leukocyte carpet many windows hold a neighbour's blurred edge that the crowding
limit lets through, which inflates their moments, while a defocus widens them all
(development seeds 1001-1005: in-focus carpet frames up to 7.4 px² by the median, 6.0
by the lower quartile; out-of-focus frames from 6.9).

``ck_extent_um`` is the diameter of the uniform disc with the event's CK second moment
after the frame's extra blur is taken away (``m_disc = R² / 2``).

The moments are taken over a disc of :data:`WINDOW_PX` pixels around the event's
centroid (so the blurred tails count), above the median of the ring just outside it,
with other events' pixels left out. Out-of-focus frames are described as a routine
failure of automated scanners (about 10 % of frames; DESIGN.md §5).
"""

from __future__ import annotations

import numpy as np

from ctcimg.io.tiff import apply_affine
from ctcimg.kernels.moments import window_weights

#: Radius of the moment window (px): a cell's radius plus three PSF sigmas of a
#: strongly defocused frame.
WINDOW_PX = 15
#: Outer radius of the background ring just outside the window (px).
RING_PX = 19
#: Largest fraction of the moment window other events may cover.
MAX_CROWDING = 0.1
#: Leukocyte-like events measured per frame for its blur (label order).
LEUKOCYTES_PER_FRAME = 16
#: Fewest measured leukocytes that give a frame a blur estimate.
MIN_LEUKOCYTES = 5

_CHUNK = 256
_DY, _DX = np.mgrid[-RING_PX:RING_PX + 1, -RING_PX:RING_PX + 1]
_R2 = _DY ** 2 + _DX ** 2
_INNER_FLAT = np.flatnonzero(_R2.ravel() <= WINDOW_PX ** 2)
_RING_FLAT = np.flatnonzero((_R2.ravel() > WINDOW_PX ** 2) & (_R2.ravel() <= RING_PX ** 2))
#: dy, dx of the ring's and of the window's pixels (window_weights' offsets)
_OFFSETS = tuple(np.ascontiguousarray(d.ravel()[flat], dtype=np.int64)
                 for flat in (_RING_FLAT, _INNER_FLAT) for d in (_DY, _DX))
_POWERS = np.stack([np.ones(_INNER_FLAT.size), _DY.ravel()[_INNER_FLAT].astype(float),
                    _DX.ravel()[_INNER_FLAT].astype(float),
                    _R2.ravel()[_INNER_FLAT].astype(float)], axis=1)


def window_moments(page: np.ndarray, page_map: np.ndarray, labels: np.ndarray,
                   event_labels: np.ndarray, y_px: np.ndarray, x_px: np.ndarray,
                   along_border: bool = False) -> np.ndarray:
    """Intensity-weighted second moment (px², both axes summed) of one channel around
    each event.

    Parameters
    ----------
    page
        The channel's stored page (H, W).
    page_map
        Its ``(scale, offset, floor)`` map to the 12-bit scale
        (:attr:`ctcimg.io.tiff.StoredFrame.affine` column).
    labels
        The frame's label image; pixels of other events are left out.
    event_labels, y_px, x_px
        The events: label and centroid.
    along_border
        Where the window crosses one border of the frame, measure the moment along that
        border over the part of the window inside the frame, doubled (a cell cut by the
        border keeps its extent along the cut, and a small speck stays small); NaN there
        otherwise, and always at a corner.

    Returns
    -------
    ndarray of float64
        One moment per event; NaN where the window leaves the frame (see
        ``along_border``), other events cover more than :data:`MAX_CROWDING` of it, less
        than a fifth of the background ring is free of events, or the signal above
        background is not positive.
    """
    h, w = page.shape
    out = np.full(len(event_labels), np.nan)
    cy = np.rint(np.asarray(y_px, float)).astype(np.int64)
    cx = np.rint(np.asarray(x_px, float)).astype(np.int64)
    inside = (cy >= RING_PX) & (cy < h - RING_PX) & (cx >= RING_PX) & (cx < w - RING_PX)
    event_labels = np.asarray(event_labels)
    inside_rows = np.flatnonzero(inside)
    for start in range(0, len(inside_rows), _CHUNK):  # bounded memory in crowded frames
        rows = inside_rows[start:start + _CHUNK]
        out[rows] = _moments(page, page_map, labels, event_labels[rows], cy[rows], cx[rows])
    if along_border:
        for row in np.flatnonzero(~inside & (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)):
            out[row] = _moment_along_border(page, page_map, labels, event_labels[row],
                                            int(cy[row]), int(cx[row]))
    return out


def _moments(page, page_map, labels, event_labels, cy, cx) -> np.ndarray:
    weights = np.empty((len(cy), _INNER_FLAT.size), dtype=np.float32)
    measurable = window_weights(page, np.ascontiguousarray(page_map, dtype=np.float32), labels,
                                np.ascontiguousarray(event_labels, dtype=np.int64), cy, cx,
                                *_OFFSETS, 0.2 * _RING_FLAT.size, 1.0 - MAX_CROWDING, weights)
    sums = weights.astype(np.float64) @ _POWERS  # Σw, Σw·dy, Σw·dx, Σw·(dy² + dx²)
    with np.errstate(all="ignore"):
        total = sums[:, 0]
        moment = sums[:, 3] / total - (sums[:, 1] / total) ** 2 - (sums[:, 2] / total) ** 2
    return np.where(measurable & (total > 0), moment, np.nan)


def _moment_along_border(page, page_map, labels, event_label, cy: int, cx: int) -> float:
    h, w = page.shape
    near_row_border = cy < RING_PX or cy >= h - RING_PX
    near_column_border = cx < RING_PX or cx >= w - RING_PX
    if near_row_border and near_column_border:  # a corner: no full axis to measure along
        return np.nan
    y0, y1 = max(cy - RING_PX, 0), min(cy + RING_PX + 1, h)
    x0, x1 = max(cx - RING_PX, 0), min(cx + RING_PX + 1, w)
    dy = np.arange(y0, y1)[:, None] - cy
    dx = np.arange(x0, x1)[None, :] - cx
    r2 = dy ** 2 + dx ** 2
    inner = r2 <= WINDOW_PX ** 2
    ring = (r2 > WINDOW_PX ** 2) & (r2 <= RING_PX ** 2)
    window_labels = labels[y0:y1, x0:x1]
    value = apply_affine(page[y0:y1, x0:x1], *page_map)
    free_ring = ring & (window_labels == 0)
    usable = inner & ((window_labels == 0) | (window_labels == event_label))
    if free_ring.sum() < 0.2 * ring.sum() or usable.sum() < (1.0 - MAX_CROWDING) * inner.sum():
        return np.nan
    weight = np.where(usable, value - np.float32(np.median(value[free_ring])), 0.0)
    along = np.broadcast_to(dx if near_row_border else dy, weight.shape).astype(np.float64)
    total = float(weight.sum(dtype=np.float64))
    if not total > 0:
        return np.nan
    mean = float((weight * along).sum()) / total
    return 2.0 * (float((weight * along ** 2).sum()) / total - mean ** 2)


def frame_blur(frames: np.ndarray, dapi_moment: np.ndarray) -> np.ndarray:
    """Per event, its frame's blur relative to the cartridge (px², see the module docs).

    Parameters
    ----------
    frames
        Frame number of every event of the cartridge.
    dapi_moment
        ``dapi_moment_px2``: measured on leukocyte-like events only, NaN elsewhere.

    Returns
    -------
    ndarray of float64
        NaN for events of frames with fewer than :data:`MIN_LEUKOCYTES` measured.
    """
    return blur_of_events(frames, frame_blurs(frames, dapi_moment))


def frame_blurs(frames: np.ndarray, dapi_moment: np.ndarray) -> dict[int, float]:
    """Each frame's blur relative to the cartridge (px²; :func:`frame_blur`), for the
    frames with at least :data:`MIN_LEUKOCYTES` leukocyte-like events measured."""
    frames = np.asarray(frames)
    dapi_moment = np.asarray(dapi_moment, float)
    measured = np.isfinite(dapi_moment)
    quartiles = {}
    for frame in np.unique(frames[measured]).tolist():
        values = dapi_moment[measured & (frames == frame)]
        if len(values) >= MIN_LEUKOCYTES:
            quartiles[frame] = float(np.quantile(values, 0.25))
    if not quartiles:
        return {}
    usual = float(np.median(list(quartiles.values())))
    return {frame: quartile - usual for frame, quartile in quartiles.items()}


def blur_of_events(frames: np.ndarray, blurs: dict[int, float]) -> np.ndarray:
    """Per event, the blur of its frame in ``blurs`` (NaN for a frame not in it)."""
    frames = np.asarray(frames)
    out = np.full(len(frames), np.nan)
    for frame, blur in blurs.items():
        out[frames == frame] = blur
    return out


def ck_extent_um(ck_moment: np.ndarray, blur_px2: np.ndarray, pixel_size_um: float
                 ) -> np.ndarray:
    """Diameter (µm) of the uniform disc with the event's CK second moment once the
    frame's extra blur (``max(blur, 0)``; none where unknown) is taken away."""
    extra = np.nan_to_num(np.maximum(np.asarray(blur_px2, float), 0.0), nan=0.0)
    moment = np.maximum(np.asarray(ck_moment, float) - extra, 0.0)
    return 2.0 * np.sqrt(2.0 * moment) * pixel_size_um


def add_focus_features(events: dict[str, np.ndarray], frames: np.ndarray,
                       pixel_size_um: float, blurs: dict[int, float] | None = None) -> None:
    """Add ``frame_blur_px2`` and ``ck_extent_um`` to a cartridge's events (every frame's,
    ``frames`` their frame numbers), in place; ``blurs``: each frame's blur when already
    known (:func:`frame_blurs`), else measured on these events."""
    if blurs is None:
        blurs = frame_blurs(frames, events["dapi_moment_px2"])
    blur = blur_of_events(frames, blurs)
    events["frame_blur_px2"] = blur
    events["ck_extent_um"] = ck_extent_um(events["ck_moment_px2"], blur, pixel_size_um)
