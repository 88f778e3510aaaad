"""Frame → candidate events and their features.

:func:`segment_frame` finds every candidate event in one four-channel frame (channel order
:data:`ctcimg.channels.CHANNELS`) and measures it. Candidates are the 8-connected
components of "DAPI-positive OR CK-positive", so leukocytes, bare nuclei and debris are
candidates too (the gate rejects them with a reason); touching cells are split into one
event per nucleus.

Pipeline (all numba kernels in :mod:`ctcimg.kernels`, no full-resolution pass over CD45
or HER2):

1. background: per-channel tile grid (low quantile of a subsample of each tile,
   bilinear between tile centres) and MAD noise (:mod:`~ctcimg.kernels.background`);
2. threshold: one fused pass over DAPI and CK — 3 × 3 mean, minus the interpolated
   background, compared with ``max(k · σ / 3, floor)`` (σ / 3 is the noise of a 3 × 3
   mean of independent pixels) (:mod:`~ctcimg.kernels.threshold`);
3. label: run-based union-find connected components (:mod:`~ctcimg.kernels.label`);
4. refine DAPI: inside each object, a pixel stays DAPI+ only if it also reaches
   ``refine_fraction`` of the local DAPI peak — boundaries near the true edge rather
   than at the blur tail, and separate nuclei for touching cells
   (:mod:`~ctcimg.kernels.refine`);
5. split: objects with ≥ 2 nuclei are split by geodesic Voronoi from the nuclei
   (:mod:`~ctcimg.kernels.split`); then CK is refined per event (against the event's CK
   plateau) and the blur halo (detected pixels that lost both channel bits) is trimmed;
6. measure: per-object pass over its window, background-corrected on the fly
   (:mod:`~ctcimg.kernels.measure`); objects below ``min_area_px`` are dropped;
7. CD45 around the nucleus of every event with a nucleus and CK+ pixels: the lower
   quartile in an annulus of ``nucleus_annulus_px`` around the nucleus, where a leukocyte's membrane
   CD45 lies even when its event is little more than the nucleus
   (:mod:`~ctcimg.kernels.annulus`).

Threads: detection and measurement share their row blocks / objects among
``numba.get_num_threads()`` threads taking them one by one
(:mod:`ctcimg.kernels.threads`); the rest is serial. :func:`ctcimg.score_cartridge`
scores whole frames side by side instead, each frame's kernels serial in its thread. A
process pool should give each worker ``numba.set_num_threads(1)``.
Memory: one int32 label image (kept per thread from frame to frame), one uint8 mask and
small per-row / per-object buffers — no full-resolution float temporaries.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from . import focus
from .channels import CD45, CHANNELS, CK, DAPI, HER2, MAX_12BIT
from .errors import FrameShapeError, InputError
from .io.tiff import StoredFrame, apply_affine
from .kernels import annulus as _annulus
from .kernels import background as _bg
from .kernels import label as _label
from .kernels import measure as _measure
from .kernels import refine as _refine
from .kernels import split as _split
from .kernels import threshold as _thr
from .nuclei import CytoplasmContrast, separate_touching_nuclei

__all__ = ["SegmentParams", "segment_frame", "FEATURE_COLUMNS", "FEATURE_DTYPES",
           "frame_background"]


@dataclass(frozen=True)
class SegmentParams:
    """Parameters of :func:`segment_frame`.

    Attributes
    ----------
    tile_px : int
        Background tile size in pixels (48 px ≈ 31 µm: several times a cell's area, so a
        tile median ignores the sparse cells, and small enough to follow vignetting and
        the cartridge-edge band).
    tile_stride : int
        Subsampling step inside a tile for the background statistic (8 → 36 samples in a
        48-px tile; the selection cost is linear in the samples).
    background_quantile : float
        Quantile of the tile samples taken as background. 0.3 rather than the median:
        still robust when cells cover up to 70 % of a tile (a touching cluster), at the
        price of a bias of about −0.5 noise sigma (≈ 3 units on the simulator's noise).
    smooth : bool
        Threshold the 3 × 3 mean instead of raw pixels (3× less noise).
    dapi_k, ck_k : float
        Thresholds in units of the (smoothed) noise sigma above background.
    dapi_floor, ck_floor : float
        Absolute minimum thresholds above background, 12-bit units.
    refine_fraction : float
        Fraction of the local DAPI peak (within ``refine_radius_px``) / of the event's CK
        plateau (upper quartile) a pixel must reach to stay DAPI+ / CK+ after detection;
        0 disables refinement (boundary at the detection threshold, ~1.5 µm outside a
        blurred cell's edge).
    refine_radius_px : int
        Chebyshev radius of the local DAPI-peak neighbourhood, pixels (a few PSF widths).
    min_area_px : int
        Objects smaller than this (after splitting) are dropped as noise specks.
    max_object_px : int
        Objects detected larger than this (20 000 px ≈ 8 200 µm², far above a cluster of
        four large CTCs) are not refined or split — they are the cartridge-edge band or
        debris sheets — but are still reported (the gate rejects them as too large) with
        position, area, shape moments and DAPI/CK areas only: intensities, saturation,
        perimeter, circularity and local-background ring are NaN (not measured).
    min_nucleus_px : int
        DAPI components smaller than this do not count as nuclei when splitting clusters.
    split_nucleus_min_um2, split_nucleus_max_um2, split_nucleus_h, split_nucleus_min_distance_um
        A nucleus (DAPI component) of ``split_nucleus_min_um2`` to ``split_nucleus_max_um2``
        (a few cells' worth; larger DAPI sheets are the cartridge-edge band) is divided between its
        DAPI maxima that rise ``split_nucleus_h`` of its second-highest crest's height
        above their saddle and lie
        ``split_nucleus_min_distance_um`` apart (:mod:`ctcimg.nuclei`): the nuclei of
        touching cells blurred into one out of focus. In-focus CTC nuclei measure up to
        ~130 µm² and their texture maxima stay closer and shallower. An ``inf`` minimum
        disables it.
    defocus_split_nucleus_min_um2, defocus_split_nucleus_h, defocus_split_nucleus_min_distance_um
        The same limits in a frame more out of focus than the gate's ``defocus_blur_px2``
        (``frame_blur_px2``, known once every frame has been segmented):
        :func:`ctcimg.score_cartridge` segments such frames again with these
        (:meth:`out_of_focus`). There the blur has smoothed away the chromatin texture
        whose maxima the in-focus limits must ignore, and has merged the nuclei of a CTC
        and the leukocytes stuck to it, or of a CTC cluster, into one DAPI component
        whose dips are shallow. On development confounder
        cohorts (seeds 1001-1004, 2501 CTCs) 60 µm², 0.02 and 6.5 µm find 5 more CTCs in
        out-of-focus frames (262 → 267 of 275) and call no more false ones, while the same
        limits in every frame would call 4 false CTCs from split in-focus nuclei; on seeds
        1005-1008, not used to choose them, 5 more too (303 → 308 of 317), no false one.
        Equal to the in-focus limits (``defocus_split_by_cytoplasm`` too), no frame is
        segmented twice.
    contrast_split_min_um2, contrast_split_h, contrast_split_min_distance_um
        Smaller nuclei, from ``contrast_split_min_um2`` up to the cut's minimum, are
        cut with these limits, and only between parts of unlike cytoplasm: the mean CK over
        one at most ``contrast_split_max_ck_ratio`` of the other's
        (:class:`ctcimg.nuclei.CytoplasmContrast`). In focus a CTC's nucleus and that of
        a leukocyte stuck to it touch as one DAPI component of 60-100 µm², below the cut's
        minimum, and the event's nucleus then lies half outside its CK; texture maxima of
        one nucleus share one cytoplasm. On development confounder cohorts (seeds
        1001-1004, 532 doublet CTCs) 40 µm², 0.02, 5 µm and 0.5 find 3 more doublet CTCs
        (522 → 525) and call no more false ones. An ``inf`` minimum disables it.
    contrast_split_max_ck_ratio
        The largest ratio of the dimmer part's mean CK to the brighter part's at which
        that cut is kept.
    split_by_cytoplasm, defocus_split_by_cytoplasm
        Whether a nucleus of an object with CK+ pixels that the cuts above leave whole is
        divided where the cytoplasm ends: by a watershed on the CK's gradient between its
        brightest and its dimmest CK pixel (at least ``contrast_split_min_distance_um``
        apart), kept when each part is at least three quarters of
        ``contrast_split_min_um2`` and the parts' cytoplasm is unlike
        (``contrast_split_max_ck_ratio``). Out of focus a dim CTC nucleus blurred into a
        bright leukocyte's is only a shoulder on its DAPI, with no maximum to cut at.
        Applied in out-of-focus frames only (``defocus_split_by_cytoplasm``; in focus a
        CTC's nucleus keeps its maximum). On development confounder cohorts (seeds
        1001-1004) it finds 2 more doublet CTCs (525 → 527 of 532) and 2 more CTCs in
        out-of-focus frames (442 → 444 of 458) and calls no more false ones; without the
        size limit it called 3 CK+ cells beside a nucleus (a sliver cut off under their CK).
    ring_px : int
        Width of the local-background ring around each object, pixels.
    nucleus_annulus_px : int
        Outer radius of the annulus around the nucleus in which ``cd45_around_nucleus``
        is measured, pixels (2 px ≈ 1.3 µm at 0.64 µm: the inner side of a leukocyte's
        membrane, 1–2.5 µm from its nucleus, and deep inside a CTC's cytoplasm, which
        leukocytes stuck to the CTC reach less often than its outer rim).
    nucleus_annulus_quantile : float
        Quantile of the annulus' CD45 reported as ``cd45_around_nucleus`` (0.25: a
        leukocyte's membrane surrounds its nucleus, so even the lower quartile of its
        annulus is CD45+; leukocytes stuck around a CTC leave gaps).
    neighbour_zone_px, neighbour_quantile
        ``cd45_neighbours`` is this quantile of CD45 within this Chebyshev radius of the
        event's nucleus over the pixels nearer another event's nucleus (6 px ≈ 3.8 µm: the
        membranes of the leukocytes touching the event; 0.9: their bright rim, not the gaps
        between them).
    saturation_level : float
        Raw value at or above which a pixel counts as saturated.
    """

    tile_px: int = 48
    tile_stride: int = 8
    background_quantile: float = 0.3
    smooth: bool = True
    dapi_k: float = 8.0
    ck_k: float = 8.0
    dapi_floor: float = 40.0
    ck_floor: float = 40.0
    refine_fraction: float = 0.4
    refine_radius_px: int = 4
    min_area_px: int = 10
    max_object_px: int = 20000
    min_nucleus_px: int = 12
    split_nucleus_min_um2: float = 100.0
    split_nucleus_max_um2: float = 800.0
    split_nucleus_h: float = 0.1
    split_nucleus_min_distance_um: float = 7.5
    defocus_split_nucleus_min_um2: float = 60.0
    defocus_split_nucleus_h: float = 0.02
    defocus_split_nucleus_min_distance_um: float = 6.5
    contrast_split_min_um2: float = 40.0
    contrast_split_h: float = 0.02
    contrast_split_min_distance_um: float = 5.0
    contrast_split_max_ck_ratio: float = 0.5
    split_by_cytoplasm: bool = False
    defocus_split_by_cytoplasm: bool = True
    ring_px: int = 3
    nucleus_annulus_px: int = 2
    nucleus_annulus_quantile: float = 0.25
    neighbour_zone_px: int = 6
    neighbour_quantile: float = 0.9
    saturation_level: float = float(MAX_12BIT)

    def __post_init__(self) -> None:
        if self.tile_px < 2 or self.tile_stride < 1:
            raise InputError("tile_px must be >= 2 and tile_stride >= 1")
        if not 0.0 <= self.background_quantile <= 1.0:
            raise InputError("background_quantile must be within [0, 1]")
        if not 0.0 <= self.refine_fraction <= 1.0 or self.refine_radius_px < 1:
            raise InputError("refine_fraction must be within [0, 1] and refine_radius_px >= 1")
        if self.max_object_px < self.min_area_px:
            raise InputError("max_object_px must be >= min_area_px")
        if self.min_area_px < 1 or self.min_nucleus_px < 1 or self.ring_px < 0:
            raise InputError("min_area_px, min_nucleus_px must be >= 1 and ring_px >= 0")
        if self.nucleus_annulus_px < 1 or not 0.0 <= self.nucleus_annulus_quantile <= 1.0:
            raise InputError("nucleus_annulus_px must be >= 1 and nucleus_annulus_quantile "
                             "within [0, 1]")
        if self.neighbour_zone_px < 1 or not 0.0 <= self.neighbour_quantile <= 1.0:
            raise InputError("neighbour_zone_px must be >= 1 and neighbour_quantile "
                             "within [0, 1]")
        for name in ("dapi_k", "ck_k", "dapi_floor", "ck_floor"):
            if not 0.0 <= getattr(self, name) < math.inf:
                raise InputError(f"{name} must be a finite number >= 0, not {getattr(self, name)}")
        if not (self.contrast_split_min_um2 >= 0
                and 0.0 < self.contrast_split_h <= 1.0
                and self.contrast_split_min_distance_um >= 0
                and 0.0 <= self.contrast_split_max_ck_ratio <= 1.0):
            raise InputError("contrast_split_min_um2 and contrast_split_min_distance_um "
                             "must be >= 0, "
                             "contrast_split_h within (0, 1] and "
                             "contrast_split_max_ck_ratio within [0, 1]")
        for prefix in ("", "defocus_"):
            if not (getattr(self, f"{prefix}split_nucleus_min_um2") >= 0
                    and self.split_nucleus_max_um2 >= 0
                    and 0.0 < getattr(self, f"{prefix}split_nucleus_h") <= 1.0
                    and getattr(self, f"{prefix}split_nucleus_min_distance_um") >= 0):
                raise InputError(f"{prefix}split_nucleus_min_um2, split_nucleus_max_um2 and "
                                 f"{prefix}split_nucleus_min_distance_um must be >= 0 and "
                                 f"{prefix}split_nucleus_h within (0, 1]")
        if not self.saturation_level > 0:
            raise InputError(f"saturation_level must be > 0, not {self.saturation_level}")

    def out_of_focus(self) -> SegmentParams:
        """These parameters with the out-of-focus limits of the nucleus cut
        (``defocus_split_nucleus_*``) in place of the in-focus ones."""
        return replace(self, split_nucleus_min_um2=self.defocus_split_nucleus_min_um2,
                       split_nucleus_h=self.defocus_split_nucleus_h,
                       split_nucleus_min_distance_um=self.defocus_split_nucleus_min_distance_um,
                       split_by_cytoplasm=self.defocus_split_by_cytoplasm)


_CH = tuple(c.lower() for c in CHANNELS)

#: Output columns of :func:`segment_frame`, in order, with their meaning and unit.
FEATURE_COLUMNS: dict[str, str] = {
    "label": "object id in the frame's label image (1..n)",
    "x_px": "centroid column, pixels from the frame's left edge",
    "y_px": "centroid row, pixels from the frame's top edge",
    "bbox_row0": "bounding box first row, pixels",
    "bbox_col0": "bounding box first column, pixels",
    "bbox_row1": "bounding box row end (exclusive), pixels",
    "bbox_col1": "bounding box column end (exclusive), pixels",
    "area_px": "object area, pixels",
    "area_um2": "object area, µm²",
    "diameter_um": "equivalent-circle diameter sqrt(4·area/π), µm",
    "perimeter_um": "perimeter (skimage.measure.perimeter estimator, 4-neighbourhood), µm "
                    "(NaN above max_object_px)",
    "circularity": "4π·area/perimeter², 1 for a disc (small objects can exceed 1; NaN above "
                   "max_object_px)",
    "aspect_ratio": "major/minor axis from second moments (minor floored at 1 px)",
    "eccentricity": "eccentricity of the moment ellipse, 0 = circle",
    **{
        f"{c}_{s}": d.format(C=C)
        for c, C in zip(_CH, CHANNELS, strict=True)
        for s, d in (
            ("mean", "mean background-corrected {C} intensity in the object, 12-bit units "
                     "(NaN above max_object_px)"),
            ("max", "max background-corrected {C} intensity in the object, 12-bit units "
                    "(NaN above max_object_px)"),
            ("integrated", "sum of background-corrected {C} intensity over the object (NaN "
                           "above max_object_px)"),
            ("ring", "mean background-corrected {C} intensity in a ring of ring_px pixels "
                     "around the object, other objects excluded (NaN if empty or the "
                     "object exceeds max_object_px)"),
        )
    },
    "cd45_around_nucleus": "lower quartile (nucleus_annulus_quantile) of background-corrected "
                           "CD45 in the annulus 1..nucleus_annulus_px pixels (Chebyshev) "
                           "around the event's nucleus, pixels nearer another event's nucleus "
                           "and other events excluded: a leukocyte's membrane, wherever its "
                           "CK lies; 12-bit units (NaN without DAPI+ and CK+ pixels, or "
                           "above max_object_px)",
    "ck_around_nucleus": "the same lower quartile for CK: inside a CTC's cytoplasm, bright; "
                         "on a CK-dim leukocyte's membrane, dim (NaN where "
                         "cd45_around_nucleus is)",
    "cd45_neighbours": "upper decile (neighbour_quantile) of background-corrected CD45 within "
                       "neighbour_zone_px pixels (Chebyshev) of the event's nucleus over the "
                       "pixels nearer another event's nucleus: the membranes of leukocytes "
                       "touching the event, against which blur spilled into its annulus is "
                       "small (NaN without such pixels, or where cd45_around_nucleus is)",
    "dapi_moment_px2": "intensity-weighted second moment of DAPI (both axes, px²) in a "
                       "15 px disc around the event, above the ring just outside it, other "
                       "events excluded: the frame's focus (measured on up to 16 cell-sized "
                       "events without CK+ pixels per frame, NaN elsewhere; ctcimg.focus)",
    "ck_moment_px2": "the same for CK, measured for events with DAPI+ and CK+ pixels (NaN "
                     "elsewhere): a size that a blur adds to instead of inflating; where "
                     "the disc crosses one frame border, twice the moment along it over "
                     "the part inside the frame (NaN at a corner)",
    "her2_core_mean": "background-corrected HER2 mean over the half of the event farthest "
                      "from other CK+ cells brighter in HER2 (events at least half CK+ with a "
                      "higher HER2 mean; the whole event when none lies within 8 px): "
                      "what the event's own HER2 reads without its neighbours' blurred in; "
                      "12-bit units (NaN without DAPI+ and CK+ pixels)",
    "dapi_area_um2": "area of DAPI-positive (thresholded) pixels in the object, µm²",
    "ck_area_um2": "area of CK-positive (thresholded) pixels in the object, µm²",
    "nucleus_in_ck_fraction": "fraction of the object's DAPI+ pixels that are CK+ (0 if none)",
    "ck_covered_by_nucleus_fraction": "fraction of the object's CK+ pixels that are DAPI+ "
                                      "(0 if none)",
    "nucleus_offset_um": "distance from the centroid of the object's CK+ pixels to that of its "
                         "DAPI+ pixels, µm (NaN if either is empty)",
    "ck_std": "standard deviation of background-corrected CK in the object, 12-bit units "
              "(NaN above max_object_px)",
    "saturated_fraction": "fraction of object pixels at the saturation level in any raw channel "
                          "(NaN above max_object_px)",
    "touches_edge": "bounding box touches the frame border (cell may be cut)",
    "cluster_size": "number of events the touching cluster this event came from was split "
                    "into (1 = not split)",
}

_INT_COLUMNS = {"label", "bbox_row0", "bbox_col0", "bbox_row1", "bbox_col1", "area_px",
                "cluster_size"}
#: dtype of each feature column: int32 ids, pixel positions and counts, a bool flag, float64.
FEATURE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(np.int32 if name in _INT_COLUMNS else bool if name == "touches_edge"
                   else np.float64)
    for name in FEATURE_COLUMNS
}


@dataclass(frozen=True)
class _Background:
    grids: np.ndarray  # (C, ny, nx) float64
    sigma: np.ndarray  # (C,) float64 pixel noise (0 for channels without a noise estimate)
    ry0: np.ndarray
    rwy: np.ndarray
    cx0: np.ndarray
    cwx: np.ndarray


def _as_stored(frame: np.ndarray | StoredFrame) -> StoredFrame:
    """A checked :class:`StoredFrame` whose pages share one dtype and are C-contiguous."""
    if isinstance(frame, StoredFrame):
        pages = frame.pages
        shapes = {page.shape for page in pages}
        if len(pages) != len(CHANNELS) or len(shapes) != 1 or pages[0].ndim != 2 \
                or min(pages[0].shape) < 1:
            raise FrameShapeError(f"expected {len(CHANNELS)} pages of one (H, W) shape, got "
                                  f"{[page.shape for page in pages]}")
        dtypes = {page.dtype for page in pages}
        dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise FrameShapeError(f"expected real numeric pages, got dtype {dtype}")
        affine = np.ascontiguousarray(frame.affine, dtype=np.float32)
        if affine.shape != (3, len(CHANNELS)):
            raise FrameShapeError(f"expected a (3, {len(CHANNELS)}) affine map, got "
                                  f"{affine.shape}")
        return StoredFrame(tuple(np.ascontiguousarray(page, dtype=dtype.newbyteorder("="))
                                 for page in pages), affine)
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[0] != len(CHANNELS) or min(frame.shape[1:]) < 1:
        raise FrameShapeError(
            f"expected a frame of shape ({len(CHANNELS)}, H, W), got {frame.shape}"
        )
    if not np.issubdtype(frame.dtype, np.number) or np.iscomplexobj(frame):
        raise FrameShapeError(f"expected a real numeric frame, got dtype {frame.dtype}")
    return StoredFrame.from_array(frame)


def _background(frame: StoredFrame, params: SegmentParams) -> _Background:
    _, h, w = frame.shape
    redges, ry0, rwy = _bg.grid_axis(h, params.tile_px)
    cedges, cx0, cwx = _bg.grid_axis(w, params.tile_px)
    grids, tile_sigma = _bg.tile_stats(frame.pages, frame.affine, redges, cedges,  # σ: DAPI, CK
                                       params.tile_stride, params.background_quantile, 2, 2)
    sigma = np.zeros(frame.shape[0], dtype=np.float64)
    for c in (DAPI, CK):
        sigma[c] = float(np.nanmedian(tile_sigma[c]))
    return _Background(grids, sigma, ry0, rwy, cx0, cwx)


def frame_background(frame: np.ndarray | StoredFrame, params: SegmentParams = SegmentParams()
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Background grids and noise of a frame (restored array or stored pages), for QC.

    Returns
    -------
    grids : (4, ny, nx) float64 tile backgrounds, 12-bit units
    sigma : (4,) float64 per-pixel noise sigma (MAD) of DAPI and CK; 0 for CD45 and HER2
    """
    bg = _background(_as_stored(frame), params)
    return bg.grids, bg.sigma


def _thresholds(sigma: np.ndarray, params: SegmentParams) -> tuple[float, float]:
    scale = 1.0 / 3.0 if params.smooth else 1.0
    thr_dapi = max(params.dapi_k * sigma[DAPI] * scale, params.dapi_floor)
    thr_ck = max(params.ck_k * sigma[CK] * scale, params.ck_floor)
    return float(thr_dapi), float(thr_ck)


def _empty_result() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype) for name, dtype in FEATURE_DTYPES.items()}


