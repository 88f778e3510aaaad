"""Score one cartridge: frames → events → CTCs → HER2 bins → patient calls.

:func:`score_cartridge` streams the frames once (one frame in memory at a time; the few
out of focus are read and segmented again, see :meth:`SegmentParams.out_of_focus`),
segments each, gates the events, scores the CTCs' HER2 and cuts their thumbnails,
and returns a frozen :class:`CartridgeResult`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from ctcimg.channels import CHANNELS, HER2_BINS
from ctcimg.config import ScoringConfig, resolve_config
from ctcimg.edge import SIDES, cartridge_edge_depth, in_cartridge_edge
from ctcimg.errors import InputError
from ctcimg.focus import add_focus_features, frame_blurs
from ctcimg.gate import HARD_RULES, GateParams, gate
from ctcimg.her2 import MIN_REFERENCE_LEUKOCYTES, Her2Profile, leukocyte_reference
from ctcimg.io.tiff import StoredFrame
from ctcimg.results import (  # noqa: F401 - CartridgeResult and the file names re-exported
    EVENTS_FILE,
    SUMMARY_FILE,
    THUMBNAIL_DISPLAY_MAX,
    THUMBNAIL_PX,
    THUMBNAILS_FILE,
    CartridgeResult,
)
from ctcimg.rules import PositivityRule

#: Rejected events get thumbnails too (for the review report), up to this many per cartridge;
#: ck_negative events (mostly leukocytes) and objects above SegmentParams.max_object_px (the
#: cartridge-wall band, debris sheets: not measured) are not included.
MAX_REJECTED_THUMBNAILS = 2000
#: Reviewer (XML) events and ctcimg CTCs within this distance are the same cell.
REVIEWER_MATCH_UM = 8.0
#: Events closer than this to the bright cartridge-edge band are rejected as "cartridge_edge".
EDGE_MARGIN_UM = 8.0


def score_cartridge(
    cartridge,
    *,
    channels=None,
    pixel_size_um: float | None = None,
    config: ScoringConfig | str | os.PathLike | None = None,
    her2_profile: str | os.PathLike | Her2Profile | None = None,
    rule: str | PositivityRule | Mapping | None = None,
    segment_params=None,
    gate_params: GateParams | None = None,
    thumbnails: bool | None = None,
    on_frame: Callable[[int], None] | None = None,
    gate_model=None,
) -> CartridgeResult:
    """Score a cartridge: find the CTCs, bin their HER2, call the patient.

    Parameters
    ----------
    cartridge
        A cartridge folder (path) or an open :class:`~ctcimg.io.cellsearch.Cartridge`.
    channels, pixel_size_um
        Passed to :func:`ctcimg.read_cartridge` when ``cartridge`` is a path.
    config
        A :class:`~ctcimg.config.ScoringConfig`, or the path of a config file (TOML, JSON,
        or a result's summary.json); default: the defaults of every parameter. The
        keywords below, when given (not None), take precedence over it.
    her2_profile
        HER2 threshold profile, or a path to its JSON; default :data:`ctcimg.her2.DEFAULT_PROFILE`.
    rule
        Rule for the headline call: "liu" (default), "pestrin", "riethdorf" or a custom rule.
    segment_params, gate_params
        Segmentation and gate parameters (defaults documented in their classes).
    thumbnails
        Cut 48 × 48 px thumbnails of CTCs and rejected CK+ candidates while scoring
        (default True).
    on_frame
        Called with the number of frames done after each frame (for progress bars).
    gate_model
        The path of a lab's learned CTC decision (the JSON file from ``ctcimg train``;
        it becomes the config's ``gate_model``, and its checksum is recorded): the gate's
        hard rules apply first, the model decides the rest (``ctc_probability``;
        rejections get reason ``classifier``).

    Returns
    -------
    CartridgeResult

    Examples
    --------
    >>> result = score_cartridge("fixtures/demo/SIM000001.1.1")  # doctest: +SKIP
    >>> result.ctc_count, result.her2_counts, result.call("liu")  # doctest: +SKIP
    """
    from ctcimg.io.cellsearch import Cartridge, read_cartridge
    from ctcimg.learn import load_gate_model
    from ctcimg.segment import FEATURE_COLUMNS

    if gate_model is not None and not isinstance(gate_model, (str, os.PathLike)):
        raise InputError("gate_model must be the path of a model file from 'ctcimg train'")
    config = resolve_config(config, her2_profile=her2_profile, rule=rule,
                            segment_params=segment_params, gate_params=gate_params,
                            thumbnails=thumbnails, gate_model=gate_model)
    model = load_gate_model(config.gate_model)
    if model is not None:
        model.require_features(list(FEATURE_COLUMNS))
    if not isinstance(cartridge, Cartridge):
        cartridge = read_cartridge(cartridge, channels=channels, pixel_size_um=pixel_size_um)
    frames = _score_frames(cartridge, config, model, on_frame)
    blurs = _segment_defocused_again(cartridge, frames, config, model)
    events, reference = _events_table(frames, cartridge, config, model, blurs)
    return CartridgeResult(
        cartridge_id=cartridge.id,
        path=str(cartridge.path),
        columns=events,
        config=config,
        info=_result_info(cartridge, events, reference, model,
                          _out_of_focus_frames(events, blurs, config.gate.defocus_blur_px2)),
        thumbnails=frames.thumbnail_array() if config.thumbnails else None,
        thumbnail_events=frames.thumbnail_event_ids() if config.thumbnails else None,
    )


@dataclass(frozen=True)
class _FrameEvents:
    """One frame's events: features (with ``in_cartridge_edge``), gate verdicts, and the
    thumbnails it may contribute, row by row: ``thumbnail_rows`` in order, whether each is
    outside the cap on rejected thumbnails (``uncapped``), and its crop (None for a capped
    row beyond the room the cap had left when the frame was cut)."""

    features: dict[str, np.ndarray]
    is_ctc: np.ndarray
    reason: np.ndarray
    thumbnail_rows: np.ndarray
    uncapped: np.ndarray
    crops: list


def _frame_events(frame: StoredFrame, edge_sides: tuple[str, ...], pixel: float,
                  config: ScoringConfig, decided_by_model: bool, room: int) -> _FrameEvents:
    """Segment, edge-check and gate one frame and cut its thumbnails: at most ``room``
    of the capped ones (rejected events), the others all."""
    from ctcimg.segment import segment_frame

    features = segment_frame(frame, pixel, config.segment)
    features["in_cartridge_edge"] = in_cartridge_edge(
        features["x_px"], features["y_px"], cartridge_edge_depth(frame, edge_sides),
        frame.shape[1:], EDGE_MARGIN_UM / pixel)
    is_ctc, reason = gate(features, config.gate)
    rows = np.zeros(0, np.int64)
    uncapped = np.zeros(0, bool)
    crops: list = []
    if config.thumbnails:
        # no thumbnails for leukocytes (ck_negative) nor for unmeasured band/sheet objects;
        # with a model, every event it will decide (after the loop: one call per
        # cartridge) gets a thumbnail, as the CTCs do without one
        free = is_ctc if not decided_by_model else ~np.isin(reason, HARD_RULES)
        rows = np.flatnonzero(free | ((reason != "ck_negative")
                                      & np.isfinite(features["her2_mean"])))
        uncapped = free[rows]
        cut = uncapped | (np.cumsum(~uncapped) <= room)
        crops = [None] * len(rows)
        for position, crop in zip(np.flatnonzero(cut).tolist(),
                                  _thumbnails(frame, features["x_px"][rows[cut]],
                                              features["y_px"][rows[cut]]), strict=True):
            crops[position] = crop
    return _FrameEvents(features, is_ctc, reason, rows, uncapped, crops)


class _Frames:
    """The frames' events collected in frame order, and their thumbnails: every uncapped
    one, and rejected ones until :data:`MAX_REJECTED_THUMBNAILS`."""

    def __init__(self) -> None:
        self.parts: list[_FrameEvents] = []
        self.frame_numbers: list[np.ndarray] = []
        self.crops: list[np.ndarray] = []
        self.crop_keys: list[tuple[int, int]] = []  # (frame position, row within frame)
        self.rejected_crops = 0

    @property
    def room(self) -> int:
        """Rejected thumbnails the cap still allows."""
        return MAX_REJECTED_THUMBNAILS - self.rejected_crops

    def add(self, frame_number: int, events: _FrameEvents) -> None:
        self.parts.append(events)
        self.frame_numbers.append(np.full(len(events.is_ctc), frame_number, np.int32))
        self._keep_crops(len(self.parts) - 1, events)

    def drop_thumbnails(self, index: int) -> None:
        """Forget the thumbnails of the frame at ``index`` (to be scored again), giving
        the rejected ones' room back to the cap."""
        part = self.parts[index]
        uncapped = dict(zip(part.thumbnail_rows.tolist(), part.uncapped.tolist(), strict=True))
        old = [k for k, (position, _) in enumerate(self.crop_keys) if position == index]
        self.rejected_crops -= sum(not uncapped[self.crop_keys[k][1]] for k in old)
        for k in reversed(old):
            del self.crops[k], self.crop_keys[k]

    def replace(self, index: int, frame_number: int, events: _FrameEvents) -> None:
        """Put ``events`` in place of the events of the frame at ``index``, after
        :meth:`drop_thumbnails`; the thumbnails stay in frame order."""
        self.parts[index] = events
        self.frame_numbers[index] = np.full(len(events.is_ctc), frame_number, np.int32)
        self._keep_crops(index, events)
        order = sorted(range(len(self.crop_keys)), key=self.crop_keys.__getitem__)
        self.crops = [self.crops[k] for k in order]
        self.crop_keys = [self.crop_keys[k] for k in order]

    def _keep_crops(self, index: int, events: _FrameEvents) -> None:
        for row, free, crop in zip(events.thumbnail_rows.tolist(), events.uncapped.tolist(),
                                   events.crops, strict=True):
            if not free:
                if self.rejected_crops >= MAX_REJECTED_THUMBNAILS:
                    continue
                self.rejected_crops += 1
            self.crops.append(crop)
            self.crop_keys.append((index, row))
        events.crops.clear()  # kept once, in self.crops

    def thumbnail_array(self) -> np.ndarray:
        return (np.stack(self.crops) if self.crops else
                np.zeros((0, len(CHANNELS), THUMBNAIL_PX, THUMBNAIL_PX), np.uint8))

    def thumbnail_event_ids(self) -> np.ndarray:
        offsets = np.cumsum([0] + [len(f) for f in self.frame_numbers])
        return np.array([offsets[i] + row + 1 for i, row in self.crop_keys], dtype=np.int64)


def _score_frames(cartridge, config: ScoringConfig, model,
                  on_frame: Callable[[int], None] | None) -> _Frames:
    """Every frame's events, in frame order: one frame after another, or, when the kernels
    may use more than one thread, that many frames side by side, each in a thread of its
    own (its kernels serial in it) and read ahead by this one."""
    from ctcimg.kernels.threads import thread_count

    frames = _Frames()
    workers = min(thread_count(), len(cartridge))

    def frame_events(index: int, frame: StoredFrame, room: int) -> _FrameEvents:
        sides = cartridge.frame_info(index).edge_sides if cartridge.grid else SIDES
        return _frame_events(frame, sides, cartridge.pixel_size_um, config, model is not None,
                             room)

    def collect(index: int, events: _FrameEvents) -> None:
        frames.add(cartridge.frame_numbers[index], events)
        if on_frame is not None:
            on_frame(index + 1)

    if workers < 2:
        for index in range(len(cartridge)):
            # pages as stored, restored as the kernels read them
            collect(index, frame_events(index, cartridge.read_stored(index), frames.room))
        return frames
    _frames_side_by_side(cartridge, workers, frame_events, collect, lambda: frames.room)
    return frames


def _frames_side_by_side(cartridge, workers: int, frame_events, collect, room) -> None:
    """Read the frames in this thread and score them in ``workers`` threads, at most one
    frame per worker ahead of the oldest not yet collected; collect them in order."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from ctcimg.kernels.threads import kernels_in_this_thread_only

    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="ctcimg-frame",
                            initializer=kernels_in_this_thread_only) as pool:
        try:
            for index in range(len(cartridge)):
                # a buffer of its own: the frame is scored while the next ones are read
                frame = cartridge.read_stored(index, own_buffer=True)
                pending.append((index, pool.submit(frame_events, index, frame, room())))
                if len(pending) > workers:
                    done, future = pending.popleft()
                    collect(done, future.result())
            while pending:
                done, future = pending.popleft()
                collect(done, future.result())
        finally:
            for _, future in pending:
                future.cancel()


def _segment_defocused_again(cartridge, frames: _Frames, config: ScoringConfig, model
                             ) -> dict[int, float]:
    """Each frame's blur (:func:`ctcimg.focus.frame_blurs`), known once every frame has
    been segmented; the frames more out of focus than the gate's ``defocus_blur_px2`` are
    segmented again with the out-of-focus limits of the nucleus cut
    (:meth:`ctcimg.segment.SegmentParams.out_of_focus`), their events and thumbnails
    replaced. Their blur stays the one measured on the first segmentation, so
    ``frame_blur_px2`` in the events table says which frames were segmented again."""
    numbers = np.concatenate(frames.frame_numbers) if frames.frame_numbers else \
        np.zeros(0, np.int32)
    moments = np.concatenate([part.features["dapi_moment_px2"] for part in frames.parts]) \
        if frames.parts else np.zeros(0)
    blurs = frame_blurs(numbers, moments)
    out_of_focus = config.segment.out_of_focus()
    threshold = config.gate.defocus_blur_px2
    if out_of_focus == config.segment or not math.isfinite(threshold):
        return blurs
    again = replace(config, segment=out_of_focus)
    for index, number in enumerate(cartridge.frame_numbers):
        if not blurs.get(int(number), -math.inf) > threshold:
            continue
        frames.drop_thumbnails(index)
        sides = cartridge.frame_info(index).edge_sides if cartridge.grid else SIDES
        frames.replace(index, int(number), _frame_events(
            cartridge.read_stored(index), sides, cartridge.pixel_size_um, again,
            model is not None, frames.room))
    return blurs


def _events_table(frames: _Frames, cartridge, config: ScoringConfig, model,
                  blurs: dict[int, float]) -> tuple[dict[str, np.ndarray], object]:
    """The events table's columns (:func:`ctcimg.results.event_dtypes` order) and the
    sample's leukocyte HER2 reference; ``blurs``: each frame's blur."""
    from ctcimg.segment import FEATURE_COLUMNS

    def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    pixel, profile = cartridge.pixel_size_um, config.her2_profile
    features = {name: joined([part.features[name] for part in frames.parts], float)
                for name in [*FEATURE_COLUMNS, "in_cartridge_edge"]}
    frame_numbers = joined(frames.frame_numbers, np.int32)
    add_focus_features(features, frame_numbers, pixel, blurs)
    events = {"event_id": np.arange(1, len(frame_numbers) + 1, dtype=np.int64),
              "frame": frame_numbers}
    for name, values in features.items():
        events[name] = values
        if name == "y_px":
            events["x_um"] = features["x_px"] * pixel
            events["y_um"] = features["y_px"] * pixel
    is_ctc, reason = gate(features, config.gate)  # the per-frame verdicts chose thumbnails
    probability = np.full(len(is_ctc), np.nan)
    if model is not None:
        is_ctc, reason, probability = model.decide(features, is_ctc, reason)
    events["is_ctc"] = is_ctc
    events["reject_reason"] = reason
    events["ctc_probability"] = probability
    signal = her2_signal(events, config.gate.defocus_blur_px2)
    events["her2_signal"] = signal
    reference = leukocyte_reference(signal, _reference_leukocytes(events, config.gate),
                                    events["frame"])
    events["her2_signal_referenced"] = signal - (np.nan if reference.median is None
                                                 else reference.median)
    if profile.reference == "leukocytes" and reference.median is None:
        raise InputError(f"only {reference.n} leukocytes found; the HER2 profile "
                         f"{profile.name!r} is referenced to the sample's leukocytes and needs "
                         f"at least {MIN_REFERENCE_LEUKOCYTES}", cartridge.path)
    binned = events[profile.signal_column]
    labels = np.array(HER2_BINS, dtype=object)[profile.score(np.nan_to_num(binned))]
    events["her2_score"] = np.where(is_ctc, labels, "")
    events["reviewer_assigned"] = reviewer_labels(
        cartridge.reviewer_events, events["frame"], events["x_px"], events["y_px"],
        REVIEWER_MATCH_UM / pixel)
    return events, reference


def _out_of_focus_frames(events: Mapping[str, np.ndarray], blurs: dict[int, float],
                         defocus_blur_px2: float) -> list[dict]:
    """summary.json's ``out_of_focus_frames``: frame number, blur and CTC count of each
    frame more out of focus than ``defocus_blur_px2``, in frame order."""
    frames = np.asarray(events["frame"])
    is_ctc = np.asarray(events["is_ctc"], bool)
    return [{"frame": int(number), "blur_px2": round(float(blur), 2),
             "ctcs": int(np.count_nonzero(is_ctc & (frames == number)))}
            for number, blur in sorted(blurs.items()) if blur > defocus_blur_px2]


def _result_info(cartridge, events: Mapping[str, np.ndarray], reference, model,
                 out_of_focus_frames: list[dict]) -> dict:
    """The result's ``info``: summary.json keys ``n_frames`` to ``input_stats``."""
    height, width = cartridge.frame_shape
    return {
        "n_frames": len(cartridge),
        "frame_width_px": width,
        "frame_height_px": height,
        "pixel_size_um": cartridge.pixel_size_um,
        "pixel_size_source": cartridge.pixel_size_source,
        "layout": cartridge.layout,
        "page_channels": list(cartridge.page_channels),
        "grid": list(cartridge.grid) if cartridge.grid else None,
        "reviewer": _reviewer_agreement(cartridge, events),
        "her2_reference": reference.to_dict(),
        "out_of_focus_frames": out_of_focus_frames,
        "gate_model": None if model is None else {
            "sha256": model.sha256, "label_source": model.info["label_source"]},
        "input_checksums": cartridge.checksums(),
        "input_stats": cartridge.file_stats(),
    }


def her2_signal(features, defocus_blur_px2: float = np.inf) -> np.ndarray:
    """Per-event HER2 signal: background-corrected FITC mean minus the local ring background.

    The mean is ``her2_core_mean`` where measured (the half of the event farthest from other
    CK+ cells brighter in HER2, so a CTC in a cluster is not charged its neighbours' HER2),
    else ``her2_mean``.
    Where the ring is empty (an event surrounded by others) the frame background alone is
    used, and so it is in frames more out of focus than ``defocus_blur_px2``
    (``frame_blur_px2``, :mod:`ctcimg.focus`): there the ring, 1-3 px outside the event,
    lies within the cell's own blurred light (PSF sigma 2.5-4.5 px) and would take a third
    to a half of a bright cell's signal away (development seeds 1001-1005: calibrated bins
    0.982 / 0.986 → 0.989 / 0.990 calibrating on one half and scoring the other).
    """
    mean = np.asarray(features["her2_mean"], float)
    if "her2_core_mean" in features:
        core = np.asarray(features["her2_core_mean"], float)
        mean = np.where(np.isfinite(core), core, mean)
    ring = np.nan_to_num(np.asarray(features["her2_ring"], float), nan=0.0)
    if "frame_blur_px2" in features:
        blurred = np.asarray(features["frame_blur_px2"], float) > defocus_blur_px2
        ring = np.where(blurred, 0.0, ring)
    return mean - ring


def _reference_leukocytes(events: Mapping[str, np.ndarray], gate_params: GateParams
                          ) -> np.ndarray:
    """Events that are clearly leukocytes, the sample's HER2-negative internal control:
    rejected only for lack of CK, with a nucleus, CD45 above the gate's limit and a
    cell-sized diameter (6-16 µm)."""
    cd45 = events["cd45_mean"] - np.nan_to_num(events["cd45_ring"], nan=0.0)
    diameter = events["diameter_um"]
    return ((events["reject_reason"] == "ck_negative")
            & (events["dapi_area_um2"] >= gate_params.min_dapi_area_um2)
            & (cd45 > gate_params.max_cd45_mean)
            & (diameter >= gate_params.min_diameter_um) & (diameter <= 16.0))


def _thumbnails(frame: StoredFrame, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """48 × 48 uint8 crops per channel centred on each (x, y): background-subtracted (the
    crop's 10th percentile, lower order statistic, is black), scaled by the channel's
    display maximum, zero-padded beyond the frame. Crops wholly inside the frame are cut
    by a kernel (:mod:`ctcimg.kernels.thumbnails`); the others one by one here."""
    from ctcimg.kernels.thumbnails import inside_thumbnails

    half = THUMBNAIL_PX // 2
    _, height, width = frame.shape
    row0 = np.rint(np.asarray(y, float)).astype(np.int64) - half
    col0 = np.rint(np.asarray(x, float)).astype(np.int64) - half
    inside = (row0 >= 0) & (col0 >= 0) & (row0 + THUMBNAIL_PX <= height) \
        & (col0 + THUMBNAIL_PX <= width)
    crops: list = [None] * len(row0)
    if inside.any():
        cut = np.empty((int(inside.sum()), len(frame.pages), THUMBNAIL_PX, THUMBNAIL_PX),
                       np.uint8)
        inside_thumbnails(frame.pages, frame.affine, row0[inside], col0[inside], THUMBNAIL_PX,
                          _THUMBNAIL_GAIN, cut)
        for position, crop in zip(np.flatnonzero(inside).tolist(), cut, strict=True):
            crops[position] = crop
    for position in np.flatnonzero(~inside).tolist():
        crops[position] = _edge_thumbnail(frame, int(row0[position]), int(col0[position]))
    return crops


def _edge_thumbnail(frame: StoredFrame, row0: int, col0: int) -> np.ndarray:
    """The crop of :func:`_thumbnails` whose corner ``(row0, col0)`` leaves the frame."""
    _, height, width = frame.shape
    crop = np.zeros((len(CHANNELS), THUMBNAIL_PX, THUMBNAIL_PX), np.float32)
    r0, r1 = max(row0, 0), min(row0 + THUMBNAIL_PX, height)
    c0, c1 = max(col0, 0), min(col0 + THUMBNAIL_PX, width)
    crop[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = frame.region(slice(r0, r1),
                                                                      slice(c0, c1))
    inside = crop[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0].reshape(len(CHANNELS), -1)
    rank = (inside.shape[1] - 1) // 10  # the 10th percentile, lower order statistic
    black = np.partition(inside, rank, axis=1)[:, rank]
    scaled = (crop - black[:, None, None]) * _THUMBNAIL_GAIN[:, None, None]
    return np.clip(scaled, 0, 255).astype(np.uint8)


_THUMBNAIL_GAIN = np.array([255.0 / THUMBNAIL_DISPLAY_MAX[c] for c in CHANNELS], np.float32)


def reviewer_labels(reviewer_events, frames: np.ndarray, x_px: np.ndarray, y_px: np.ndarray,
                    limit_px: float) -> np.ndarray:
    """The XML reviewer label of every event: "true", "false" or "" (not presented).

    Reviewer events and candidate events of the same frame pair up one to one, nearest
    pairs first, when at most ``limit_px`` apart; an event takes its reviewer event's
    ``assigned`` ("false": presented to the operator, not confirmed as a CTC).
    """
    labels = np.full(len(frames), "", dtype=object)
    by_frame: dict[int, list] = {}
    for event in reviewer_events:
        by_frame.setdefault(event.frame, []).append(event)
    for frame, presented in by_frame.items():
        rows = np.flatnonzero(frames == frame)
        if not rows.size:
            continue
        rx = np.array([e.x_px for e in presented])[:, None]
        ry = np.array([e.y_px for e in presented])[:, None]
        distance = np.hypot(x_px[rows][None, :] - rx, y_px[rows][None, :] - ry)
        near_review, near_event = np.nonzero(distance <= limit_px)
        order = np.argsort(distance[near_review, near_event], kind="stable")
        review_used, event_used = set(), set()
        for r, e in zip(near_review[order].tolist(), near_event[order].tolist(), strict=True):
            if r not in review_used and e not in event_used:
                review_used.add(r)
                event_used.add(e)
                labels[rows[e]] = "true" if presented[r].assigned else "false"
    return labels


def _reviewer_agreement(cartridge, events: Mapping[str, np.ndarray]) -> dict:
    """How ctcimg's CTCs match the reviewer-assigned events of the XML (within 8 µm), and
    ctcimg vs the operator over the presented events (those with a reviewer label)."""
    from ctcimg.learn import Agreement

    assigned = [e for e in cartridge.reviewer_events if e.assigned]
    if not cartridge.reviewer_events:
        return {"reviewer_ctcs": None}
    is_ctc = events["is_ctc"]
    frame, x_px, y_px = (events[name][is_ctc] for name in ("frame", "x_px", "y_px"))
    limit_px = REVIEWER_MATCH_UM / cartridge.pixel_size_um
    matched = 0
    used: set[int] = set()  # positions among the CTCs
    for event in assigned:
        candidates = np.flatnonzero(frame == event.frame)
        distance = np.hypot(x_px[candidates] - event.x_px, y_px[candidates] - event.y_px)
        for order in np.argsort(distance, kind="stable"):
            if distance[order] > limit_px:
                break
            if candidates[order] not in used:
                used.add(int(candidates[order]))
                matched += 1
                break
    presented = events["reviewer_assigned"] != ""
    versus = Agreement.of(events["reviewer_assigned"][presented] == "true", is_ctc[presented])
    return {
        "reviewer_ctcs": len(assigned),
        "ctcimg_ctcs": int(np.count_nonzero(is_ctc)),
        "matched": matched,
        "match_distance_um": REVIEWER_MATCH_UM,
        "presented_events": len(cartridge.reviewer_events),
        "presented_matched": versus.n,
        "vs_operator": {k: v for k, v in versus.to_dict().items() if k != "n"},
    }
