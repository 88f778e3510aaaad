"""Each numba kernel equals a slow, obviously-correct NumPy / SciPy / scikit-image reference."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure

from ctcimg.io.tiff import OFFSET_16BIT, StoredFrame
from ctcimg.kernels import background as bgk
from ctcimg.kernels import label as labk
from ctcimg.kernels import split as splk
from ctcimg.kernels import threshold as thrk
from ctcimg.segment import SegmentParams, frame_background, segment_frame

#: (scale, offset, floor) of a channel already on the 12-bit scale.
IDENTITY_MAP = np.array([1.0, 0.0, -np.inf], dtype=np.float32)

# --------------------------------------------------------------------------- references


def ref_edges(n, tile):
    count = max(1, int(round(n / tile)))
    return [(i * n) // count for i in range(count + 1)]


def ref_tile_stats(img, tile, stride, q):
    """Tile order statistic and 1.4826·MAD, by sorting every tile's subsample."""
    re, ce = ref_edges(img.shape[0], tile), ref_edges(img.shape[1], tile)
    off = stride // 2
    bg = np.zeros((len(re) - 1, len(ce) - 1))
    sg = np.zeros_like(bg)
    for i in range(len(re) - 1):
        for j in range(len(ce) - 1):
            block = img[re[i]:re[i + 1], ce[j]:ce[j + 1]]
            s = block[off::stride, off::stride].astype(np.float64).ravel()
            if s.size == 0:
                s = block[:1, :1].astype(np.float64).ravel()
            srt = np.sort(s)
            n = s.size
            bg[i, j] = srt[int(q * (n - 1))]
            sg[i, j] = 1.4826 * np.median(np.abs(s - np.median(s)))
    return bg, sg


def ref_bilinear(grid, shape, tile):
    """Full-resolution bilinear interpolation between tile centres, linear extrapolation."""
    h, w = shape
    re, ce = np.array(ref_edges(h, tile)), np.array(ref_edges(w, tile))
    cy = (re[:-1] + re[1:] - 1) / 2.0
    cx = (ce[:-1] + ce[1:] - 1) / 2.0

    def axis(centres, n):
        p = np.arange(n, dtype=np.float64)
        m = len(centres)
        if m == 1:
            return np.zeros(n, int), np.zeros(n, int), np.zeros(n)
        lo = np.clip((centres[None, :] <= p[:, None]).sum(1) - 1, 0, m - 2)
        t = (p - centres[lo]) / (centres[lo + 1] - centres[lo])
        return lo, lo + 1, t

    y0, y1, ty = axis(cy, h)
    x0, x1, tx = axis(cx, w)
    g = np.asarray(grid, dtype=np.float64)
    rows = (1 - ty)[:, None] * g[y0] + ty[:, None] * g[y1]  # (h, nx)
    return (1 - tx)[None, :] * rows[:, x0] + tx[None, :] * rows[:, x1]


def ref_mask(frame, params):
    """DAPI/CK bit mask of a frame, from the reference background and a SciPy 3×3 mean."""
    bgs, sgs = [], []
    for c in range(2):
        g, s = ref_tile_stats(frame[c], params.tile_px, params.tile_stride,
                              params.background_quantile)
        bgs.append(ref_bilinear(g, frame.shape[1:], params.tile_px))
        sgs.append(np.median(s[::2, ::2]))
    scale = 1 / 3 if params.smooth else 1.0
    thr = (max(params.dapi_k * sgs[0] * scale, params.dapi_floor),
           max(params.ck_k * sgs[1] * scale, params.ck_floor))
    mask = np.zeros(frame.shape[1:], np.uint8)
    margin = np.zeros(frame.shape[1:])
    for c, bit in ((0, 1), (1, 2)):
        img = frame[c].astype(np.float64)
        sm = ndi.uniform_filter(img, 3, mode="nearest") if params.smooth else img
        v = sm - bgs[c] - thr[c]
        mask |= np.where(v > 0, bit, 0).astype(np.uint8)
        margin = np.maximum(margin, (np.abs(v) < 1e-3).astype(float))  # float32 sums
    mask[mask > 0] |= 4
    return mask, margin > 0


def ref_corrected(frame, params, smooth):
    """(3 × 3 mean of the) channel minus the reference background, float64, all channels."""
    out = np.empty(frame.shape)
    for c in range(frame.shape[0]):
        g, _ = ref_tile_stats(frame[c], params.tile_px, params.tile_stride,
                              params.background_quantile)
        img = frame[c].astype(np.float64)
        if smooth:
            img = ndi.uniform_filter(img, 3, mode="nearest")
        out[c] = img - ref_bilinear(g, frame.shape[1:], params.tile_px)
    return out


def ref_thresholds(frame, params):
    sig = [np.median(ref_tile_stats(frame[c], params.tile_px, params.tile_stride,
                                    params.background_quantile)[1][::2, ::2]) for c in range(2)]
    scale = 1 / 3 if params.smooth else 1.0
    return (max(params.dapi_k * sig[0] * scale, params.dapi_floor),
            max(params.ck_k * sig[1] * scale, params.ck_floor))


