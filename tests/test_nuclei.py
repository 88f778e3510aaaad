"""Nuclei blurred together are separated between their DAPI maxima (ctcimg.nuclei)."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

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
