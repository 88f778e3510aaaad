"""Score one cartridge: frames → events → CTCs → HER2 bins → patient calls.

:func:`score_cartridge` streams the frames once (one frame in memory at a time),
segments each, gates the events, scores the CTCs' HER2 and cuts their thumbnails,
and returns a frozen :class:`CartridgeResult`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np

from ctcimg.channels import CHANNELS, HER2_BINS
from ctcimg.config import ScoringConfig, resolve_config
from ctcimg.edge import SIDES, cartridge_edge_depth, in_cartridge_edge
from ctcimg.errors import InputError
from ctcimg.focus import add_focus_features
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


def _needs_quoting(fields) -> bool:
    """Whether the csv module would quote any of ``fields`` (QUOTE_MINIMAL)."""
    return any(char in field for field in fields for char in ',"\r\n')


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
    from ctcimg.segment import FEATURE_COLUMNS, segment_frame

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
    profile, segment_params, gate_params = config.her2_profile, config.segment, config.gate
    thumbnails = config.thumbnails
    pixel = cartridge.pixel_size_um

    columns: dict[str, list[np.ndarray]] = {name: [] for name in
                                            [*FEATURE_COLUMNS, "in_cartridge_edge"]}
    frame_numbers: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    thumb_keys: list[tuple[int, int]] = []  # (frame position, row within frame)
    n_rejected_thumbs = 0
    for index in range(len(cartridge)):
        frame = cartridge.read_stored(index)  # pages restored as the kernels read them
        features = segment_frame(frame, pixel, segment_params)
        sides = cartridge.frame_info(index).edge_sides if cartridge.grid else SIDES
        features["in_cartridge_edge"] = in_cartridge_edge(
            features["x_px"], features["y_px"], cartridge_edge_depth(frame, sides),
            cartridge.frame_shape, EDGE_MARGIN_UM / pixel)
        for name in columns:
            columns[name].append(features[name])
        is_ctc, reason = gate(features, gate_params)
        frame_numbers.append(np.full(len(is_ctc), cartridge.frame_numbers[index], np.int32))
        if thumbnails:
            # no thumbnails for leukocytes (ck_negative) nor for unmeasured band/sheet objects
            # with a model, every event it will decide (after the loop: one call per
            # cartridge) gets a thumbnail, as the CTCs do without one
            uncapped = is_ctc if model is None else ~np.isin(reason, HARD_RULES)
            wanted = uncapped | ((reason != "ck_negative") & np.isfinite(features["her2_mean"]))
            for row in np.flatnonzero(wanted):
                if not uncapped[row]:
                    if n_rejected_thumbs >= MAX_REJECTED_THUMBNAILS:
                        continue
                    n_rejected_thumbs += 1
                thumbs.append(_thumbnail(frame, features["x_px"][row], features["y_px"][row]))
                thumb_keys.append((index, int(row)))
        if on_frame is not None:
            on_frame(index + 1)

    def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    features = {name: joined(parts, float) for name, parts in columns.items()}
    frames = joined(frame_numbers, np.int32)
    features["frame"] = frames
    add_focus_features(features, pixel)  # the frame blur needs every frame of the cartridge
    del features["frame"]
    events = {"event_id": np.arange(1, len(frames) + 1, dtype=np.int64), "frame": frames}
    for name, values in features.items():
        events[name] = values
        if name == "y_px":
            events["x_um"] = features["x_px"] * pixel
            events["y_um"] = features["y_px"] * pixel
    is_ctc, reason = gate(features, gate_params)  # the per-frame verdicts chose thumbnails
    probability = np.full(len(is_ctc), np.nan)
    if model is not None:
        is_ctc, reason, probability = model.decide(features, is_ctc, reason)
    events["is_ctc"] = is_ctc
    events["reject_reason"] = reason
    events["ctc_probability"] = probability
    signal = her2_signal(events)
    events["her2_signal"] = signal
    reference = leukocyte_reference(signal, _reference_leukocytes(events, gate_params),
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

    thumbnail_array = thumbnail_ids = None
    if thumbnails:
        offsets = np.cumsum([0] + [len(f) for f in frame_numbers])
        thumbnail_ids = np.array([offsets[i] + row + 1 for i, row in thumb_keys], dtype=np.int64)
        thumbnail_array = (np.stack(thumbs) if thumbs else
                           np.zeros((0, 4, THUMBNAIL_PX, THUMBNAIL_PX), np.uint8))

    height, width = cartridge.frame_shape
    info = {
        "n_frames": len(cartridge),
        "frame_width_px": width,
        "frame_height_px": height,
        "pixel_size_um": pixel,
        "pixel_size_source": cartridge.pixel_size_source,
        "layout": cartridge.layout,
        "page_channels": list(cartridge.page_channels),
        "grid": list(cartridge.grid) if cartridge.grid else None,
        "reviewer": _reviewer_agreement(cartridge, events),
        "her2_reference": reference.to_dict(),
        "gate_model": None if model is None else {
            "sha256": model.sha256, "label_source": model.info["label_source"]},
        "input_checksums": cartridge.checksums(),
        "input_stats": cartridge.file_stats(),
    }
    return CartridgeResult(
        cartridge_id=cartridge.id,
        path=str(cartridge.path),
        columns=events,
        config=config,
        info=info,
        thumbnails=thumbnail_array,
        thumbnail_events=thumbnail_ids,
    )


def her2_signal(features) -> np.ndarray:
    """Per-event HER2 signal: background-corrected FITC mean minus the local ring background.

    The mean is ``her2_core_mean`` where measured (the half of the event farthest from other
    events, so a CTC in a cluster is not charged its neighbours' HER2), else ``her2_mean``.
    Where the ring is empty (an event surrounded by others) the frame background alone is used.
    """
    mean = np.asarray(features["her2_mean"], float)
    if "her2_core_mean" in features:
        core = np.asarray(features["her2_core_mean"], float)
        mean = np.where(np.isfinite(core), core, mean)
    ring = np.asarray(features["her2_ring"], float)
    return mean - np.nan_to_num(ring, nan=0.0)


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


def _thumbnail(frame: StoredFrame, x: float, y: float) -> np.ndarray:
    """48 × 48 uint8 crop per channel centred on (x, y), background-subtracted, zero-padded."""
    half = THUMBNAIL_PX // 2
    _, height, width = frame.shape
    cx, cy = int(round(x)), int(round(y))
    row0, col0 = cy - half, cx - half
    crop = np.zeros((len(CHANNELS), THUMBNAIL_PX, THUMBNAIL_PX), np.float32)
    r0, r1 = max(row0, 0), min(row0 + THUMBNAIL_PX, height)
    c0, c1 = max(col0, 0), min(col0 + THUMBNAIL_PX, width)
    crop[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = frame.region(slice(r0, r1),
                                                                      slice(c0, c1))
    inside = crop[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0].reshape(len(CHANNELS), -1)
    k = (inside.shape[1] - 1) // 10  # 10th percentile (lower order statistic) as black level
    floor = np.partition(inside, k, axis=1)[:, k]
    scaled = (crop - floor[:, None, None]) * _THUMBNAIL_GAIN[:, None, None]
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