def segment_frame(
    frame: np.ndarray | StoredFrame,
    pixel_size_um: float,
    params: SegmentParams = SegmentParams(),
    return_labels: bool = False,
) -> dict[str, np.ndarray]:
    """Find and measure the candidate events of one frame.

    Parameters
    ----------
    frame : (4, H, W) array or StoredFrame
        Channels in :data:`ctcimg.channels.CHANNELS` order (DAPI, CK, CD45, HER2): either
        restored to the 12-bit scale (float32 C-contiguous avoids a copy), or the stored
        pages with their map to that scale (:meth:`ctcimg.io.cellsearch.Cartridge.read_stored`),
        which gives identical results without ever restoring the whole frame.
    pixel_size_um : float
        Pixel size in µm.
    params : SegmentParams
        Segmentation parameters.
    return_labels : bool
        Also return the ``(H, W)`` int32 label image under the key ``"labels"``
        (object ``i`` of the table has label ``label[i]``; 0 = background).

    Returns
    -------
    dict of str to ndarray
        One array per column of :data:`FEATURE_COLUMNS`, one entry per event, ordered by
        label (raster order of the first pixel of the unsplit object; split-off events
        follow all unsplit ones).

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.full((4, 64, 64), 100, np.float32)
    >>> yy, xx = np.mgrid[:64, :64]
    >>> frame[0][(yy - 32) ** 2 + (xx - 32) ** 2 < 36] += 800   # nucleus
    >>> frame[1][(yy - 32) ** 2 + (xx - 32) ** 2 < 100] += 600  # cytoplasm
    >>> ev = segment_frame(frame, 0.64)
    >>> len(ev["label"]), round(float(ev["x_px"][0]), 1)
    (1, 32.0)
    """
    if not (pixel_size_um > 0 and math.isfinite(pixel_size_um)):
        raise ValueError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}")
    frame = _as_stored(frame)
    _, h, w = frame.shape
    if return_labels:
        labels = np.zeros((h, w), np.int32)
        out, _ = _segment(frame, pixel_size_um, params, labels, relabel=True)
        out["labels"] = labels
        return out
    labels = _label_image(h, w)
    try:
        out, runs = _segment(frame, pixel_size_um, params, labels, relabel=False)
    except BaseException:
        _thread_scratch.labels = None  # painted part-way: never used again
        raise
    _label.clear_runs(labels, runs)  # zero again for the thread's next frame
    return out


