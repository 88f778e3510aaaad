"""Nuclei blurred together are separated between their DAPI maxima (ctcimg.nuclei)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure, morphology, segmentation

from ctcimg import nuclei
from ctcimg.kernels.threshold import CK_BIT, DAPI_BIT
from ctcimg.nuclei import separate_touching_nuclei
from ctcimg.segment import SegmentParams, segment_frame

IDENTITY_MAP = np.array([1.0, 0.0, -np.inf], dtype=np.float32)
SIZE = (120, 160)


def _discs(centres, radius: float, sigma: float, level: float = 900.0) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE[0], :SIZE[1]]
    image = np.zeros(SIZE, np.float32)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = 1.0
    return 100.0 + level * cv2.GaussianBlur(image, (0, 0), sigma)


def _object_of(dapi: np.ndarray, level: float):
    nucleus = dapi > level
    labels = np.zeros(SIZE, np.int32)
    labels[ndi.binary_dilation(nucleus, iterations=6)] = 1
    mask = np.where(nucleus, DAPI_BIT | CK_BIT, 0).astype(np.uint8)
    rows, cols = np.nonzero(labels)
    bbox = np.array([[0, 0, 0, 0], [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]])
    return labels, mask, bbox


def _components(mask: np.ndarray) -> int:
    return int(ndi.label((mask & DAPI_BIT) != 0, structure=np.ones((3, 3)))[1])


def test_two_blurred_nuclei_are_cut_apart_between_their_maxima():
    dapi = _discs([(60, 69), (60, 91)], radius=8, sigma=4.0)  # 22 px apart, one component
    labels, mask, bbox = _object_of(dapi, 350.0)
    assert _components(mask) == 1
    cut = separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                   min_area_px=200, h_fraction=0.1, min_distance_px=12)
    assert cut == 1 and _components(mask) == 2
    # each side keeps its own maximum
    parts = ndi.label((mask & DAPI_BIT) != 0, structure=np.ones((3, 3)))[0]
    assert parts[60, 69] != parts[60, 91] and parts[60, 69] and parts[60, 91]


def test_a_dim_nucleus_blurred_into_a_bright_one_is_cut_off():
    # a CTC's nucleus at a third of a stuck leukocyte's brightness: its maximum rises little
    # above the saddle next to the leukocyte's height, much next to its own
    dapi = (_discs([(60, 70)], radius=8, sigma=4.0, level=300.0)
            + _discs([(60, 90)], radius=6, sigma=4.0, level=2500.0) - 100.0)
    labels, mask, bbox = _object_of(dapi, 180.0)
    assert _components(mask) == 1
    cut = separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                   min_area_px=200, h_fraction=0.1, min_distance_px=12)
    parts = ndi.label((mask & DAPI_BIT) != 0, structure=np.ones((3, 3)))[0]
    assert cut == 1 and _components(mask) == 2
    assert parts[60, 70] != parts[60, 90] and parts[60, 70] and parts[60, 90]


def test_a_textured_single_nucleus_stays_whole():
    rng = np.random.default_rng(3)
    dapi = _discs([(60, 80)], radius=12, sigma=1.2)
    texture = cv2.GaussianBlur(rng.normal(0, 1, SIZE).astype(np.float32), (0, 0), 2.0)
    dapi = dapi + 60.0 * texture / texture.std() * (dapi > 300)
    labels, mask, bbox = _object_of(dapi, 400.0)
    before = mask.copy()
    cut = separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                   min_area_px=200, h_fraction=0.1, min_distance_px=12)
    assert cut == 0 and np.array_equal(mask, before)


def test_small_or_close_maxima_are_not_cut():
    dapi = _discs([(60, 72), (60, 82)], radius=6, sigma=3.0)  # maxima 10 px apart
    labels, mask, bbox = _object_of(dapi, 400.0)
    kwargs = dict(h_fraction=0.1, min_distance_px=12)
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    min_area_px=50, **kwargs) == 0
    far = _discs([(60, 69), (60, 91)], radius=8, sigma=4.0)
    labels, mask, bbox = _object_of(far, 350.0)
    assert separate_touching_nuclei(far, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    min_area_px=10 ** 6, **kwargs) == 0  # below the area


def test_segment_frame_finds_two_cells_in_a_defocused_doublet():
    dapi = _discs([(60, 68), (60, 92)], radius=8, sigma=4.0)
    ck = _discs([(60, 68), (60, 92)], radius=14, sigma=4.0, level=600.0)
    frame = np.stack([dapi, ck, np.full(SIZE, 100, np.float32),
                      np.full(SIZE, 100, np.float32)])
    split = segment_frame(frame, 0.64)
    merged = segment_frame(frame, 0.64, SegmentParams(split_nucleus_min_um2=np.inf))
    assert len(split["label"]) == 2 and len(merged["label"]) == 1
    assert sorted(np.round(split["x_px"] / 10)) == [7, 9]



def _ck_around(centre, level: float, radius: float = 11) -> np.ndarray:
    """A CK page: a cytoplasm of ``level`` around the nucleus at ``centre`` only."""
    return _discs([centre], radius=radius, sigma=1.2, level=level)


def _contrast(ck: np.ndarray, **limits) -> nuclei.CytoplasmContrast:
    values = dict(min_area_px=40, h_fraction=0.02, min_distance_px=6.0, max_ck_ratio=0.5)
    values.update(limits)
    return nuclei.CytoplasmContrast(ck, IDENTITY_MAP, **values)


def test_a_small_merged_nucleus_is_cut_only_between_unlike_cytoplasm():
    # in focus, a CTC nucleus (in CK) touching a leukocyte's (no CK): one DAPI component
    # below the cut's minimum area, maxima 13 px apart
    dapi = _discs([(60, 72)], radius=7, sigma=1.2) + _discs([(60, 85)], radius=5, sigma=1.2,
                                                             level=1400.0) - 100.0
    labels, mask, bbox = _object_of(dapi, 400.0)
    assert _components(mask) == 1
    size = int(np.count_nonzero(mask & DAPI_BIT))
    limits = dict(min_area_px=size + 1, h_fraction=0.1, min_distance_px=12)
    before = mask.copy()
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    **limits) == 0  # too small for the cut itself
    # the same cytoplasm over both: texture of one cell as far as CK can tell, kept whole
    alike = _discs([(60, 78)], radius=16, sigma=1.2, level=600.0)
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    **limits, contrast=_contrast(alike)) == 0
    assert np.array_equal(mask, before)
    # CK around the CTC's nucleus only: cut, each nucleus on its own side
    unlike = _ck_around((60, 70), 600.0)
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    **limits, contrast=_contrast(unlike)) == 1
    parts = ndi.label((mask & DAPI_BIT) != 0, structure=np.ones((3, 3)))[0]
    assert _components(mask) == 2 and parts[60, 72] != parts[60, 85] and parts[60, 85]
    # a stricter ratio than the two sides' CK keeps it whole
    mask[:] = before
    ratio = float(np.mean(unlike[55:66, 82:89]) / np.mean(unlike[53:68, 65:78]))
    assert separate_touching_nuclei(
        dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]), **limits,
        contrast=_contrast(unlike, max_ck_ratio=0.5 * ratio)) == 0


def test_segment_frame_splits_a_ctc_from_a_leukocyte_touching_it_in_focus():
    # nuclei touching as one DAPI component of ~98 µm², below the cut's 100 µm²
    dapi = _discs([(60, 72)], radius=7, sigma=1.2) + _discs([(60, 84.5)], radius=5, sigma=1.2,
                                                             level=1400.0) - 100.0
    ck = _ck_around((60, 66), 600.0, radius=12)
    frame = np.stack([dapi, ck, np.full(SIZE, 100, np.float32),
                      np.full(SIZE, 100, np.float32)])
    split = segment_frame(frame, 0.64)
    merged = segment_frame(frame, 0.64, SegmentParams(contrast_split_min_um2=np.inf))
    assert len(merged["label"]) == 1 and merged["nucleus_in_ck_fraction"][0] < 0.9
    assert len(split["label"]) == 2
    ctc = int(np.argmax(split["ck_mean"]))
    assert split["nucleus_in_ck_fraction"][ctc] > 0.9 and split["x_px"][ctc] < 75



def _defocused_ctc_beside_a_leukocyte() -> np.ndarray:
    """Out of focus, a dim CTC nucleus blurred into a bright leukocyte's: a shoulder on the
    leukocyte's DAPI, no maximum of its own."""
    return (_discs([(60, 72)], radius=7, sigma=4.0, level=500.0)
            + _discs([(60, 86)], radius=6, sigma=4.0, level=2500.0) - 100.0)


