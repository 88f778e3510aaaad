"""Separate nuclei that touch: one DAPI component holding several intensity maxima.

Touching cells are split from their nuclei (:mod:`ctcimg.kernels.split`), which are the
connected components of an object's DAPI-positive pixels. Out of focus the nuclei of a
CTC cluster or of a CTC with a leukocyte stuck to it blur into one component, the split
sees one nucleus and the cells become one event (a single, oversized "CTC", or a CTC
rejected because half of its merged nucleus lies outside its CK). Their DAPI still
peaks once per nucleus. For each object whose single nucleus is large, this step looks
for maxima of the smoothed DAPI that stand out of the nucleus by a fraction ``h`` of the
height of its second-highest crest (h-maxima) and lie at least a nucleus' width apart: the
nucleus of a CTC is often far dimmer than a leukocyte's blurred into it, and must rise a
fraction of its own height, not the leukocyte's (development seeds 1001-1005: 4 more
doublet and cluster CTCs in out-of-focus frames found, no CTC nucleus in focus split, the
standard cohort unchanged). With two or more maxima it divides
the nucleus between them by a watershed on the DAPI and clears the DAPI bit along the
dividing line, so the split then sees one nucleus per cell.

Smaller merged nuclei (below the cut's ``min_area_px``, down to a CTC's and a leukocyte's
nucleus touching in focus) are cut only between nuclei of unlike cytoplasm
(:class:`CytoplasmContrast`): the mean CK over one side at most a fraction of the other's,
a CTC's nucleus wrapped in CK beside a leukocyte's that is not. Texture maxima of one
nucleus share one cytoplasm, so this cut can use lower limits (development seeds
1001-1004: 3 more CTC-leukocyte doublets in focus found, no false CTC).

Out of focus, a dim CTC nucleus blurred into a bright leukocyte's can be a mere shoulder
on the leukocyte's DAPI, with no maximum to cut at. There a nucleus of an object with CK
is also divided where the cytoplasm ends (``CytoplasmContrast.cytoplasm_seeds``): a
watershed on the CK's gradient from its brightest and dimmest CK pixel over the nucleus,
kept when each part is nucleus-sized and the two parts' cytoplasm is unlike.

The limits keep single nuclei whole: chromatin texture makes maxima too, but closer
together and shallower (development seeds 1001-1002: no CTC nucleus in focus split;
every merged CTC cluster and doublet in out-of-focus frames found at its true count but
one).

The morphology is done here on the small crop of each such nucleus (a few dozen per
cartridge reach the watershed) with OpenCV and NumPy, reproducing the results of
scikit-image's ``measure.label``, ``morphology.h_maxima`` and ``segmentation.watershed``
(as of scikit-image 0.25.2, whose watershed floods from the markers' own heights) result
for result, ties included (the tests compare them): scoring imports neither scikit-image
nor scipy.ndimage, and its cuts no longer depend on which scikit-image is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .io.tiff import apply_affine
from .kernels.threshold import DAPI_BIT

#: Smoothing of the DAPI before looking for maxima (px): noise and fine texture.
SMOOTH_SIGMA_PX = 1.5


@dataclass(frozen=True)
class CytoplasmContrast:
    """The cut of smaller merged nuclei, between nuclei of unlike cytoplasm, for objects
    with CK+ pixels (:func:`ctcimg.segment.segment_frame` passes it for those only; without
    CK there is no cytoplasm to contrast).

    Attributes
    ----------
    page, page_map
        The CK page as stored and its ``(scale, offset, floor)`` map to 12-bit units.
    min_area_px
        Smallest nucleus (DAPI+ pixels) examined; nuclei from this up to the cut's
        ``min_area_px`` are cut only on this contrast.
    h_fraction, min_distance_px
        The maxima's limits for those nuclei (as the cut's own).
    max_ck_ratio
        The cut is kept only when the dimmest part's mean CK is at most this fraction of
        the brightest part's.
    cytoplasm_seeds
        Whether a nucleus that no maxima divide (of any size examined) is divided where the
        cytoplasm ends (:func:`_basins_by_cytoplasm`; each part at least
        ``0.75 * min_area_px``).
    """

    page: np.ndarray
    page_map: np.ndarray
    min_area_px: float
    h_fraction: float
    min_distance_px: float
    max_ck_ratio: float
    cytoplasm_seeds: bool = False


def separate_touching_nuclei(page: np.ndarray, page_map: np.ndarray, labels: np.ndarray,
                             mask: np.ndarray, bbox: np.ndarray, objects: np.ndarray,
                             min_area_px: int, h_fraction: float, min_distance_px: float,
                             max_area_px: float = np.inf,
                             contrast: CytoplasmContrast | None = None) -> int:
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
        A maximum must rise this fraction of the height of the nucleus' second-highest
        crest (its maximum over a ``min_distance_px`` neighbourhood, minus the lowest
        smoothed DAPI in the object) above the saddle to its neighbours.
    min_distance_px
        Of maxima closer than this, only the highest is kept.
    contrast
        How nuclei smaller than ``min_area_px`` are cut, and whether nuclei that no maxima
        divide are divided by their cytoplasm (None: neither).

    Returns
    -------
    int
        How many nuclei were cut.
    """
    h, w = page.shape
    pad = int(np.ceil(3 * SMOOTH_SIGMA_PX))
    cut = 0
    smallest = min_area_px if contrast is None else min(min_area_px, contrast.min_area_px)
    for lab in np.asarray(objects, np.int64):
        r0, c0, r1, c1 = (int(v) for v in bbox[lab])
        own = labels[r0:r1, c0:c1] == lab
        dapi = own & ((mask[r0:r1, c0:c1] & DAPI_BIT) != 0)
        if np.count_nonzero(dapi) < smallest:  # most objects: no nucleus large enough
            continue
        components = _label(dapi)
        sizes = np.bincount(components.ravel())[1:]
        large = np.flatnonzero((sizes >= smallest) & (sizes <= max_area_px)) + 1
        if not len(large):
            continue
        y0, x0, y1, x1 = max(r0 - pad, 0), max(c0 - pad, 0), min(r1 + pad, h), min(c1 + pad, w)
        crop = apply_affine(page[y0:y1, x0:x1], *page_map)
        smooth = cv2.GaussianBlur(crop, (0, 0), SMOOTH_SIGMA_PX)[r0 - y0:r1 - y0,
                                                                 c0 - x0:c1 - x0]
        low = float(smooth[own].min())
        crests_at: dict[float, np.ndarray] = {}
        for component in large:
            by_contrast = sizes[component - 1] < min_area_px
            if by_contrast:
                h_of_crest, distance = contrast.h_fraction, contrast.min_distance_px
            else:
                h_of_crest, distance = h_fraction, min_distance_px
            # maxima of their min_distance_px neighbourhood: with fewer than two the nucleus
            # is whole, and the h-maxima need not be computed (most large nuclei)
            if distance not in crests_at:
                size = max(int(distance) | 1, 3)
                crests_at[distance] = smooth >= cv2.dilate(
                    smooth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
            crest = crests_at[distance]
            nucleus = components == component
            basins = _basins_at_maxima(smooth, nucleus, low, crest, h_of_crest, distance)
            if basins is not None and by_contrast and \
                    not _unlike_cytoplasm(contrast, basins, r0, c0):
                basins = None
            if basins is None and contrast is not None and contrast.cytoplasm_seeds:
                basins = _basins_by_cytoplasm(contrast, nucleus, r0, c0)
            if basins is None:
                continue
            mask[r0:r1, c0:c1][_dividing_line(basins)] &= np.uint8(~DAPI_BIT & 0xFF)
            cut += 1
    return cut


def _basins_at_maxima(smooth: np.ndarray, nucleus: np.ndarray, low: float, crest: np.ndarray,
                      h_fraction: float, min_distance_px: float) -> np.ndarray | None:
    """The nucleus divided between its distant h-maxima by a watershed on the DAPI, or
    None with fewer than two (``crest``: the maxima of their min_distance_px
    neighbourhood; with fewer than two of those the h-maxima need not be computed)."""
    n_crests, crests = cv2.connectedComponents((crest & nucleus).astype(np.uint8))
    if n_crests < 3:
        return None
    # the height of the second-highest crest: a dim CTC nucleus blurred into a bright
    # leukocyte's must rise a fraction of its own height, not the leukocyte's
    tops = np.zeros(n_crests)
    np.maximum.at(tops, crests[crests > 0], smooth[crests > 0])
    height = float(np.sort(tops[1:])[-2]) - low
    if not height > 0:
        return None
    peaks = _h_maxima(np.where(nucleus, smooth, low).astype(np.float64),
                      h_fraction * height) & nucleus
    seeds = _distant_seeds(peaks, smooth, min_distance_px)
    if seeds.max() < 2:
        return None
    return _watershed(-smooth.astype(np.float64), seeds, nucleus)


def _basins_by_cytoplasm(contrast: CytoplasmContrast, nucleus: np.ndarray, r0: int, c0: int
                         ) -> np.ndarray | None:
    """The nucleus divided by a watershed on the CK's gradient between its brightest and
    its dimmest CK pixel, when those lie ``min_distance_px`` apart, each part is a nucleus
    of its own and the two parts' cytoplasm is unlike; None otherwise."""
    rows, cols = nucleus.shape
    restored = apply_affine(contrast.page[r0:r0 + rows, c0:c0 + cols], *contrast.page_map)
    ck = cv2.GaussianBlur(restored, (0, 0), SMOOTH_SIGMA_PX).astype(np.float64)
    inside = np.flatnonzero(nucleus)
    values = ck.ravel()[inside]
    brightest, dimmest = inside[np.argmax(values)], inside[np.argmin(values)]
    if np.hypot(*np.subtract(divmod(brightest, cols), divmod(dimmest, cols))) \
            < contrast.min_distance_px:
        return None
    seeds = np.zeros(nucleus.shape, np.int32)
    seeds.ravel()[brightest] = 1
    seeds.ravel()[dimmest] = 2
    # flooded over the CK's gradient from both ends: the line falls on the cell's rim
    gradient = np.hypot(cv2.Sobel(ck, cv2.CV_64F, 1, 0), cv2.Sobel(ck, cv2.CV_64F, 0, 1))
    basins = _watershed(gradient, seeds, nucleus)
    # each part a nucleus of its own (a sliver of one under a cell's CK is no CTC nucleus)
    if np.bincount(basins.ravel(), minlength=3)[1:].min() < 0.75 * contrast.min_area_px:
        return None
    return basins if _unlike_cytoplasm(contrast, basins, r0, c0, restored) else None


def _unlike_cytoplasm(contrast: CytoplasmContrast, basins: np.ndarray, r0: int, c0: int,
                      ck: np.ndarray | None = None) -> bool:
    """Whether the dimmest basin's mean CK is at most ``max_ck_ratio`` of the brightest's
    (``ck``: the basins' CK crop, restored, when the caller has it)."""
    if ck is None:
        rows, cols = basins.shape
        ck = apply_affine(contrast.page[r0:r0 + rows, c0:c0 + cols], *contrast.page_map)
    n = int(basins.max()) + 1
    pixels = np.bincount(basins.ravel(), minlength=n)[1:]
    mean_ck = np.bincount(basins.ravel(), weights=ck.ravel(), minlength=n)[1:] / pixels
    return bool(mean_ck.min() <= contrast.max_ck_ratio * mean_ck.max())


def _distant_seeds(peaks: np.ndarray, smooth: np.ndarray, min_distance_px: float) -> np.ndarray:
    """Markers 1..k: the peak regions (8-connected), highest first (ties in label order),
    dropping any whose centroid is closer than ``min_distance_px`` to a higher one kept."""
    regions = _label(peaks)
    flat = regions.ravel()
    order = np.argsort(flat, kind="stable")  # each region's pixels in raster order
    starts = np.searchsorted(flat[order], np.arange(1, int(flat.max(initial=0)) + 2))
    members = [order[a:b] for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(),
                                          strict=True)]
    width = peaks.shape[1]
    # sums of integer coordinates are exact: the same centroid as regionprops' mean
    centroids = [np.stack([m // width, m % width], axis=1).astype(np.float64).mean(axis=0)
                 for m in members]
    highest = [float(smooth.ravel()[m].max()) for m in members]
    kept: list[int] = []
    for region in sorted(range(len(members)), key=lambda r: -highest[r]):
        if all(np.hypot(*(centroids[region] - centroids[k])) >= min_distance_px for k in kept):
            kept.append(region)
    seeds = np.zeros(peaks.shape, np.int32)
    for index, region in enumerate(kept, start=1):
        seeds.ravel()[members[region]] = index
    return seeds


def _label(binary: np.ndarray) -> np.ndarray:
    """8-connected components of ``binary``, int32, numbered 1.. in the raster order of
    their first pixel (as ``skimage.measure.label(binary, connectivity=2)``)."""
    n, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8,
                                        ltype=cv2.CV_32S)
    if n <= 2:
        return labels
    flat = labels.ravel()
    found, first = np.unique(flat, return_index=True)
    renumber = np.zeros(n, np.int32)
    foreground = found > 0
    renumber[found[foreground][np.argsort(first[foreground])]] = np.arange(1, n, dtype=np.int32)
    return renumber[labels]


def _h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """The maxima of the float64 ``image`` of height ``h`` or more (8-neighbourhood), uint8
    0/1, as ``skimage.morphology.h_maxima``: the image minus its reconstruction by
    dilation from ``image - h`` (less a few ulps) is ``h`` or more there."""
    if h > np.ptp(image):
        return np.zeros(image.shape, np.uint8)
    resolution = 2 * np.finfo(image.dtype).resolution * np.abs(image)
    shifted = image - h - resolution
    return ((image - _reconstruct_by_dilation(shifted, image)) >= h).astype(np.uint8)


def _reconstruct_by_dilation(seed: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Greyscale reconstruction of ``seed`` under ``limit`` (3 × 3 neighbourhood): geodesic
    dilations repeated until nothing changes. Its values are picked, never computed, so
    any algorithm gives the same result as scikit-image's."""
    square = np.ones((3, 3), np.uint8)
    current = np.minimum(seed, limit)
    while True:
        grown = np.minimum(cv2.dilate(current, square), limit)
        if np.array_equal(grown, current):
            return current
        current = grown


def _watershed(image: np.ndarray, markers: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Flood the float64 ``image`` from ``markers`` (int32, 0 = none) over ``inside``
    (4-neighbourhood), as ``skimage.segmentation.watershed(image, markers, mask=inside)``.

    The same priority flood: marker pixels (raster order) enter a binary heap ordered by
    (value, age) at age 0; a popped pixel labels every unlabelled neighbour inside (up,
    left, right, down) with its own label and pushes it at the larger of the two values
    with the next age. The heap is scikit-image's own (same sift rules), so even markers
    tied in value come out in its order.
    """
    height, width = image.shape
    stride = width + 2
    value = np.pad(image, 1).ravel().tolist()
    allowed = np.pad(inside, 1).ravel().tolist()
    output = np.pad(markers * inside, 1).ravel()
    label = output.tolist()
    heap: list[tuple[float, int, int]] = []
    for index in np.flatnonzero(output).tolist():
        _heap_push(heap, (value[index], 0, index))
    age = 1
    while heap:
        level, _, index = _heap_pop(heap)
        for neighbour in (index - stride, index - 1, index + 1, index + stride):
            if not allowed[neighbour] or label[neighbour]:
                continue
            age += 1
            label[neighbour] = label[index]
            _heap_push(heap, (max(value[neighbour], level), age, neighbour))
    return np.array(label, np.int32).reshape(height + 2, stride)[1:-1, 1:-1]


def _heap_push(heap: list, item: tuple) -> None:
    """Push onto a min-heap of (value, age, index) compared on (value, age) alone."""
    heap.append(item)
    child = len(heap) - 1
    while child > 0:
        parent = (child + 1) // 2 - 1
        if heap[child][:2] < heap[parent][:2]:
            heap[child], heap[parent] = heap[parent], heap[child]
            child = parent
        else:
            break


def _heap_pop(heap: list) -> tuple:
    """Pop the smallest item of a :func:`_heap_push` heap: the last item moves to the top
    and sinks, each time past the smaller of its children (the left one on a tie)."""
    top = heap[0]
    last = heap.pop()
    if not heap:
        return top
    heap[0] = last
    i = 0
    n = len(heap)
    while True:
        left, right = 2 * i + 1, 2 * i + 2
        if left >= n:
            break
        smallest = left if heap[left][:2] < heap[i][:2] else i
        if right < n and heap[right][:2] < heap[smallest][:2]:
            smallest = right
        if smallest == i:
            break
        heap[i], heap[smallest] = heap[smallest], heap[i]
        i = smallest
    return top


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
