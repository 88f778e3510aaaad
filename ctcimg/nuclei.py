"""Separate nuclei that touch: one DAPI component holding several intensity maxima.

Touching cells are split from their nuclei (:mod:`ctcimg.kernels.split`), which are the
connected components of an object's DAPI-positive pixels. Out of focus the nuclei of a
CTC cluster or of a CTC with a leukocyte stuck to it blur into one component, the split
sees one nucleus and the cells become one event (a single, oversized "CTC", or a CTC
rejected because half of its merged nucleus lies outside its CK). Their DAPI still
peaks once per nucleus. For each object whose single nucleus is large, this step looks
for maxima of the smoothed DAPI that stand out of the nucleus by a fraction ``h`` of its
height (h-maxima) and lie at least a nucleus' width apart; with two or more it divides
the nucleus between them by a watershed on the DAPI and clears the DAPI bit along the
dividing line, so the split then sees one nucleus per cell.

The limits keep single nuclei whole: chromatin texture makes maxima too, but closer
together and shallower (development seeds 1001-1002: no CTC nucleus in focus split;
every merged CTC cluster and doublet in out-of-focus frames found at its true count but
one).
"""

from __future__ import annotations

import cv2
import numpy as np

from .io.tiff import apply_affine
from .kernels.threshold import DAPI_BIT

#: Smoothing of the DAPI before looking for maxima (px): noise and fine texture.
SMOOTH_SIGMA_PX = 1.5


def separate_touching_nuclei(page: np.ndarray, page_map: np.ndarray, labels: np.ndarray,
                             mask: np.ndarray, bbox: np.ndarray, objects: np.ndarray,
                             min_area_px: int, h_fraction: float, min_distance_px: float,
                             max_area_px: float = np.inf) -> int:
    """Cut the DAPI bit of ``mask`` between the maxima of each large nucleus (8-connected
    DAPI component) of the given objects, in place.

    Parameters
    ----------
    page, page_map
        The DAPI page as stored and its ``(scale, offset, floor)`` map to 12-bit units.
    labels, mask
        The frame's label image and foreground bits (``mask`` is modified).
    bbox
        ``(n + 1, 4)`` object boxes (row0, col0, row1, col1).
    objects
        Labels of the objects to examine.
    min_area_px, max_area_px
        Only nuclei of this many DAPI+ pixels are examined (larger DAPI sheets, such as
        the cartridge-edge band, are no cluster of cells).
    h_fraction
        A maximum must rise this fraction of the nucleus' height (peak minus the lowest
        smoothed DAPI in the object) above the saddle to its neighbours.
    min_distance_px
        Of maxima closer than this, only the highest is kept.

    Returns
    -------
    int
        How many nuclei were cut.
    """
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    h, w = page.shape
    pad = int(np.ceil(3 * SMOOTH_SIGMA_PX))
    cut = 0
    for lab in np.asarray(objects, np.int64):
        r0, c0, r1, c1 = (int(v) for v in bbox[lab])
        own = labels[r0:r1, c0:c1] == lab
        dapi = own & ((mask[r0:r1, c0:c1] & DAPI_BIT) != 0)
        if np.count_nonzero(dapi) < min_area_px:  # most objects: no nucleus large enough
            continue
        components = label(dapi, connectivity=2)
        sizes = np.bincount(components.ravel())[1:]
        large = np.flatnonzero((sizes >= min_area_px) & (sizes <= max_area_px)) + 1
        if not len(large):
            continue
        y0, x0, y1, x1 = max(r0 - pad, 0), max(c0 - pad, 0), min(r1 + pad, h), min(c1 + pad, w)
        crop = apply_affine(page[y0:y1, x0:x1], *page_map)
        smooth = cv2.GaussianBlur(crop, (0, 0), SMOOTH_SIGMA_PX)[r0 - y0:r1 - y0,
                                                                 c0 - x0:c1 - x0]
        low = float(smooth[own].min())
        # maxima of their min_distance_px neighbourhood: with fewer than two the nucleus
        # is whole, and the h-maxima need not be computed (most large nuclei)
        size = max(int(min_distance_px) | 1, 3)
        crest = smooth >= cv2.dilate(smooth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                      (size, size)))
        for component in large:
            nucleus = components == component
            if cv2.connectedComponents((crest & nucleus).astype(np.uint8))[0] < 3:
                continue
            height = float(smooth[nucleus].max()) - low
            if not height > 0:
                continue
            peaks = h_maxima(np.where(nucleus, smooth, low).astype(np.float64),
                             h_fraction * height) & nucleus
            seeds = _distant_seeds(peaks, smooth, min_distance_px)
            if seeds.max() < 2:
                continue
            basins = watershed(-smooth, seeds, mask=nucleus)
            mask[r0:r1, c0:c1][_dividing_line(basins)] &= np.uint8(~DAPI_BIT & 0xFF)
            cut += 1
    return cut


def _distant_seeds(peaks: np.ndarray, smooth: np.ndarray, min_distance_px: float) -> np.ndarray:
    """Markers 1..k: the peak regions, highest first, dropping any closer than
    ``min_distance_px`` to a higher one kept."""
    from skimage.measure import label, regionprops

    regions = regionprops(label(peaks, connectivity=2), intensity_image=smooth)
    regions.sort(key=lambda r: -r.intensity_max)
    kept: list = []
    for region in regions:
        centre = np.asarray(region.centroid)
        if all(np.hypot(*(centre - np.asarray(k.centroid))) >= min_distance_px for k in kept):
            kept.append(region)
    seeds = np.zeros(peaks.shape, np.int32)
    for index, region in enumerate(kept, start=1):
        seeds[tuple(region.coords.T)] = index
    return seeds


def _dividing_line(basins: np.ndarray) -> np.ndarray:
    """Pixels of each basin that touch (8-neighbourhood) a basin of a lower number: clearing
    them leaves the basins 8-disconnected from one another."""
    padded = np.pad(basins, 1)
    line = np.zeros(basins.shape, bool)
    inner = padded[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                other = padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                line |= (other > 0) & (other < inner)
    return line