#: Per thread: the zeroed label image its next frame is labelled into. A frame's objects
#: cover a few percent of it, so painting and clearing only their runs replaces writing
#: every pixel of a new 5.7 MB image (0.28 s of the ~3.3 s a 175-frame cartridge took on
#: one thread).
_thread_scratch = threading.local()


def _label_image(h: int, w: int) -> np.ndarray:
    labels = getattr(_thread_scratch, "labels", None)
    if labels is None or labels.shape != (h, w):
        labels = _thread_scratch.labels = np.zeros((h, w), np.int32)
    return labels


def _segment(frame: StoredFrame, pixel_size_um: float, params: SegmentParams,
             labels: np.ndarray, relabel: bool) -> tuple[dict[str, np.ndarray], tuple]:
    """:func:`segment_frame`'s table of a stored frame, labelled into the zeroed
    ``labels``, and the runs painted there; with ``relabel``, ``labels`` is left numbered
    as the table (small objects dropped)."""
    _, h, w = frame.shape
    found = _detect(frame, params, labels)
    win, cluster = _split_touching(frame, found, pixel_size_um, params)
    labels, mask, bg = found.labels, found.mask, found.bg
    if found.refine:  # cytoplasm per event, then drop the blur halo
        work = win.copy()
        work[:found.n + 1][found.huge] = 0
        _refine.refine_channel(frame.pages[CK], np.ascontiguousarray(frame.affine[:, CK]),
                               _thr.CK_BIT, labels, mask, work, bg.grids[CK], bg.ry0, bg.rwy,
                               bg.cx0, bg.cwx, found.thr_ck, *_refine_options(params), False)
        _refine.trim_objects(labels, mask, found.work)
    colgrids = found.colgrids
    huge = np.flatnonzero(found.huge)  # measured from their runs, not their windows' scan
    measured = win.copy()
    measured[huge] = 0
    raw = _measure.measure_objects(frame.pages, frame.affine, labels, mask, measured, colgrids,
                                   bg.ry0, bg.rwy, int(params.ring_px),
                                   float(params.saturation_level),
                                   _measure.PERIMETER_WEIGHTS, int(params.max_object_px))
    if len(huge):
        _measure.measure_unmeasured(found.runs, mask, win, huge, raw)
    raw = raw[1:]
    keep = raw[:, _measure.AREA] >= params.min_area_px
    # only events with a nucleus and CK+ pixels can pass the CK and nucleus criteria: the
    # measurements around an event that only the gate's later criteria use are theirs
    candidate = keep & (raw[:, _measure.NDAPI] > 0) & (raw[:, _measure.NCK] > 0)
    windowed = (  # measured around each event before small objects are relabelled away
        *_around_nucleus(CD45, frame, labels, mask, win, raw, candidate, colgrids, bg,
                         params),
        _around_nucleus(CK, frame, labels, mask, win, raw, candidate, colgrids, bg,
                        params)[0],
        *_focus_moments(frame, labels, win, raw, keep, candidate, pixel_size_um),
        _her2_core_mean(frame, labels, win, raw, candidate),
    )
    if relabel:
        new_label = np.zeros(len(raw) + 1, dtype=np.int64)
        new_label[1:][keep] = np.arange(1, int(keep.sum()) + 1)
        if not np.array_equal(new_label[1:], np.arange(1, len(raw) + 1)):
            _measure.relabel_windows(labels, win, new_label)
    if not keep.any():
        out = _empty_result()
    else:
        out = _features(raw[keep], win[1:][keep], cluster[1:][keep],
                        tuple(values[keep] for values in windowed), pixel_size_um, h, w)
    return out, found.runs