def test_a_nucleus_without_its_own_maximum_is_cut_where_the_cytoplasm_ends():
    dapi = _defocused_ctc_beside_a_leukocyte()
    labels, mask, bbox = _object_of(dapi, 250.0)
    assert _components(mask) == 1
    before = mask.copy()
    limits = dict(min_area_px=100, h_fraction=0.02, min_distance_px=10)
    ck = _discs([(60, 68)], radius=13, sigma=4.0, level=600.0)  # the CTC's cytoplasm
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    **limits, contrast=_contrast(ck)) == 0  # one maximum
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    **limits, contrast=_contrast(ck, cytoplasm_seeds=True)) == 1
    parts = ndi.label((mask & DAPI_BIT) != 0, structure=np.ones((3, 3)))[0]
    assert _components(mask) == 2 and parts[60, 72] != parts[60, 86] and parts[60, 72]
    # one cytoplasm over both nuclei: kept whole
    mask[:] = before
    alike = _discs([(60, 79)], radius=20, sigma=4.0, level=600.0)
    assert separate_touching_nuclei(dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]),
                                    **limits, contrast=_contrast(alike, cytoplasm_seeds=True)) == 0
    # a CK+ cell over a sliver of the nucleus only: the sliver is no nucleus of its own
    sliver = _discs([(60, 50)], radius=14, sigma=4.0, level=600.0)
    for smallest, cut in ((1, 1), (40, 0)):
        mask[:] = before
        assert separate_touching_nuclei(
            dapi, IDENTITY_MAP, labels, mask, bbox, np.array([1]), **limits,
            contrast=_contrast(sliver, cytoplasm_seeds=True, min_area_px=smallest)) == cut


