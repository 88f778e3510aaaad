"""segment_frame vs. a straightforward scikit-image pipeline on full-size frames.

    python benchmarks/bench_segment.py [--runs 20] [--frames 3]

Frames come from the simulator (``render_frame``: vignetting, gradients, PSF, shot noise,
CTCs / clusters / leukocytes / decoys; one frame with the bright cartridge edge). Both
pipelines do the same job per frame: background per channel, DAPI/CK threshold, label,
split touching cells at nuclei, per-object features in all four channels.
Prints median ms per frame (after warm-up), the ratio, per-stage times of segment_frame,
and the extra memory segment_frame allocates per frame.

Goals (DESIGN.md §4): ≥ 10× faster than the scikit-image pipeline (≥ 30× for a careful
engine); a few ms per full-size frame on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np


def skimage_pipeline(frame: np.ndarray, pixel_size_um: float) -> dict[str, np.ndarray]:
    """The plain scikit-image way to do what segment_frame does (the comparison baseline)."""
    from scipy import ndimage as ndi
    from skimage import filters, measure, segmentation, transform

    corrected = np.empty(frame.shape, dtype=np.float32)
    masks = []
    for c in range(4):
        small = transform.downscale_local_mean(frame[c], (8, 8))  # coarse background
        bg_small = ndi.median_filter(small, size=7)
        bg = transform.resize(bg_small, frame[c].shape, order=1, mode="edge")
        corrected[c] = frame[c] - bg
        if c < 2:  # DAPI, CK: threshold the smoothed corrected image
            resid = corrected[c][::4, ::4]
            sigma = 1.4826 * np.median(np.abs(resid - np.median(resid)))
            smooth = filters.gaussian(corrected[c], sigma=1.0)
            masks.append(smooth > max(8 * sigma / 3, 40.0))
    mask = masks[0] | masks[1]
    labels = measure.label(mask, connectivity=2)
    markers = measure.label(masks[0] & mask, connectivity=2)
    dist = ndi.distance_transform_edt(mask)
    labels = segmentation.watershed(-dist, markers, mask=mask)  # split at nuclei
    labels[(labels == 0) & mask] = 0
    props = measure.regionprops(labels, intensity_image=np.moveaxis(corrected, 0, -1))
    rows = []
    for p in props:
        if p.area < 10:
            continue
        rows.append((p.label, *p.centroid, *p.bbox, p.area, p.perimeter, p.eccentricity,
                     p.axis_major_length, p.axis_minor_length, *p.intensity_mean,
                     *p.intensity_max, p.equivalent_diameter_area * pixel_size_um))
    return {"n": np.array([len(rows)])}


def timed(fn, *args, runs: int) -> tuple[float, object]:
    out = fn(*args)  # warm-up (JIT / cache load)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, out


def stages(frame: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms of each segment_frame stage (same calls as segment_frame makes)."""
    from ctcimg.io.tiff import StoredFrame
    from ctcimg.kernels import label as lab
    from ctcimg.kernels import measure as mea
    from ctcimg.kernels import refine as ref
    from ctcimg.kernels import split as spl
    from ctcimg.kernels import threshold as thr
    from ctcimg.segment import SegmentParams, _background, _thresholds

    p = SegmentParams()
    stored = StoredFrame.from_array(frame)  # identity maps: the pages are restored already
    maps = [np.ascontiguousarray(stored.affine[:, c]) for c in range(4)]
    out = {}
    out["background"], bg = timed(_background, stored, p, runs=runs)
    td, tc = _thresholds(bg.sigma, p)
    args = (bg.ry0, bg.rwy, bg.cx0, bg.cwx)
    cg = thr.column_grid(bg.grids[:2], bg.cx0, bg.cwx)
    out["threshold"], (mask, counts) = timed(lambda: thr.foreground_mask(
        frame[0], frame[1], maps[0], maps[1], cg[0], cg[1], bg.ry0, bg.rwy, td, tc, True),
        runs=runs)
    out["label"], (labels, n, _, bbox) = timed(lab.label_mask, mask, counts, runs=runs)
    out["refine+split"], _ = timed(lambda: (
        ref.refine_channel(frame[0], maps[0], thr.DAPI_BIT, labels, mask.copy(), bbox,
                           bg.grids[0], *args, td, 0.4, 4, True, True),
        spl.count_nuclei(labels, mask, bbox, n, p.min_nucleus_px),
        ref.refine_channel(frame[1], maps[1], thr.CK_BIT, labels, mask.copy(), bbox,
                           bg.grids[1], *args, tc, 0.4, 4, True, False)), runs=runs)
    cg4 = thr.column_grid(bg.grids, bg.cx0, bg.cwx, np.float64)
    out["measure"], _ = timed(lambda: mea.measure_objects(
        stored.pages, stored.affine, labels, mask, bbox, cg4, bg.ry0, bg.rwy, 3, 4095.0,
        mea.PERIMETER_WEIGHTS, 20000), runs=runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=3)
    args = ap.parse_args()

    import cv2
    import numba

    from ctcimg.segment import segment_frame

    # The simulator renders with OpenCV, whose idle worker threads otherwise keep spinning
    # on the second core and stall every numba parallel region (~16 ms each on 2 cores).
    # Scoring never uses OpenCV; frames come from the TIFF reader.
    cv2.setNumThreads(1)
    from ctcimg.simulate import CartridgeSpec, render_frame

    spec = CartridgeSpec("BENCHSEG.1.1", n_frames=175, n_ctc=120, seed=20261125)
    numbers = [1, 88, 90, 52, 120][: max(1, args.frames)]  # frame 1 has the cartridge edge
    frames = [render_frame(spec, f)[0].astype(np.float32) for f in numbers]
    print(f"{len(frames)} simulated full-size frames {frames[0].shape}, "
          f"numba threads {numba.get_num_threads()}, {args.runs} runs each")
    ours, theirs = [], []
    for f, frame in zip(numbers, frames, strict=True):
        t_ours, ev = timed(segment_frame, frame, 0.64, runs=args.runs)
        t_sk, sk = timed(skimage_pipeline, frame, 0.64, runs=max(3, args.runs // 4))
        ours.append(t_ours)
        theirs.append(t_sk)
        print(f"frame {f:3d}: segment_frame {t_ours:7.2f} ms ({len(ev['label'])} events)   "
              f"skimage {t_sk:7.1f} ms ({int(sk['n'][0])} objects)   ratio {t_sk / t_ours:5.1f}x")
    t_ours, t_sk = statistics.median(ours), statistics.median(theirs)
    print(f"median: segment_frame {t_ours:.2f} ms/frame, skimage pipeline {t_sk:.1f} ms/frame, "
          f"ratio {t_sk / t_ours:.1f}x; 175 frames: {t_ours * 0.175:.2f} s vs {t_sk * 0.175:.1f} s")
    parts = ", ".join(f"{k} {v:.2f}" for k, v in stages(frames[-1], args.runs).items())
    print(f"segment_frame stages (frame {numbers[-1]}, ms): {parts}")
    tracemalloc.start()
    segment_frame(frames[-1], 0.64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak extra memory of one segment_frame call (NumPy allocations): "
          f"{peak / 1e6:.1f} MB (input frame {frames[-1].nbytes / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