@dataclass(frozen=True)
class _Detected:
    bg: _Background
    colgrids: np.ndarray  # (4, ny, W) float64 background grids interpolated along rows
    thr_ck: float
    labels: np.ndarray
    mask: np.ndarray
    n: int
    bbox: np.ndarray
    area: np.ndarray  # detected area of each object (px)
    huge: np.ndarray  # objects above max_object_px: not refined, not split
    work: np.ndarray  # bbox with huge objects' windows emptied
    refine: bool
    runs: tuple  # the foreground runs the objects were labelled from (label_mask)


def _refine_options(params: SegmentParams) -> tuple[float, int, bool]:
    return float(params.refine_fraction), int(params.refine_radius_px), params.smooth


def _detect(frame: StoredFrame, params: SegmentParams, labels: np.ndarray) -> _Detected:
    """Background, the DAPI ∪ CK foreground, its connected objects (labelled into the
    zeroed ``labels``), their refined nuclei."""
    pages, affine = frame.pages, frame.affine
    bg = _background(frame, params)
    thr_dapi, thr_ck = _thresholds(bg.sigma, params)
    colgrids = _thr.column_grid(bg.grids, bg.cx0, bg.cwx, np.float64)  # (4, ny, W)
    colgrid32 = colgrids[:2].astype(np.float32)  # DAPI, CK: as column_grid's float32
    dapi_map = np.ascontiguousarray(affine[:, DAPI])
    ck_map = np.ascontiguousarray(affine[:, CK])
    mask, run_counts = _thr.foreground_mask(pages[DAPI], pages[CK], dapi_map, ck_map,
                                            colgrid32[DAPI], colgrid32[CK],
                                            bg.ry0, bg.rwy, thr_dapi, thr_ck, params.smooth)
    labels, n, area0, bbox, runs = _label.label_mask(mask, run_counts, return_runs=True,
                                                     out=labels)
    huge = area0 > params.max_object_px
    work = bbox.copy()
    work[huge] = 0
    refine = n > 0 and params.refine_fraction > 0
    if refine:  # nuclei first: they seed the split
        _refine.refine_channel(pages[DAPI], dapi_map, _thr.DAPI_BIT, labels, mask, work,
                               bg.grids[DAPI], bg.ry0, bg.rwy, bg.cx0, bg.cwx, thr_dapi,
                               *_refine_options(params), True)
    return _Detected(bg, colgrids, thr_ck, labels, mask, n, bbox, area0, huge, work, refine,
                     runs)