def test_segment_frame_cuts_by_cytoplasm_in_out_of_focus_frames_only():
    dapi = _defocused_ctc_beside_a_leukocyte()
    ck = _discs([(60, 68)], radius=13, sigma=4.0, level=600.0)
    frame = np.stack([dapi, ck, np.full(SIZE, 100, np.float32),
                      np.full(SIZE, 100, np.float32)])
    out_of_focus = SegmentParams().out_of_focus()
    assert out_of_focus.split_by_cytoplasm and not SegmentParams().split_by_cytoplasm
    split = segment_frame(frame, 0.64, out_of_focus)
    merged = segment_frame(frame, 0.64, SegmentParams(defocus_split_by_cytoplasm=False)
                           .out_of_focus())
    assert len(merged["label"]) == 1 and len(split["label"]) == 2
    ctc = int(np.argmax(split["ck_mean"]))
    assert split["nucleus_in_ck_fraction"][ctc] > 0.9 and split["x_px"][ctc] < 75
    assert len(segment_frame(frame, 0.64)["label"]) == 1  # in focus: no such cut

@pytest.mark.parametrize("bad", [dict(contrast_split_min_um2=-1.0), dict(contrast_split_h=0.0),
                                 dict(contrast_split_min_distance_um=-1.0),
                                 dict(contrast_split_max_ck_ratio=1.5)])
def test_contrast_cut_limits_are_checked(bad):
    with pytest.raises(ValueError, match="contrast_split"):
        SegmentParams(**bad)


# The morphology of ctcimg.nuclei against scikit-image, whose results it reproduces.

def _blobs(rng: np.random.Generator, shape: tuple[int, int], levels: int | None) -> np.ndarray:
    """A smooth random relief (several blurred maxima), quantised to ``levels`` values when
    given so that plateaus and ties are common."""
    image = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 2.0)
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
    return np.round(image * levels) / levels if levels else image


@pytest.mark.parametrize("seed", range(40))
def test_label_numbers_components_as_skimage(seed):
    rng = np.random.default_rng(seed)
    binary = rng.random((int(rng.integers(1, 60)), int(rng.integers(1, 60)))) < rng.random()
    assert np.array_equal(nuclei._label(binary), measure.label(binary, connectivity=2))


