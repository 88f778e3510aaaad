"""Kernels in threads (ctcimg.kernels.threads): every item done once, same results as one
thread, and no waiting for a helper thread that never got a core."""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from ctcimg.kernels import measure, threads, threshold
from ctcimg.kernels.background import interp_weights, tile_edges
from ctcimg.kernels.label import label_mask


@njit(nogil=True)
def _count_items(work, seen):
    while True:
        item = threads.claim(work)
        if item >= work[1]:
            break
        seen[item] += 1


def _frame(seed: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    pages = rng.integers(90, 110, size=(4, 200, 150)).astype(np.uint8)
    yy, xx = np.mgrid[:200, :150]
    for y, x in rng.integers(10, 140, size=(25, 2)):
        disc = (yy - y) ** 2 + (xx - x) ** 2 < 30
        pages[0][disc] = 250
        pages[1][(yy - y) ** 2 + (xx - x) ** 2 < 60] = 200
    return tuple(pages)


def _mask_and_measures(pages):
    affine = np.zeros((3, 4), dtype=np.float32)
    affine[0], affine[2] = 16.0, -np.inf
    redges, cedges = tile_edges(200, 48), tile_edges(150, 48)
    ry0, rwy = interp_weights(200, redges)
    cx0, cwx = interp_weights(150, cedges)
    grids = np.full((4, len(redges) - 1, len(cedges) - 1), 1600.0)
    colgrids = threshold.column_grid(grids, cx0, cwx, np.float64)
    colgrid32 = threshold.column_grid(grids[:2], cx0, cwx)
    dmap, kmap = (np.ascontiguousarray(affine[:, c]) for c in (0, 1))
    mask, counts = threshold.foreground_mask(pages[0], pages[1], dmap, kmap, colgrid32[0],
                                             colgrid32[1], ry0, rwy, 200.0, 200.0, True)
    labels, n, _, bbox = label_mask(mask, counts)
    raw = measure.measure_objects(pages, affine, labels, mask, bbox, colgrids, ry0, rwy, 3,
                                  4095.0, measure.PERIMETER_WEIGHTS, 20000)
    return mask, counts, n, raw


def test_every_item_is_claimed_exactly_once_across_threads(monkeypatch):
    monkeypatch.setattr(threads, "thread_count", lambda: 4)
    seen = np.zeros(10_000, dtype=np.int64)
    threads.run_parts(_count_items, len(seen), seen)
    assert (seen == 1).all()


def test_kernels_in_threads_give_the_one_thread_results(monkeypatch):
    pages = _frame()
    monkeypatch.setattr(threads, "thread_count", lambda: 1)
    mask1, counts1, n1, raw1 = _mask_and_measures(pages)
    monkeypatch.setattr(threads, "thread_count", lambda: 3)
    mask3, counts3, n3, raw3 = _mask_and_measures(pages)
    assert n1 == n3 and n1 > 10
    np.testing.assert_array_equal(mask1, mask3)
    np.testing.assert_array_equal(counts1, counts3)
    np.testing.assert_array_equal(raw1, raw3)


def test_a_helper_that_never_starts_is_not_waited_for(monkeypatch):
    monkeypatch.setattr(threads, "thread_count", lambda: 2)
    pool = threads._executor(1)
    release = threading.Event()
    blocker = pool.submit(release.wait, 30)  # the only helper thread is busy elsewhere
    try:
        seen = np.zeros(1000, dtype=np.int64)
        finished = threading.Event()
        caller = threading.Thread(target=lambda: (threads.run_parts(_count_items, 1000, seen),
                                                  finished.set()))
        caller.start()
        assert finished.wait(10), "run_parts waited for a helper that had not started"
        assert (seen == 1).all()  # the calling thread did every item itself
    finally:
        release.set()
        blocker.result()
        caller.join()