def _split_touching(frame: StoredFrame, found: _Detected, pixel_size_um: float,
                    params: SegmentParams) -> tuple[np.ndarray, np.ndarray]:
    """Split touching cells, one event per nucleus (nuclei blurred together separated
    first), in place. Returns each event's window (its unsplit object's box) and the size of
    the cluster it came from, both indexed by label (row 0: background)."""
    labels, mask, n = found.labels, found.mask, found.n
    win = found.bbox
    cluster = np.ones(n + 1, dtype=np.int64)
    if n:
        nnuc = _split.count_nuclei(labels, mask, found.work, n, params.min_nucleus_px)
        if _separate_nuclei(frame, found, nnuc, pixel_size_um, params):
            nnuc = _split.count_nuclei(labels, mask, found.work, n, params.min_nucleus_px)
        todo = np.flatnonzero(nnuc >= 2).astype(np.int64)
        if len(todo):
            extra = nnuc[todo] - 1
            new_base = n + 1 + np.concatenate(([0], np.cumsum(extra)[:-1])).astype(np.int64)
            _split.split_objects(labels, mask, found.bbox, todo, new_base, params.min_nucleus_px)
            parent = np.concatenate([np.arange(n + 1), np.repeat(todo, extra)])
            win = found.bbox[parent]
            cluster[todo] = nnuc[todo]
            cluster = cluster[parent]
    return np.ascontiguousarray(win), cluster


