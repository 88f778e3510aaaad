"""Frame blur and blur-corrected size (ctcimg.focus), and the gate's use of them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ctcimg.focus import MIN_LEUKOCYTES, ck_extent_um, frame_blur, window_moments
from ctcimg.gate import GateParams, gate
from ctcimg.segment import segment_frame

IDENTITY_MAP = np.array([1.0, 0.0, -np.inf], dtype=np.float32)


def _blurred_disc(radius: float, sigma: float, size: int = 81, level: float = 800.0,
                  background: float = 100.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius ** 2).astype(np.float32)
    return background + level * cv2.GaussianBlur(disc, (0, 0), sigma)


@pytest.mark.parametrize("radius, sigma", [(5.5, 1.2), (5.5, 3.5), (2.0, 1.0), (2.0, 4.0)])
def test_a_blur_adds_two_sigma_squared_to_the_second_moment(radius, sigma):
    page = _blurred_disc(radius, sigma)
    labels = np.zeros(page.shape, np.int32)
    moment = window_moments(page, IDENTITY_MAP, labels, np.array([1]), np.array([40.0]),
                            np.array([40.0]))[0]
    disc = (_blurred_disc(radius, 1e-3) > 500).sum() / np.pi  # the discrete disc's R²
    # tails beyond the 15 px window are lost: a few % at sigma 4
    assert moment == pytest.approx(disc / 2 + 2 * sigma ** 2, rel=0.06)


def test_the_moment_leaves_out_other_events_and_the_frame_border():
    lone = _blurred_disc(4.0, 1.0)
    page = lone.copy()
    page[44:50, 50:56] += 3000.0  # a bright neighbour inside the window (5 % of it)
    labels = np.zeros(page.shape, np.int32)
    labels[44:50, 50:56] = 2
    alone = window_moments(lone, IDENTITY_MAP, labels * 0, np.array([1]), np.array([40.0]),
                           np.array([40.0]))[0]
    with_neighbour = window_moments(page, IDENTITY_MAP, labels, np.array([1, 1]),
                                    np.array([40.0, 10.0]), np.array([40.0, 40.0]))
    assert with_neighbour[0] == pytest.approx(alone, rel=1e-3)
    assert np.isnan(with_neighbour[1])  # window leaves the frame
    labels[30:52, 50:60] = 2  # neighbours now cover 20 % of the window: not measured
    assert np.isnan(window_moments(page, IDENTITY_MAP, labels, np.array([1]), np.array([40.0]),
                                   np.array([40.0]))[0])


def _disc_at(radius: float, sigma: float, cy: int, cx: int, shape=(81, 81)) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2).astype(np.float32)
    return 100.0 + 800.0 * cv2.GaussianBlur(disc, (0, 0), sigma)


@pytest.mark.parametrize("radius, sigma", [(5.5, 1.2), (5.5, 3.5), (1.5, 3.5)])
def test_at_a_frame_border_the_moment_along_it_keeps_a_cut_cell_large_and_a_speck_small(
        radius, sigma):
    labels = np.zeros((81, 81), np.int32)
    whole = window_moments(_disc_at(radius, sigma, 40, 40), IDENTITY_MAP, labels,
                           np.array([1]), np.array([40.0]), np.array([40.0]))[0]
    for cy, cx in ((4, 40), (40, 76), (12, 40)):  # cut by the top / right border, and near it
        page = _disc_at(radius, sigma, cy, cx)
        args = (page, IDENTITY_MAP, labels, np.array([1]), np.array([float(cy)]),
                np.array([float(cx)]))
        assert np.isnan(window_moments(*args)[0])  # not measured unless asked
        at_border = window_moments(*args, along_border=True)[0]
        # the slow way: twice the variance along the border of the visible signal
        dy, dx = np.mgrid[:81, :81] - np.array([cy, cx])[:, None, None]
        inner = dy ** 2 + dx ** 2 <= 15 ** 2
        along = dx if cy < 40 else dy
        weight = np.where(inner, page - 100.0, 0.0)
        slow = 2 * ((weight * along ** 2).sum() / weight.sum()
                    - ((weight * along).sum() / weight.sum()) ** 2)
        assert at_border == pytest.approx(slow, rel=0.02)
        assert at_border == pytest.approx(whole, rel=0.12)
    corner = _disc_at(radius, sigma, 5, 5)
    assert np.isnan(window_moments(corner, IDENTITY_MAP, labels, np.array([1]),
                                   np.array([5.0]), np.array([5.0]), along_border=True)[0])


def test_stored_pages_are_restored_before_the_moment():
    page = _blurred_disc(5.0, 2.0)
    stored = np.round(page / 2.0).astype(np.uint16)
    labels = np.zeros(page.shape, np.int32)
    args = (labels, np.array([1]), np.array([40.0]), np.array([40.0]))
    restored = window_moments(stored.astype(np.float32) * 2.0, IDENTITY_MAP, *args)
    mapped = window_moments(stored, np.array([2.0, 0.0, -np.inf], np.float32), *args)
    assert mapped == pytest.approx(restored, rel=1e-12)


def test_frame_blur_is_relative_to_the_cartridge_usual_focus():
    frames = np.repeat([1, 2, 3, 4], 10)
    moments = np.concatenate([np.full(10, 20.0), np.full(10, 21.0), np.full(10, 19.0),
                              np.full(10, 45.0)])
    moments[35:] = np.nan  # frame 4 has 5 measured leukocytes: still enough
    blur = frame_blur(frames, moments)
    assert list(blur[::10]) == [-0.5, 0.5, -1.5, 24.5]
    moments[34] = np.nan  # 4 measured: no estimate for frame 4
    assert MIN_LEUKOCYTES == 5 and np.isnan(frame_blur(frames, moments)[30:]).all()


def test_ck_extent_removes_only_the_extra_blur():
    # a 7 µm disc at 0.64 µm/px: R = 5.47 px, m = R²/2 = 14.95 px²; 2σ² extra of 20 px²
    extent = ck_extent_um(np.array([14.95 + 20.0, 14.95, 14.95]), np.array([20.0, -3.0, np.nan]),
                          0.64)
    assert extent == pytest.approx([7.0, 7.0, 7.0], abs=0.01)


def _candidate(**columns):
    base = dict(diameter_um=8.0, ck_area_um2=40.0, ck_mean=300.0, dapi_area_um2=20.0,
                nucleus_in_ck_fraction=1.0, ck_covered_by_nucleus_fraction=0.5,
                nucleus_offset_um=0.2, cd45_mean=3.0, cd45_ring=3.0, cd45_around_nucleus=0.0,
                circularity=1.0, aspect_ratio=1.05)
    base.update(columns)
    n = max(np.size(v) for v in base.values())
    return {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in base.items()}


def test_gate_judges_size_by_the_ck_extent_only_out_of_focus():
    # a blurred speck (extent 6.5 µm) and a CTC (9 µm), each in and out of focus
    events = _candidate(frame_blur_px2=[20.0, 20.0, 1.0, np.nan],
                        ck_extent_um=[6.5, 9.0, 6.5, 6.5])
    is_ctc, reason = gate(events)
    assert list(reason) == ["too_small", "", "", ""]
    assert gate(events, GateParams(defocus_blur_px2=np.inf))[0].all()
    older = _candidate()  # an events table from before the focus features: no check
    assert gate(older)[0].all()


def test_segment_frame_measures_moments_of_candidates_and_leukocytes():
    frame = np.full((4, 120, 160), 100, np.float32)
    yy, xx = np.mgrid[:120, :160]
    ctc = (yy - 60) ** 2 + (xx - 50) ** 2
    frame[0][ctc < 25] += 800  # nucleus
    frame[1][ctc < 80] += 600  # cytoplasm
    leukocyte = (yy - 60) ** 2 + (xx - 115) ** 2
    frame[0][leukocyte < 49] += 700
    frame[2][(leukocyte >= 49) & (leukocyte < 81)] += 400  # CD45 membrane
    ev = segment_frame(frame, 0.64)
    order = np.argsort(ev["x_px"])
    assert np.isfinite(ev["ck_moment_px2"][order[0]]) and np.isnan(ev["dapi_moment_px2"][order[0]])
    assert np.isnan(ev["ck_moment_px2"][order[1]]) and np.isfinite(ev["dapi_moment_px2"][order[1]])
    # the CTC's CK: a disc of R² = 80 px² has m = 40; the kernel's CK boundary is sharp here
    assert ev["ck_moment_px2"][order[0]] == pytest.approx(40.0, rel=0.1)


def _reference_moments(page, page_map, labels, event_labels, y_px, x_px):
    """window_moments in plain NumPy: gathers by flat offsets, the ring's median by sorting."""
    from ctcimg import focus
    from ctcimg.io.tiff import apply_affine

    h, w = page.shape
    out = np.full(len(event_labels), np.nan)
    cy = np.rint(np.asarray(y_px, float)).astype(np.int64)
    cx = np.rint(np.asarray(x_px, float)).astype(np.int64)
    r = focus.RING_PX
    rows = np.flatnonzero((cy >= r) & (cy < h - r) & (cx >= r) & (cx < w - r))
    if not len(rows):
        return out
    offsets = (focus._DY * w + focus._DX).ravel()
    centres = (cy[rows] * w + cx[rows])[:, None]
    ring_at = centres + offsets[focus._RING_FLAT]
    inner_at = centres + offsets[focus._INNER_FLAT]
    free_ring = np.take(labels.ravel(), ring_at) == 0
    inner_labels = np.take(labels.ravel(), inner_at)
    inner_usable = (inner_labels == 0) | (inner_labels == np.asarray(event_labels)[rows, None])
    ring = np.sort(np.where(free_ring, apply_affine(np.take(page.ravel(), ring_at), *page_map),
                            np.nan), axis=1)
    n_free = free_ring.sum(axis=1)
    enough_ring = n_free >= 0.2 * focus._RING_FLAT.size
    at = np.arange(len(rows))
    lower = ring[at, np.maximum((n_free - 1) // 2, 0)]
    upper = ring[at, np.maximum(n_free // 2, 0)]
    background = np.where(enough_ring, (lower + upper) / 2, 0.0).astype(np.float32)
    uncrowded = inner_usable.mean(axis=1) >= 1.0 - focus.MAX_CROWDING
    value = apply_affine(np.take(page.ravel(), inner_at), *page_map)
    weight = np.where(inner_usable, value - background[:, None], 0.0)
    sums = weight.astype(np.float64) @ focus._POWERS
    with np.errstate(all="ignore"):
        total = sums[:, 0]
        moment = sums[:, 3] / total - (sums[:, 1] / total) ** 2 - (sums[:, 2] / total) ** 2
    out[rows] = np.where(enough_ring & uncrowded & (total > 0), moment, np.nan)
    return out


@pytest.mark.parametrize("dtype, page_map", [
    (np.uint8, (3.7, 21.5, -np.inf)), (np.uint16, (1.0, -32768.0, 0.0)),
    (np.float32, (1.0, 0.0, -np.inf)), (np.uint8, (1.0, 0.0, -np.inf))])
@pytest.mark.parametrize("seed", range(3))
def test_window_moments_equal_the_numpy_reference(dtype, page_map, seed):
    """Bit for bit, on crowded random frames: ties in the ring, rings of even and odd free
    pixel counts, too few free ring pixels, crowded windows, windows leaving the frame."""
    rng = np.random.default_rng(seed)
    h, w = 150, 170
    base = 32768 if dtype == np.uint16 else 0  # below it: clamped by the 16-bit map
    page = (base + rng.integers(-20 if base else 30, 60, (h, w))).astype(dtype)
    page[rng.random((h, w)) < 0.3] = page.flat[0]  # ties
    labels = np.zeros((h, w), np.int32)
    n = 25
    y_px, x_px = rng.uniform(0, h, n), rng.uniform(0, w, n)
    for lab in range(1, n + 1):
        y, x = int(y_px[lab - 1]), int(x_px[lab - 1])
        size = int(rng.integers(1, 6))
        labels[max(y - size, 0):y + size, max(x - size, 0):x + size] = lab
        spot = page[max(y - size, 0):y + size, max(x - size, 0):x + size]
        spot[...] = base + 200 + spot % 7  # bright, with ties
    event_labels = np.concatenate([np.arange(1, n + 1), rng.integers(1, n + 1, 10)])
    y_px = np.concatenate([y_px, rng.uniform(0, h, 10)])
    x_px = np.concatenate([x_px, rng.uniform(0, w, 10)])
    page_map = np.array(page_map, np.float32)
    expected = _reference_moments(page, page_map, labels, event_labels, y_px, x_px)
    got = window_moments(page, page_map, labels, event_labels, y_px, x_px)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got).sum() >= 5 and np.isnan(got).sum() >= 5