@pytest.mark.parametrize("seed", range(40))
def test_h_maxima_equals_skimage(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 70)), int(rng.integers(3, 70)))
    image = _blobs(rng, shape, [None, 7, 40][seed % 3]).astype(np.float64) * 900.0
    for h in (0.5, 0.05 * np.ptp(image), 0.1 * np.ptp(image) + 1e-9, 0.3 * np.ptp(image),
              np.ptp(image) + 1.0):
        if h > 0:
            assert np.array_equal(nuclei._h_maxima(image, h), morphology.h_maxima(image, h))


@pytest.mark.parametrize("seed", range(60))
def test_watershed_equals_skimage_ties_included(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(4, 60)), int(rng.integers(4, 60)))
    # quantised reliefs: many pixels, and many markers, tie in value
    image = -_blobs(rng, shape, [None, 3, 12][seed % 3]).astype(np.float64)
    inside = _blobs(rng, shape, None) < rng.uniform(0.5, 1.0)
    markers = np.zeros(shape, np.int32)
    for label in range(1, int(rng.integers(2, 6))):
        rows = rng.integers(0, shape[0], int(rng.integers(1, 6)))
        cols = rng.integers(0, shape[1], len(rows))
        markers[rows, cols] = label
    expected = segmentation.watershed(image, markers, mask=inside)
    assert np.array_equal(nuclei._watershed(image, markers, inside), expected)


def _skimage_seeds(peaks: np.ndarray, smooth: np.ndarray, min_distance_px: float) -> np.ndarray:
    """ctcimg's former ``_distant_seeds``, written with skimage.measure.regionprops."""
    regions = measure.regionprops(measure.label(peaks, connectivity=2), intensity_image=smooth)
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


@pytest.mark.parametrize("seed", range(30))
def test_distant_seeds_equal_the_regionprops_version(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 70)), int(rng.integers(5, 70)))
    smooth = _blobs(rng, shape, [None, 20][seed % 2]).astype(np.float32)
    peaks = morphology.h_maxima(smooth.astype(np.float64), 0.02) & (rng.random(shape) < 0.9)
    for distance in (0.0, 3.0, 7.5, 12.0):
        assert np.array_equal(nuclei._distant_seeds(peaks, smooth, distance),
                              _skimage_seeds(peaks, smooth, distance))


def _skimage_separation(page, labels, mask, bbox, objects, **kwargs) -> int:
    """separate_touching_nuclei with scikit-image's label, h_maxima, watershed and the
    regionprops seeds in place of ctcimg's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nuclei, "_label", lambda binary: measure.label(binary, connectivity=2))
        patch.setattr(nuclei, "_h_maxima", morphology.h_maxima)
        patch.setattr(nuclei, "_watershed", lambda image, markers, inside:
                      segmentation.watershed(image, markers, mask=inside))
        patch.setattr(nuclei, "_distant_seeds", _skimage_seeds)
        return separate_touching_nuclei(page, IDENTITY_MAP, labels, mask, bbox, objects,
                                        **kwargs)


@pytest.mark.parametrize("seed", range(12))
def test_separation_cuts_as_with_skimage_on_blurred_clusters(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 5))
    centres = [(60 + rng.uniform(-12, 12), 80 + rng.uniform(-30, 30)) for _ in range(count)]
    dapi = _discs(centres, radius=rng.uniform(5, 9), sigma=rng.uniform(2.5, 4.5))
    dapi = dapi + rng.normal(0, 8, SIZE).astype(np.float32)
    if seed % 3 == 0:
        dapi = np.round(dapi / 16) * 16  # coarse levels: plateaus and tied maxima
    labels, mask, bbox = _object_of(dapi, 350.0)
    kwargs = dict(min_area_px=100, h_fraction=0.1, min_distance_px=float(rng.uniform(6, 14)))
    ours, theirs = mask.copy(), mask.copy()
    cut = separate_touching_nuclei(dapi, IDENTITY_MAP, labels, ours, bbox, np.array([1]),
                                   **kwargs)
    assert cut == _skimage_separation(dapi, labels, theirs, bbox, np.array([1]), **kwargs)
    assert np.array_equal(ours, theirs)