def _around_nucleus(channel: int, frame: StoredFrame, labels, mask, win, raw, candidate,
                    colgrids, bg, params: SegmentParams) -> tuple[np.ndarray, np.ndarray]:
    """``<channel>_around_nucleus`` and, for CD45, ``cd45_neighbours`` (all NaN for CK) per
    object (NaN where not measured), for the ``candidate`` events. Runs before small
    objects are relabelled away, so their pixels count as other events."""
    out = np.full((len(raw), 2), np.nan)
    todo = np.flatnonzero(candidate & np.isfinite(raw[:, _measure.SUM + channel])
                          ).astype(np.int64) + 1
    if len(todo):
        zone = int(params.neighbour_zone_px) if channel == CD45 else 0
        out[todo - 1] = _annulus.nucleus_annulus_quantile(
            frame.pages[channel], np.ascontiguousarray(frame.affine[:, channel]), labels, mask,
            win, todo, colgrids[channel], bg.ry0, bg.rwy, int(params.nucleus_annulus_px),
            float(params.nucleus_annulus_quantile), zone, float(params.neighbour_quantile)
        )[:, [0, 2]]
    return out[:, 0], out[:, 1]


def _separate_nuclei(frame: StoredFrame, found: _Detected, nnuc: np.ndarray,
                     pixel_size_um: float, params: SegmentParams) -> int:
    """Cut large nuclei between their DAPI maxima (:mod:`ctcimg.nuclei`); returns how many
    were cut. Only objects large enough to hold such a nucleus are looked at; huge ones
    (no window) are left alone."""
    min_px = params.split_nucleus_min_um2 / pixel_size_um ** 2
    contrast_min_px = params.contrast_split_min_um2 / pixel_size_um ** 2
    if not math.isfinite(min(min_px, contrast_min_px)):
        return 0
    max_px = params.split_nucleus_max_um2 / pixel_size_um ** 2
    contrast = None if not contrast_min_px < min_px else CytoplasmContrast(
        frame.pages[CK], frame.affine[:, CK], contrast_min_px, params.contrast_split_h,
        params.contrast_split_min_distance_um / pixel_size_um,
        params.contrast_split_max_ck_ratio, params.split_by_cytoplasm)
    objects = np.flatnonzero((nnuc >= 1) & (found.area >= min(min_px, contrast_min_px))
                             & ~found.huge).astype(np.int64)
    # the contrast cut needs a cytoplasm: only objects with CK+ pixels get it
    with_ck = np.zeros(len(objects), bool) if contrast is None else \
        _split.objects_with_bit(found.labels, found.mask, found.work, objects, _thr.CK_BIT)
    cut = 0
    for todo, how in ((objects[~with_ck & (found.area[objects] >= min_px)], None),
                      (objects[with_ck], contrast)):
        if len(todo):
            cut += separate_touching_nuclei(
                frame.pages[DAPI], frame.affine[:, DAPI], found.labels, found.mask, found.work,
                todo, int(math.ceil(min_px)) if math.isfinite(min_px) else 2**62,
                params.split_nucleus_h, params.split_nucleus_min_distance_um / pixel_size_um,
                max_px, how)
    return cut