def ref_refine(s, bit, labels, mask, thr, fraction, radius, local, skip=None):
    """Per object: keep ``bit`` where s > thr and s >= fraction · reference."""
    out = mask.copy()
    for lab in np.unique(labels[labels > 0]):
        obj = labels == lab
        if skip is not None and skip[obj].any():
            continue
        if local:
            v = np.where(obj, s, -np.inf)
            ref = ndi.maximum_filter(v, size=2 * radius + 1, mode="constant", cval=-np.inf)
        else:
            above = np.sort(s[obj & (s > thr)])
            ref = above[(3 * (len(above) - 1)) // 4] if len(above) else np.inf
        on = obj & (s > thr) & (s >= fraction * ref)
        out[obj] = (out[obj] & ~np.uint8(bit)) | np.where(on[obj], bit, 0).astype(np.uint8)
    return out


def ref_segment_labels(frame, params):
    """The whole object pipeline from references: mask, label, refine, split, refine, trim."""
    mask, _ = ref_mask(frame, params)
    labels = measure.label(mask > 0, connectivity=2).astype(np.int32)
    s = ref_corrected(frame, params, params.smooth)
    thr = ref_thresholds(frame, params)
    f, r = params.refine_fraction, params.refine_radius_px
    huge = np.bincount(labels.ravel())[labels] > params.max_object_px  # left as detected
    huge[labels == 0] = False
    mask = ref_refine(s[0], 1, labels, mask, thr[0], f, r, True, huge)
    labels = ref_split(labels, mask, params.min_nucleus_px, huge)
    mask = ref_refine(s[1], 2, labels, mask, thr[1], f, r, False, huge)
    labels[(labels > 0) & (mask & 3 == 0)] = 0
    return labels, mask


def canonical(labels):
    """Relabel so labels appear in raster order 1, 2, … (0 stays 0)."""
    flat = labels.ravel()
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    order = order[order != 0]
    lut = np.zeros(flat.max() + 1, dtype=np.int64)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def geodesic_bfs(obj, seed):
    """8-connected geodesic distance from ``seed`` inside ``obj`` (inf where unreachable)."""
    h, w = obj.shape
    dist = np.full(obj.shape, np.inf)
    q = deque()
    for y, x in zip(*np.nonzero(seed), strict=True):
        dist[y, x] = 0
        q.append((y, x))
    while q:
        y, x = q.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and obj[ny, nx] and dist[ny, nx] == np.inf:
                    dist[ny, nx] = dist[y, x] + 1
                    q.append((ny, nx))
    return dist


def ref_split(labels, mask, min_px, skip=None):
    out = labels.copy()
    nxt = labels.max() + 1
    for lab in range(1, labels.max() + 1):
        obj = labels == lab
        if skip is not None and skip[obj].any():
            continue
        nl, k = ndi.label(obj & (mask & 1 > 0), structure=np.ones((3, 3)))
        comps = []
        for c in range(1, k + 1):
            pix = np.flatnonzero((nl == c).ravel())
            if len(pix) >= min_px:
                comps.append((pix[0], c))
        comps.sort()
        if len(comps) < 2:
            continue
        dist = np.stack([geodesic_bfs(obj, nl == c) for _, c in comps])
        owner = np.argmin(dist, axis=0)  # first minimum = lowest nucleus index on ties
        for i in range(1, len(comps)):
            out[obj & (owner == i)] = nxt + i - 1
        nxt += len(comps) - 1
    return out


# --------------------------------------------------------------------------- synthetic data


def synthetic_frame(rng, shape=(180, 240), n_cells=12, noise=6.0, clusters=2):
    """Discs and ellipses (nucleus + cytoplasm, some CD45+), touching pairs, on a gradient."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    frame = np.empty((4, h, w))
    for c, level in enumerate((45, 55, 38, 65)):
        frame[c] = level * (1 - 0.3 * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)) + 0.1 * xx
    for i in range(n_cells + clusters):
        cy, cx = rng.uniform(-5, h + 5), rng.uniform(-5, w + 5)
        r = rng.uniform(5, 14)
        members = [(cy, cx, r)]
        if i >= n_cells:  # touching pair
            phi = rng.uniform(0, 2 * np.pi)
            r2 = rng.uniform(7, 12)
            members.append((cy + (r + r2 - 2) * np.sin(phi), cx + (r + r2 - 2) * np.cos(phi), r2))
        for my, mx, mr in members:
            a = mr * rng.uniform(1.0, 1.3)
            cyto = ((yy - my) / a) ** 2 + ((xx - mx) / mr) ** 2 < 1
            nuc = (yy - my) ** 2 + (xx - mx) ** 2 < (0.55 * mr) ** 2
            frame[1][cyto] += rng.uniform(200, 900)
            frame[0][nuc] += rng.uniform(300, 900)
            if rng.random() < 0.3:
                frame[2][cyto] += rng.uniform(200, 600)
            frame[3][cyto] += rng.uniform(0, 400)
    frame += rng.normal(0, noise, frame.shape)
    # a few saturated pixels and specks
    for _ in range(3):
        y, x = rng.integers(0, h), rng.integers(0, w)
        frame[:, y:y + 2, x:x + 2] = 4095
    return np.clip(frame, 0, 4095).astype(np.float32)


def kernel_mask(frame, bg, thr, smooth):
    """The detection kernel as segment_frame calls it (and a check of its run counts)."""
    mask, counts = thrk.foreground_mask(frame[0], frame[1], IDENTITY_MAP, IDENTITY_MAP,
                                        thrk.column_grid(bg.grids[0], bg.cx0, bg.cwx),
                                        thrk.column_grid(bg.grids[1], bg.cx0, bg.cwx),
                                        bg.ry0, bg.rwy, thr[0], thr[1], smooth)
    np.testing.assert_array_equal(counts, ref_run_counts(mask))
    return mask


def ref_run_counts(mask):
    fg = np.pad(mask != 0, ((0, 0), (1, 0)))
    return np.concatenate(([0], (fg[:, 1:] & ~fg[:, :-1]).sum(axis=1)))


# --------------------------------------------------------------------------- background


def test_select_and_median():
    rng = np.random.default_rng(9)
    for n in (1, 2, 3, 7, 36, 64, 101):
        for data in (rng.normal(size=n), rng.integers(0, 4, n).astype(float), np.full(n, 5.0)):
            for k in {0, n // 3, (n - 1) // 2, n - 1}:
                a = data.copy()
                assert bgk._select(a, n, k) == np.sort(data)[k]
                assert sorted(a) == sorted(data)  # a permutation
            assert bgk._median(data.copy(), n) == np.median(data)


def test_selection_among_ties_finds_the_order_statistic():
    """The selection for restored pixels: the k-th smallest, everything right of k at
    least it, the values only reordered, with many ties and none."""
    rng = np.random.default_rng(1)
    for trial in range(2000):
        n = int(rng.integers(1, 60))
        levels = int(rng.integers(1, 10)) if trial % 2 else 1000
        data = rng.integers(0, levels, n).astype(np.float32)
        k = int(rng.integers(0, n))
        values = data.copy()
        assert bgk.select_among_ties(values, n, k) == np.sort(data)[k]
        assert (values[k + 1:] >= values[k]).all()
        np.testing.assert_array_equal(np.sort(values), np.sort(data))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 65, 87, 400])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_medians_equal_numpy_median(n, dtype):
    rng = np.random.default_rng(n)
    block = (rng.random((40, n)) * 1000).astype(dtype)
    block[::3] = np.round(block[::3] / 50) * 50  # ties
    medians = bgk.row_medians(block)
    assert medians.dtype == dtype
    np.testing.assert_array_equal(medians, np.median(block, axis=1))


@pytest.mark.parametrize("shape,tile,stride,q", [
    ((180, 240), 48, 6, 0.5),
    ((103, 77), 32, 4, 0.25),
    ((20, 500), 48, 5, 0.5),   # a single tile row
    ((7, 9), 48, 6, 0.5),      # smaller than a tile and than the offset
])
def test_tile_stats_matches_reference(shape, tile, stride, q):
    rng = np.random.default_rng(1)
    img = (rng.normal(100, 10, shape) + np.arange(shape[1]) * 0.5).astype(np.float32)
    re, ce = bgk.tile_edges(shape[0], tile), bgk.tile_edges(shape[1], tile)
    coarse = np.round(img / 8)  # many ties, as in integer 12-bit data
    stack = np.ascontiguousarray(np.stack([img, coarse, img * 2]), dtype=np.float32)
    affine = StoredFrame.from_array(stack).affine
    bg, sg = bgk.tile_stats(tuple(stack), affine, re, ce, stride, q, 2)
    bg2, sg2 = bgk.tile_stats(tuple(stack), affine, re, ce, stride, q, 2, 2)
    np.testing.assert_array_equal(bg2, bg)
    for c in range(3):
        rbg, rsg = ref_tile_stats(stack[c], tile, stride, q)
        np.testing.assert_array_equal(bg[c], rbg)
        if c < 2:
            np.testing.assert_allclose(sg[c], rsg, rtol=1e-12)
            np.testing.assert_allclose(sg2[c][::2, ::2], rsg[::2, ::2], rtol=1e-12)
            odd = np.ones(rsg.shape, bool)
            odd[::2, ::2] = False
            assert np.isnan(sg2[c][odd]).all()
        else:
            assert not sg[c].any() and not sg2[c].any()


@pytest.mark.parametrize("seed", range(10))
def test_tile_stats_of_8_bit_pages_equal_those_of_the_restored_pages(seed):
    # 8-bit pages are counted, not selected: same backgrounds and MADs as the restored
    # float32 pages (which the reference test above checks), ties, clamps, a zero scale
    # and a negative one (not monotone: restored first)
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(20, 200, 2))
    level, spread = rng.integers(0, 256), rng.choice([1, 3, 10, 60])
    pages = tuple(np.clip(rng.normal(level, spread, shape), 0, 255).astype(np.uint8)
                  for _ in range(3))
    affine = np.array([[rng.choice([16.05, 1.0, 0.0, 0.37, -2.0]), 3.3, 2.0],
                       [rng.choice([0.0, 100.0, -5.5]), 0.0, -32768.0],
                       [rng.choice([-np.inf, 0.0, 500.0]), -np.inf, 0.0]], np.float32)
    tile, stride, q = int(rng.choice([48, 32, 17])), int(rng.choice([8, 5, 3])), 0.3
    re, ce = bgk.tile_edges(shape[0], tile), bgk.tile_edges(shape[1], tile)
    restored = StoredFrame(pages, affine).restore()
    counted = bgk.tile_stats(pages, affine, re, ce, stride, q, 3, 2)
    selected = bgk.tile_stats(tuple(restored), StoredFrame.from_array(restored).affine, re, ce,
                              stride, q, 3, 2)
    np.testing.assert_array_equal(counted[0], selected[0])
    np.testing.assert_array_equal(counted[1], selected[1])


@pytest.mark.parametrize("shape,tile", [((180, 240), 48), ((103, 77), 32), ((20, 500), 48)])
def test_background_interpolation_matches_reference(shape, tile):
    rng = np.random.default_rng(2)
    re, ce = bgk.tile_edges(shape[0], tile), bgk.tile_edges(shape[1], tile)
    grid = rng.uniform(0, 1000, (len(re) - 1, len(ce) - 1))
    ry0, rwy = bgk.interp_weights(shape[0], re)
    cx0, cwx = bgk.interp_weights(shape[1], ce)
    img = rng.uniform(0, 4095, shape).astype(np.float32)
    out = bgk.subtract_background(img, grid, ry0, rwy, cx0, cwx)
    ref = img - ref_bilinear(grid, shape, tile)
    np.testing.assert_allclose(out, ref, atol=2e-3)



@pytest.mark.parametrize("width,tile", [(240, 48), (77, 32), (30, 48), (1384, 48)])
def test_column_grid_is_the_per_pixel_blend_bit_for_bit(width, tile):
    rng = np.random.default_rng(width)
    edges = bgk.tile_edges(width, tile)
    grid = rng.uniform(-50, 1000, (5, len(edges) - 1))
    cx0, cwx = bgk.interp_weights(width, edges)
    j1 = np.minimum(cx0 + 1, grid.shape[1] - 1)
    expected = (1.0 - cwx) * grid[:, cx0] + cwx * grid[:, j1]
    np.testing.assert_array_equal(thrk.column_grid(grid, cx0, cwx, np.float64), expected)
    np.testing.assert_array_equal(thrk.column_grid(grid, cx0, cwx), expected.astype(np.float32))
    shuffled = rng.permutation(cx0)  # spans of one tile column need not be contiguous
    j1 = np.minimum(shuffled + 1, grid.shape[1] - 1)
    np.testing.assert_array_equal(thrk.column_grid(grid, shuffled, cwx, np.float64),
                                  (1.0 - cwx) * grid[:, shuffled] + cwx * grid[:, j1])

def test_background_follows_a_linear_ramp_to_the_border():
    """Bilinear interpolation with extrapolation reproduces a plane exactly, borders included."""
    h, w, tile = 200, 300, 40
    re, ce = bgk.tile_edges(h, tile), bgk.tile_edges(w, tile)
    cy = (re[:-1] + re[1:] - 1) / 2
    cx = (ce[:-1] + ce[1:] - 1) / 2
    grid = 100 + 3.0 * cy[:, None] + 2.0 * cx[None, :]
    ry0, rwy = bgk.interp_weights(h, re)
    cx0, cwx = bgk.interp_weights(w, ce)
    yy, xx = np.mgrid[:h, :w]
    plane = (100 + 3.0 * yy + 2.0 * xx).astype(np.float32)
    np.testing.assert_allclose(bgk.subtract_background(plane, grid, ry0, rwy, cx0, cwx), 0,
                               atol=1e-2)


def test_noise_sigma_estimates_gaussian_noise():
    rng = np.random.default_rng(3)
    frame = rng.normal(200, 7.0, (4, 400, 500)).astype(np.float32)
    # a cluster-sized bright object covering half a tile hardly moves the robust estimates
    frame[1, 100:134, 100:134] += 900
    grids, sigma = frame_background(frame)
    assert sigma[0] == pytest.approx(7.0, rel=0.08)
    assert sigma[1] == pytest.approx(7.0, rel=0.08)
    assert sigma[2] == 0 and sigma[3] == 0
    # 0.3 quantile: -0.52 sigma; the tile under the object moves by about one sigma, not 900
    assert np.abs(grids - (200 - 0.52 * 7)).max() < 2 * 7


# --------------------------------------------------------------------------- threshold


@pytest.mark.parametrize("smooth", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_foreground_mask_matches_reference(seed, smooth):
    rng = np.random.default_rng(seed)
    frame = synthetic_frame(rng)
    params = SegmentParams(smooth=smooth, tile_px=40, tile_stride=4, dapi_k=6, ck_k=6,
                           dapi_floor=20, ck_floor=20)
    grids, sigma = frame_background(frame, params)
    from ctcimg.segment import _background, _thresholds

    bg = _background(StoredFrame.from_array(frame), params)
    thr = _thresholds(bg.sigma, params)
    mask = kernel_mask(frame, bg, thr, smooth)
    ref, ambiguous = ref_mask(frame, params)
    assert (mask & 1).any() and (mask & 2).any()
    assert ((mask > 0) == ((mask & 4) > 0)).all()
    assert np.array_equal(mask[~ambiguous], ref[~ambiguous])
    assert ambiguous.sum() < 5


def test_foreground_mask_random_grid_and_image():
    rng = np.random.default_rng(5)
    h, w, tile = 97, 131, 30
    img = rng.uniform(0, 500, (2, h, w)).astype(np.float32)
    re, ce = bgk.tile_edges(h, tile), bgk.tile_edges(w, tile)
    g = rng.uniform(100, 300, (2, len(re) - 1, len(ce) - 1))
    ry0, rwy = bgk.interp_weights(h, re)
    cx0, cwx = bgk.interp_weights(w, ce)
    mask, counts = thrk.foreground_mask(img[0], img[1], IDENTITY_MAP, IDENTITY_MAP,
                                        thrk.column_grid(g[0], cx0, cwx),
                                        thrk.column_grid(g[1], cx0, cwx), ry0, rwy, 10.0, 30.0,
                                        True)
    np.testing.assert_array_equal(counts, ref_run_counts(mask))
    for c, bit, thr in ((0, 1, 10.0), (1, 2, 30.0)):
        v = ndi.uniform_filter(img[c].astype(np.float64), 3, mode="nearest") \
            - ref_bilinear(g[c], (h, w), tile) - thr
        clear = np.abs(v) > 1e-3
        assert np.array_equal(((mask & bit) > 0)[clear], (v > 0)[clear])
    assert ((mask > 0) == ((mask & 4) > 0)).all()


# --------------------------------------------------------------------------- label


@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 0.5, 0.62, 1.0])
@pytest.mark.parametrize("shape", [(1, 50), (50, 1), (64, 97), (1, 1), (40, 64)])
def test_label_matches_skimage(density, shape):
    rng = np.random.default_rng(int(density * 100) + shape[0])
    mask = (rng.random(shape) < density).astype(np.uint8) * rng.integers(1, 8, shape).astype(
        np.uint8)
    labels, n, area, bbox = labk.label_mask(mask)
    labels2, n2, _, _ = labk.label_mask(mask, ref_run_counts(mask))
    np.testing.assert_array_equal(labels, labels2)
    kept = np.zeros(shape, np.int32)  # painted into a caller's image, then cleared by runs
    labels3, _, _, _, runs = labk.label_mask(mask, return_runs=True, out=kept)
    assert labels3 is kept
    np.testing.assert_array_equal(kept, labels)
    labk.clear_runs(kept, runs)
    assert not kept.any()
    ref = measure.label(mask > 0, connectivity=2)
    assert n == ref.max()
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(canonical(labels), canonical(ref))
    np.testing.assert_array_equal(labels, canonical(labels))  # raster-ordered labels
    for p in measure.regionprops(labels):
        assert area[p.label] == p.area
        assert tuple(bbox[p.label]) == p.bbox


def test_label_structures():
    """Diagonal-only contact joins (8-connectivity); U shapes and spirals merge late."""
    mask = np.zeros((40, 40), np.uint8)
    mask[5, 5] = mask[6, 6] = mask[7, 5] = 1  # diagonal chain
    mask[10:30, 10] = mask[10:30, 20] = mask[29, 10:21] = 1  # U: two arms merge at the bottom
    mask[35, 0:40:2] = 1  # isolated pixels on one row
    mask[0, 39] = mask[39, 0] = 1
    labels, n, _, _ = labk.label_mask(mask)
    ref = measure.label(mask, connectivity=2)
    assert n == ref.max() == 1 + 1 + 20 + 2
    np.testing.assert_array_equal(canonical(labels), canonical(ref))


# --------------------------------------------------------------------------- split


def _split_case(rng, shape=(90, 120)):
    frame = synthetic_frame(rng, shape=shape, n_cells=3, clusters=3, noise=4.0)
    params = SegmentParams(tile_px=40, tile_stride=4)
    from ctcimg.segment import _background, _thresholds

    bg = _background(StoredFrame.from_array(frame), params)
    thr = _thresholds(bg.sigma, params)
    mask = kernel_mask(frame, bg, thr, True)
    return mask


def _run_split(labels, mask, n, bbox, min_px):
    nnuc = splk.count_nuclei(labels, mask, bbox, n, min_px)
    todo = np.flatnonzero(nnuc >= 2).astype(np.int64)
    extra = nnuc[todo] - 1
    base = (n + 1 + np.concatenate(([0], np.cumsum(extra)[:-1]))).astype(np.int64)
    out = labels.copy()
    if len(todo):
        splk.split_objects(out, mask, bbox, todo, base, min_px)
    return out, nnuc


@pytest.mark.parametrize("seed", range(4))
def test_split_matches_reference_on_synthetic_clusters(seed):
    mask = _split_case(np.random.default_rng(seed))
    labels, n, _, bbox = labk.label_mask(mask)
    out, nnuc = _run_split(labels, mask, n, bbox, 12)
    ref = ref_split(labels, mask, 12)
    np.testing.assert_array_equal(out, ref)
    assert out.max() > n  # something was split



@pytest.mark.parametrize("seed", range(4))
def test_objects_with_bit_matches_numpy(seed):
    mask = _split_case(np.random.default_rng(seed))
    labels, n, _, bbox = labk.label_mask(mask)
    objects = np.arange(1, n + 1, dtype=np.int64)[::-1].copy()
    for bit in (1, 2):
        expected = np.array([bool((mask[labels == lab] & bit).any()) for lab in objects])
        found = splk.objects_with_bit(labels, mask, bbox, objects, bit)
        np.testing.assert_array_equal(found, expected)
        assert expected.any()
    assert not ((mask & 2) == 0).all()  # CK+ pixels exist; and an object without any:
    lone = np.zeros((20, 20), np.uint8)
    lone[3:8, 3:8] = 1
    lone[10:15, 10:15] = 3
    labels, n, _, bbox = labk.label_mask(lone)
    np.testing.assert_array_equal(
        splk.objects_with_bit(labels, lone, bbox, np.array([1, 2], dtype=np.int64), 2),
        [False, True])

def test_split_ties_and_tiny_nuclei():
    """Equidistant pixels go to the raster-first nucleus; sub-minimum DAPI specks are no seeds."""
    mask = np.zeros((30, 41), np.uint8)
    mask[5:25, 3:38] = 2  # one CK slab
    mask[12:18, 6:12] |= 1  # nucleus 0 (36 px)
    mask[12:18, 29:35] |= 1  # nucleus 1, mirror image: the middle column is a tie
    mask[8:10, 19:21] |= 1  # 4-px DAPI speck: not a seed
    labels, n, _, bbox = labk.label_mask(mask)
    out, nnuc = _run_split(labels, mask, n, bbox, 12)
    assert nnuc[1] == 2
    np.testing.assert_array_equal(out, ref_split(labels, mask, 12))
    assert (out[:, 20] == 1).all() or (out[5:25, 20] == 1).all()  # tie column -> nucleus 0
    assert (out[5:25, 21:38] == 2).all()


def test_split_random_blobs():
    """Random blobby objects with random DAPI islands: kernel equals the slow reference."""
    rng = np.random.default_rng(11)
    base = ndi.gaussian_filter(rng.random((80, 100)), 3) > 0.5
    dapi = ndi.gaussian_filter(rng.random((80, 100)), 1.5) > 0.53
    mask = (base.astype(np.uint8) * 2) | (base & dapi).astype(np.uint8)
    labels, n, _, bbox = labk.label_mask(mask)
    out, nnuc = _run_split(labels, mask, n, bbox, 3)
    assert (nnuc >= 2).any()
    np.testing.assert_array_equal(out, ref_split(labels, mask, 3))


# --------------------------------------------------------------------------- refine


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("smooth", [True, False])
def test_refine_matches_reference(local, smooth):
    from ctcimg.kernels import refine as refk
    from ctcimg.segment import _background, _thresholds

    rng = np.random.default_rng(21)
    frame = synthetic_frame(rng, shape=(150, 200), n_cells=8, clusters=2)
    params = SegmentParams(tile_px=40, tile_stride=4, smooth=smooth)
    bg = _background(StoredFrame.from_array(frame), params)
    thr = _thresholds(bg.sigma, params)
    mask = kernel_mask(frame, bg, thr, smooth)
    labels, n, _, bbox = labk.label_mask(mask)
    s = ref_corrected(frame, params, smooth)
    for c, bit in ((0, 1), (1, 2)):
        got = mask.copy()
        refk.refine_channel(frame[c], IDENTITY_MAP, bit, labels, got, bbox, bg.grids[c],
                            bg.ry0, bg.rwy, bg.cx0, bg.cwx, thr[c], 0.4, 3, smooth, local)
        want = ref_refine(s[c], bit, labels, mask, thr[c], 0.4, 3, local)
        np.testing.assert_array_equal(got, want)
        lost = ((mask & bit) > 0) & ((got & bit) == 0)
        if smooth:  # sharp synthetic edges: only the 3 × 3 mean makes a halo to trim
            assert lost.sum() > 20
        assert ((got & 4) == (mask & 4)).all()


def test_segment_labels_equal_reference_pipeline():
    rng = np.random.default_rng(8)
    frame = synthetic_frame(rng, shape=(200, 260), n_cells=12, clusters=4)
    params = SegmentParams(tile_px=40, tile_stride=4)
    ev = segment_frame(frame, 0.64, params, return_labels=True)
    ref, _ = ref_segment_labels(frame, params)
    areas = np.bincount(ref.ravel())
    ref[areas[ref] < params.min_area_px] = 0
    np.testing.assert_array_equal(canonical(ev["labels"]), canonical(ref))
    assert (ev["cluster_size"] > 1).sum() >= 4


# --------------------------------------------------------------------------- measure


def _ring_mean(corr, labels, mask, lab, width):
    obj = labels == lab
    grown = ndi.maximum_filter(obj.astype(np.uint8), size=2 * width + 1, mode="constant") > 0
    ring = grown & ~obj & (mask == 0) & (labels == 0)
    return corr[ring].mean() if ring.any() else np.nan


@pytest.mark.parametrize("seed", [0, 7])
def test_measurements_match_regionprops(seed):
    rng = np.random.default_rng(seed)
    frame = synthetic_frame(rng, shape=(200, 260), n_cells=14, clusters=3)
    # the reference mask knows no nucleus cut (tests/test_nuclei.py checks those): the plain
    # cut finds nothing to cut in these frames, and the contrast cut is switched off
    params = SegmentParams(tile_px=40, tile_stride=4, min_area_px=10, ring_px=3,
                           contrast_split_min_um2=np.inf)
    ps = 0.64
    ev = segment_frame(frame, ps, params, return_labels=True)
    labels = ev["labels"]
    n = len(ev["label"])
    assert n >= 10 and labels.max() == n
    assert (ev["cluster_size"] > 1).any()
    _, mask = ref_segment_labels(frame, params)
    corr = ref_corrected(frame, params, smooth=False)
    props = measure.regionprops(labels)
    assert [p.label for p in props] == list(ev["label"])
    # dropped specks are gone from the label image but were below min_area_px
    assert ev["area_px"].min() >= params.min_area_px
    for i, p in enumerate(props):
        rr, cc = p.coords[:, 0], p.coords[:, 1]
        assert ev["area_px"][i] == p.area
        assert ev["area_um2"][i] == pytest.approx(p.area * ps * ps)
        assert ev["diameter_um"][i] == pytest.approx(p.equivalent_diameter_area * ps)
        assert (ev["bbox_row0"][i], ev["bbox_col0"][i], ev["bbox_row1"][i],
                ev["bbox_col1"][i]) == p.bbox
        assert ev["y_px"][i] == pytest.approx(p.centroid[0], abs=1e-9)
        assert ev["x_px"][i] == pytest.approx(p.centroid[1], abs=1e-9)
        assert ev["perimeter_um"][i] == pytest.approx(p.perimeter * ps, abs=1e-9)
        assert ev["circularity"][i] == pytest.approx(4 * np.pi * p.area / p.perimeter**2)
        assert ev["eccentricity"][i] == pytest.approx(p.eccentricity, abs=1e-7)
        minor = max(p.axis_minor_length, 1.0)
        assert ev["aspect_ratio"][i] == pytest.approx(p.axis_major_length / minor, rel=1e-7)
        for c, name in enumerate(("dapi", "ck", "cd45", "her2")):
            v = corr[c][rr, cc]
            assert ev[f"{name}_mean"][i] == pytest.approx(v.mean(), abs=1e-3)
            assert ev[f"{name}_max"][i] == pytest.approx(v.max(), abs=1e-3)
            assert ev[f"{name}_integrated"][i] == pytest.approx(v.sum(), abs=1e-3 * p.area)
            ring = _ring_mean(corr[c], labels, mask, p.label, params.ring_px)
            np.testing.assert_allclose(ev[f"{name}_ring"][i], ring, atol=1e-3)
        m = mask[rr, cc]
        nd, nc, nb = (m & 1 > 0).sum(), (m & 2 > 0).sum(), (m & 3 == 3).sum()
        assert ev["dapi_area_um2"][i] == pytest.approx(nd * ps * ps)
        assert ev["ck_area_um2"][i] == pytest.approx(nc * ps * ps)
        assert ev["nucleus_in_ck_fraction"][i] == pytest.approx(nb / nd if nd else 0.0)
        assert ev["ck_covered_by_nucleus_fraction"][i] == pytest.approx(nb / nc if nc else 0.0)
        dapi_px, ck_px = m & 1 > 0, m & 2 > 0
        if nd and nc:
            offset = np.hypot(rr[dapi_px].mean() - rr[ck_px].mean(),
                              cc[dapi_px].mean() - cc[ck_px].mean()) * ps
            assert ev["nucleus_offset_um"][i] == pytest.approx(offset, abs=1e-9)
        else:
            assert np.isnan(ev["nucleus_offset_um"][i])
        assert ev["ck_std"][i] == pytest.approx(corr[1][rr, cc].std(), abs=1e-3)
        sat = (frame[:, rr, cc] >= 4095).any(axis=0).mean()
        assert ev["saturated_fraction"][i] == pytest.approx(sat)
        edge = p.bbox[0] == 0 or p.bbox[1] == 0 or p.bbox[2] == 200 or p.bbox[3] == 260
        assert ev["touches_edge"][i] == edge
    assert ev["touches_edge"].any() and ev["saturated_fraction"].max() > 0


def test_segment_on_simulated_frame_matches_references():
    """Same checks on a simulator frame (vignetting, PSF, shot noise, clusters)."""
    sim = pytest.importorskip("ctcimg.simulate")
    spec = sim.CartridgeSpec("SIMK.1.1", n_frames=4, n_ctc=12, seed=3,
                             frame_shape=(256, 320), grid=(2, 2))
    pixels, _ = sim.render_frame(spec, 2)
    frame = pixels.astype(np.float32)
    params = SegmentParams(max_object_px=2000)  # the edge band takes the huge-object path
    ev = segment_frame(frame, 0.64, params, return_labels=True)
    labels = ev["labels"]
    mask, ambiguous = ref_mask(frame, params)
    assert ambiguous.sum() < 5
    ref_labels = measure.label(mask > 0, connectivity=2)
    rl, _ = ref_segment_labels(frame, params)
    areas = np.bincount(rl.ravel())
    rl[areas[rl] < params.min_area_px] = 0
    np.testing.assert_array_equal(canonical(labels), canonical(rl))
    # every kept event lies inside exactly one reference component
    for p in measure.regionprops(labels):
        comp = np.unique(ref_labels[p.coords[:, 0], p.coords[:, 1]])
        assert len(comp) == 1 and comp[0] > 0
    n_huge = 0
    for i, p in enumerate(measure.regionprops(labels)):
        assert ev["area_px"][i] == p.area
        if p.area > params.max_object_px:
            assert np.isnan(ev["perimeter_um"][i]) and np.isnan(ev["dapi_ring"][i])
            for name in ("dapi_mean", "her2_max", "ck_integrated", "ck_std",
                         "saturated_fraction"):
                assert np.isnan(ev[name][i]), name
            assert ev["ck_area_um2"][i] > 0 and np.isfinite(ev["aspect_ratio"][i])
            n_huge += 1
        else:
            assert ev["perimeter_um"][i] == pytest.approx(p.perimeter * 0.64)
    assert n_huge >= 1  # the cartridge-edge band


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unmeasured_objects_from_their_runs_equal_the_window_scan(seed):
    """measure_unmeasured (from the label runs) writes, bit for bit, the rows
    measure_objects writes for objects above its size limit, and those rows are the
    objects' pixel and mask-bit sums."""
    from ctcimg.kernels import measure as meak

    rng = np.random.default_rng(seed)
    h, w = 120, 150
    mask = (rng.random((h, w)) < 0.04).astype(np.uint8) * 4
    mask[:25, :] = 4  # an L-shaped band along two sides, with a ragged inner edge
    mask[:, :18] = 4
    mask[25, rng.random(w) < 0.5] = 4
    mask[60:70, 60:75] = 4  # a block, and pixels joining it to a speck
    mask[mask > 0] |= rng.integers(0, 4, int((mask > 0).sum())).astype(np.uint8)
    labels, n, area, bbox, runs = labk.label_mask(mask, return_runs=True)
    pages = tuple(rng.integers(0, 4096, (h, w)).astype(np.float32) for _ in range(4))
    affine = np.stack([IDENTITY_MAP] * 4, axis=1)
    ry0, rwy = bgk.interp_weights(h, bgk.tile_edges(h, 40))
    colgrids = rng.random((4, len(bgk.tile_edges(h, 40)) - 1, w)) * 50
    limit = 150
    scanned = meak.measure_objects(pages, affine, labels, mask, bbox, colgrids, ry0, rwy, 3,
                                   4095.0, meak.PERIMETER_WEIGHTS, limit)
    big = np.flatnonzero(area > limit)
    assert len(big) >= 2
    rows = np.full_like(scanned, 7.0)
    meak.measure_unmeasured(runs, mask, bbox, big, rows)
    np.testing.assert_array_equal(rows[big], scanned[big])
    np.testing.assert_array_equal(rows[np.setdiff1d(np.arange(n + 1), big)], 7.0)
    for lab in big:
        yy, xx = np.nonzero(labels == lab)
        yy, xx = yy - bbox[lab, 0], xx - bbox[lab, 1]
        m = mask[labels == lab]
        dapi, ck = (m & 1) > 0, (m & 2) > 0
        expected = {meak.AREA: len(yy), meak.SY: yy.sum(), meak.SX: xx.sum(),
                    meak.SYY: (yy * yy).sum(), meak.SXX: (xx * xx).sum(),
                    meak.SXY: (yy * xx).sum(), meak.NDAPI: dapi.sum(), meak.NCK: ck.sum(),
                    meak.NBOTH: (dapi & ck).sum(), meak.DSY: yy[dapi].sum(),
                    meak.DSX: xx[dapi].sum(), meak.KSY: yy[ck].sum(), meak.KSX: xx[ck].sum(),
                    meak.RINGN: 0}
        for column, value in expected.items():
            assert rows[lab, column] == value, column
        assert tuple(rows[lab, meak.ROW0:meak.COL1 + 1]) == tuple(bbox[lab])
        assert np.isnan(rows[lab, [meak.PERIM, meak.NSAT, meak.CKSQ]]).all()
        assert np.isnan(rows[lab, meak.SUM:meak.MAX + 4]).all()


# --------------------------------------------------------------------------- stored pages


def _stored_frame(frame12, encoding):
    """Encode a 12-bit frame as CellTracks pages would store it; return the StoredFrame."""
    from ctcimg.io.tiff import PageHeader, page_affine

    pages, maps = [], []
    for plane in frame12:
        if encoding == "stretch8":
            low, high = float(plane.min()), float(plane.max())
            stored = np.round((plane - low) / (high - low) * 255).astype(np.uint8)
        elif encoding in ("stretch16", "stretch16_offset"):
            low, high = float(plane.min()), float(plane.max())
            stored = np.round((plane - low) / (high - low) * 65535).astype(np.uint16)
            if encoding == "stretch16_offset":
                low, high = low + OFFSET_16BIT, high + OFFSET_16BIT
        else:  # raw 12-bit values plus the 32768 offset; a few pixels below it (clamped)
            low = high = None
            stored = (np.round(plane) + OFFSET_16BIT).astype(np.uint16)
            stored[:3, :5] = OFFSET_16BIT - 7
        header = PageHeader(stored.shape, stored.dtype, low, high)
        pages.append(stored)
        maps.append(page_affine(stored, header))
    return StoredFrame(tuple(pages), np.array(maps, dtype=np.float32).T.copy())


@pytest.mark.parametrize("encoding", ["stretch8", "stretch16", "stretch16_offset", "offset16"])
def test_stored_pages_segment_exactly_like_the_restored_frame(encoding):
    """The kernels restore pixels as they read them: same events, bit for bit, as when
    segment_frame is given the frame restored by restore_page."""
    from ctcimg.edge import cartridge_edge_depth
    from ctcimg.io.tiff import PageHeader, restore_page

    rng = np.random.default_rng(31)
    frame12 = synthetic_frame(rng, shape=(160, 210), n_cells=10, clusters=3)
    frame12[1, :, :12] += 1500  # a bright band on the left, for the edge detector
    stored = _stored_frame(frame12, encoding)
    restored = stored.restore()
    for c, page in enumerate(stored.pages):  # StoredFrame.restore is the reader's restore
        shift = OFFSET_16BIT if encoding == "stretch16_offset" else 0
        header = (PageHeader(page.shape, page.dtype, float(frame12[c].min()) + shift,
                             float(frame12[c].max()) + shift)
                  if encoding != "offset16" else PageHeader(page.shape, page.dtype, None, None))
        np.testing.assert_array_equal(restored[c], restore_page(page, header))
    if encoding == "offset16":
        assert (restored[:, :3, :5] == 0).all()

    params = SegmentParams(tile_px=40, tile_stride=4)
    got = segment_frame(stored, 0.64, params, return_labels=True)
    want = segment_frame(restored, 0.64, params, return_labels=True)
    assert len(want["label"]) >= 8
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for a, b in zip(frame_background(stored, params), frame_background(restored, params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert cartridge_edge_depth(stored) == cartridge_edge_depth(restored)
    assert cartridge_edge_depth(restored)["left"] > 0
    np.testing.assert_array_equal(stored.region(slice(5, 40), slice(100, 150)),
                                  restored[:, 5:40, 100:150])


# --------------------------------------------------------------------------- CD45 annulus


def ref_nucleus_annulus(corr_cd45, labels, mask, lab, outer, q):
    """Quantile ``q`` of ``corr_cd45`` at Chebyshev distance 1..outer from the event's nucleus and
    no nearer to another event's nucleus, on pixels labelled 0 or ``lab``; NaN when empty."""
    nuclei = (labels > 0) & (mask & 1 > 0)
    nucleus = nuclei & (labels == lab)
    if not nucleus.any():
        return np.nan, 0
    dist = ndi.distance_transform_cdt(~nucleus, metric="chessboard")
    others = nuclei & ~nucleus
    dist_other = (ndi.distance_transform_cdt(~others, metric="chessboard") if others.any()
                  else np.full(labels.shape, 10**6))
    annulus = ((dist >= 1) & (dist <= outer) & (dist <= dist_other)
               & ((labels == 0) | (labels == lab)))
    values = corr_cd45[annulus]
    return (np.quantile(values, q) if values.size else np.nan), values.size


def ref_neighbours_zone(corr_cd45, labels, mask, lab, zone, q):
    """Quantile ``q`` of ``corr_cd45`` at Chebyshev distance 1..zone from the event's nucleus
    and strictly nearer another event's nucleus, whatever the label; NaN when empty."""
    nuclei = (labels > 0) & (mask & 1 > 0)
    nucleus = nuclei & (labels == lab)
    others = nuclei & ~nucleus
    if not nucleus.any() or not others.any():
        return np.nan, 0
    dist = ndi.distance_transform_cdt(~nucleus, metric="chessboard")
    dist_other = ndi.distance_transform_cdt(~others, metric="chessboard")
    values = corr_cd45[(dist >= 1) & (dist <= zone) & (dist_other < dist)]
    return (np.quantile(values, q) if values.size else np.nan), values.size


def leukocyte_and_ctc_frame(rng, shape=(160, 220)):
    """A CK-dim leukocyte (CK over the nucleus only, CD45 on the membrane), a CTC with a
    leukocyte stuck to it, and a plain CTC, on a background with noise."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    frame = np.empty((4, h, w))
    for c, level in enumerate((45, 55, 38, 65)):
        frame[c] = level + 0.05 * xx

    def disc(cy, cx, r):
        return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r

    def ring(cy, cx, r, width=1.5):
        d = np.hypot(yy - cy, xx - cx)
        return np.exp(-((d - r) / width) ** 2)

    # CK-dim leukocyte: nucleus r 5, cell r 7, CK only over the nucleus, CD45 membrane ring
    frame[0][disc(40, 50, 5)] += 700
    frame[1][disc(40, 50, 5.5)] += 120
    frame[2] += 400 * ring(40, 50, 7)
    # CTC (nucleus r 5, cytoplasm r 10) with a CK-negative leukocyte stuck to its right side
    frame[0][disc(100, 80, 5)] += 600
    frame[1][disc(100, 80, 10)] += 700
    frame[0][disc(100, 97, 4.5)] += 650
    frame[2] += 500 * ring(100, 97, 6.5)
    # plain CTC
    frame[0][disc(60, 170, 5)] += 600
    frame[1][disc(60, 170, 9)] += 800
    frame = ndi.gaussian_filter(frame, (0, 1.2, 1.2))
    frame += rng.normal(0, 5, frame.shape)
    return np.clip(frame, 0, 4095).astype(np.float32)


@pytest.mark.parametrize(("outer", "q", "zone", "zone_q"),
                         [(2, 0.25, 6, 0.9), (4, 0.5, 0, 0.9), (3, 0.0, 2, 1.0), (2, 0.25, 0, 0.5)])
def test_nucleus_annulus_matches_reference(outer, q, zone, zone_q):
    from ctcimg.kernels import annulus as annk
    from ctcimg.segment import _background

    rng = np.random.default_rng(5)
    frame = synthetic_frame(rng, shape=(200, 260), n_cells=14, clusters=4)
    frame[2] += leukocyte_and_ctc_frame(rng, (200, 260))[2] - 38  # CD45 rings over the cells
    params = SegmentParams(tile_px=40, tile_stride=4)
    labels, mask = ref_segment_labels(frame, params)
    labels = labels.astype(np.int32)
    bbox = np.zeros((labels.max() + 1, 4), np.int64)
    for p in measure.regionprops(labels):
        bbox[p.label] = p.bbox
    todo = np.array([p.label for p in measure.regionprops(labels)], np.int64)
    bg = _background(StoredFrame.from_array(frame), params)
    colgrid = thrk.column_grid(bg.grids[2], bg.cx0, bg.cwx, np.float64)
    got = annk.nucleus_annulus_quantile(frame[2], IDENTITY_MAP, labels, mask, bbox, todo,
                                        colgrid, bg.ry0, bg.rwy, outer, q, zone, zone_q)
    corr = ref_corrected(frame, params, smooth=False)[2]
    assert len(todo) >= 10
    n_measured = n_beside = 0
    for k, lab in enumerate(todo):
        median, count = ref_nucleus_annulus(corr, labels, mask, lab, outer, q)
        assert got[k, 1] == count
        np.testing.assert_allclose(got[k, 0], median, atol=1e-3, equal_nan=True)
        n_measured += count > 0
        if zone:
            value, count = ref_neighbours_zone(corr, labels, mask, lab, zone, zone_q)
            assert got[k, 3] == count
            np.testing.assert_allclose(got[k, 2], value, atol=1e-3, equal_nan=True)
            n_beside += count > 0
        else:
            assert got[k, 3] == 0 and np.isnan(got[k, 2])
    assert n_measured >= 10
    assert n_beside >= 3 or not zone


def test_cd45_around_nucleus_separates_leukocytes_from_ctcs():
    """The CK-dim leukocyte's membrane CD45 lies outside its event (mean − ring ≈ 0) but
    around its nucleus; the CTC with a stuck leukocyte keeps a CD45-free annulus."""
    frame = leukocyte_and_ctc_frame(np.random.default_rng(3))
    ev = segment_frame(frame, 0.64, SegmentParams(tile_px=40, tile_stride=4))

    def event_at(x, y):
        return int(np.argmin(np.hypot(ev["x_px"] - x, ev["y_px"] - y)))

    leuko, doublet_ctc, ctc = event_at(50, 40), event_at(80, 100), event_at(170, 60)
    assert ev["ck_mean"][leuko] > 40  # would pass the CK criterion
    assert ev["cd45_around_nucleus"][leuko] > 60
    assert ev["cd45_around_nucleus"][doublet_ctc] < 15
    assert abs(ev["cd45_around_nucleus"][ctc]) < 10