def _her2_core_mean(frame: StoredFrame, labels: np.ndarray, win: np.ndarray, raw: np.ndarray,
                    candidate: np.ndarray, margin_px: int = 8) -> np.ndarray:
    """``her2_core_mean`` per object (NaN where not measured), for the ``candidate``
    events: the HER2 mean over the half of the event farthest from other CK+ cells
    brighter in HER2 (events at least half CK+ whose HER2 mean exceeds the event's; the
    whole event when none lies within ``margin_px``). A CTC in a cluster reads the HER2
    of brighter neighbours blurred into its rim, its far half much less. Leukocytes
    (HER2-negative, and often packed all around a CTC, whose membrane HER2 the far half
    would then leave out) do not count as neighbours, even with the CTC's CK blurred
    into their rim, nor do dimmer cells, CK-dim leukocytes among them: they cannot raise
    the event's HER2, and around a CTC the far half is its centre, without the membrane
    (development seed 1006: two 3+ CTCs among CK-dim leukocytes read a core of 0.71 and
    0.75 of their mean and were binned 2+)."""

    out = np.full(len(raw), np.nan)
    page, (scale, offset, floor) = frame.pages[HER2], frame.affine[:, HER2]
    h, w = page.shape
    ck_cell = np.concatenate(([False], raw[:, _measure.NCK] >= 0.5 * raw[:, _measure.AREA]))
    with np.errstate(invalid="ignore", divide="ignore"):
        her2_mean = np.concatenate(([np.nan], raw[:, _measure.SUM + HER2] / raw[:, _measure.AREA]))
    rows = np.flatnonzero(candidate & np.isfinite(raw[:, _measure.SUM + HER2]))
    for row in rows:
        lab = row + 1
        r0, c0 = max(int(win[lab, 0]) - margin_px, 0), max(int(win[lab, 1]) - margin_px, 0)
        r1, c1 = min(int(win[lab, 2]) + margin_px, h), min(int(win[lab, 3]) + margin_px, w)
        window = labels[r0:r1, c0:c1]
        own = window == lab
        mean = her2_mean[lab]
        # a neighbour whose HER2 is unmeasured (NaN: a huge object) counts as brighter
        others = ck_cell[window] & ~own & ~(her2_mean[window] <= mean)
        if not others.any():
            out[row] = mean
            continue
        # the 5x5 mask (within 0.2 px of Euclidean): cv2's precise mode differs from run to
        # run in the 7th digit, which flips pixels tied at the median
        distance = cv2.distanceTransform((~others).astype(np.uint8), cv2.DIST_L2, 5)[own]
        values = apply_affine(page[r0:r1, c0:c1][own], scale, offset, floor)
        far = distance >= np.median(distance)
        out[row] = mean + float(values[far].mean() - values.mean())
    return out


def _focus_moments(frame: StoredFrame, labels: np.ndarray, win: np.ndarray, raw: np.ndarray,
                   keep: np.ndarray, candidate: np.ndarray, pixel_size_um: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``dapi_moment_px2`` and ``ck_moment_px2`` per object (NaN where not measured; see
    :mod:`ctcimg.focus`): the DAPI moment of up to LEUKOCYTES_PER_FRAME cell-sized events
    with a nucleus and no CK+ pixels spread over the label order (the frame's focus), the
    CK moment of every ``candidate`` (the events the size criterion judges)."""
    area = raw[:, _measure.AREA]
    diameter_um = np.sqrt(4.0 * area / np.pi) * pixel_size_um
    with np.errstate(invalid="ignore", divide="ignore"):
        y = win[1:, 0] + raw[:, _measure.SY] / area
        x = win[1:, 1] + raw[:, _measure.SX] / area
    leukocytes = np.flatnonzero(keep & (raw[:, _measure.NDAPI] > 0) & (raw[:, _measure.NCK] == 0)
                                & (diameter_um >= 6.0) & (diameter_um <= 16.0))
    if len(leukocytes) > focus.LEUKOCYTES_PER_FRAME:
        leukocytes = leukocytes[np.linspace(0, len(leukocytes) - 1,
                                            focus.LEUKOCYTES_PER_FRAME).astype(np.int64)]
    moments = []
    for channel, rows in ((DAPI, leukocytes), (CK, np.flatnonzero(candidate))):
        values = np.full(len(raw), np.nan)
        values[rows] = focus.window_moments(frame.pages[channel], frame.affine[:, channel],
                                            labels, rows + 1, y[rows], x[rows],
                                            along_border=channel == CK)
        moments.append(values)
    return moments[0], moments[1]


def _features(raw: np.ndarray, win: np.ndarray, cluster: np.ndarray,
              windowed: tuple[np.ndarray, ...], ps: float, h: int, w: int
              ) -> dict[str, np.ndarray]:
    M = _measure
    m = len(raw)
    a = raw[:, M.AREA]
    my = raw[:, M.SY] / a
    mx = raw[:, M.SX] / a
    vyy = np.maximum(raw[:, M.SYY] / a - my * my, 0.0)
    vxx = np.maximum(raw[:, M.SXX] / a - mx * mx, 0.0)
    vxy = raw[:, M.SXY] / a - my * mx
    half = (vyy + vxx) / 2.0
    root = np.sqrt(((vyy - vxx) / 2.0) ** 2 + vxy**2)
    l1 = half + root
    l2 = np.maximum(half - root, 0.0)
    major = 4.0 * np.sqrt(l1)
    minor = np.maximum(4.0 * np.sqrt(l2), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1.0 - l2 / np.where(l1 > 0, l1, 1.0), 0, 1)),
                       0.0)
    per = raw[:, M.PERIM]
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(per > 0, 4.0 * np.pi * a / np.where(per > 0, per, 1.0) ** 2, 0.0)
        circ[np.isnan(per)] = np.nan
    r0 = raw[:, M.ROW0].astype(np.int32)
    c0 = raw[:, M.COL0].astype(np.int32)
    r1 = raw[:, M.ROW1].astype(np.int32)
    c1 = raw[:, M.COL1].astype(np.int32)
    out: dict[str, np.ndarray] = {
        "label": np.arange(1, m + 1, dtype=np.int32),
        "x_px": win[:, 1] + mx,
        "y_px": win[:, 0] + my,
        "bbox_row0": r0,
        "bbox_col0": c0,
        "bbox_row1": r1,
        "bbox_col1": c1,
        "area_px": a.astype(np.int32),
        "area_um2": a * ps * ps,
        "diameter_um": np.sqrt(4.0 * a / np.pi) * ps,
        "perimeter_um": per * ps,
        "circularity": circ,
        "aspect_ratio": major / minor,
        "eccentricity": ecc,
    }
    ringn = raw[:, M.RINGN]
    for c, name in enumerate(_CH):
        s = raw[:, M.SUM + c]
        out[f"{name}_mean"] = s / a
        out[f"{name}_max"] = raw[:, M.MAX + c]
        out[f"{name}_integrated"] = s
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{name}_ring"] = np.where(ringn > 0, raw[:, M.RING + c] / ringn, np.nan)
    cd45_around, cd45_neighbours, ck_around, *moments_and_core = windowed
    out["cd45_around_nucleus"], out["ck_around_nucleus"] = cd45_around, ck_around
    out["cd45_neighbours"] = cd45_neighbours
    out["dapi_moment_px2"], out["ck_moment_px2"], out["her2_core_mean"] = moments_and_core
    nd = raw[:, M.NDAPI]
    nc = raw[:, M.NCK]
    nb = raw[:, M.NBOTH]
    ck_mean = raw[:, M.SUM + CK] / a
    with np.errstate(divide="ignore", invalid="ignore"):
        out["dapi_area_um2"] = nd * ps * ps
        out["ck_area_um2"] = nc * ps * ps
        out["nucleus_in_ck_fraction"] = np.where(nd > 0, nb / np.where(nd > 0, nd, 1), 0.0)
        out["ck_covered_by_nucleus_fraction"] = np.where(nc > 0, nb / np.where(nc > 0, nc, 1),
                                                         0.0)
        out["nucleus_offset_um"] = np.where(
            (nd > 0) & (nc > 0),
            np.hypot(raw[:, M.DSY] / nd - raw[:, M.KSY] / nc,
                     raw[:, M.DSX] / nd - raw[:, M.KSX] / nc) * ps, np.nan)
    out["ck_std"] = np.sqrt(np.maximum(raw[:, M.CKSQ] / a - ck_mean**2, 0.0))
    out["saturated_fraction"] = raw[:, M.NSAT] / a
    out["touches_edge"] = (r0 == 0) | (c0 == 0) | (r1 == h) | (c1 == w)
    out["cluster_size"] = cluster.astype(np.int32)
    assert list(out) == list(FEATURE_COLUMNS)
    return out
