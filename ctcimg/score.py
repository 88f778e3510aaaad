"""Score one cartridge: frames → events → CTCs → HER2 bins → patient calls.

:func:`score_cartridge` streams the frames once (one frame in memory at a time),
segments each, gates the events, scores the CTCs' HER2 and cuts their thumbnails,
and returns a frozen :class:`CartridgeResult`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ctcimg import __version__
from ctcimg.channels import CHANNELS, HER2_BINS
from ctcimg.edge import SIDES, cartridge_edge_depth, in_cartridge_edge
from ctcimg.errors import InputError
from ctcimg.gate import REJECT_REASONS, GateParams, gate
from ctcimg.her2 import MIN_REFERENCE_LEUKOCYTES, Her2Profile, leukocyte_reference, load_profile
from ctcimg.io.tiff import StoredFrame
from ctcimg.rules import DEFAULT_RULE, RULES, PositivityRule, parse_rule

#: Side of a thumbnail, pixels.
THUMBNAIL_PX = 48
#: 12-bit intensity (above the crop's background) shown as white in thumbnails, per channel.
THUMBNAIL_DISPLAY_MAX = {"DAPI": 1500.0, "CK": 1500.0, "CD45": 600.0, "HER2": 600.0}
#: Rejected events get thumbnails too (for the review report), up to this many per cartridge;
#: ck_negative events (mostly leukocytes) and objects above SegmentParams.max_object_px (the
#: cartridge-wall band, debris sheets: not measured) are not included.
MAX_REJECTED_THUMBNAILS = 2000
#: Reviewer (XML) events and ctcimg CTCs within this distance are the same cell.
REVIEWER_MATCH_UM = 8.0
#: Events closer than this to the bright cartridge-edge band are rejected as "cartridge_edge".
EDGE_MARGIN_UM = 8.0

EVENTS_FILE = "events.csv"
SUMMARY_FILE = "summary.json"
THUMBNAILS_FILE = "thumbnails.npz"


@dataclass(frozen=True)
class CartridgeResult:
    """The outcome of scoring one cartridge.

    Attributes
    ----------
    cartridge_id : str
    path : str
        The cartridge folder that was scored.
    columns : dict of str to ndarray
        The events table as one array per column, in column order (see the README for
        every column); :attr:`events` is the same as a pandas DataFrame.
    rule : PositivityRule
        The rule chosen for the headline call; :meth:`call` takes any other.
    her2_profile : Her2Profile
    parameters : dict
        Every parameter that shaped the result (segmentation, gate, profile, rule).
    info : dict
        Frames, frame size, pixel size, channels, input checksums, reviewer agreement.
    thumbnails : ndarray or None
        uint8 (n, 4, 48, 48), channel order DAPI, CK, CD45, HER2, for ``thumbnail_events``.
    thumbnail_events : ndarray or None
        ``event_id`` of each thumbnail.
    """

    cartridge_id: str
    path: str
    columns: Mapping[str, np.ndarray] = field(repr=False)
    rule: PositivityRule
    her2_profile: Her2Profile
    parameters: dict
    info: dict
    thumbnails: np.ndarray | None = field(default=None, repr=False)
    thumbnail_events: np.ndarray | None = field(default=None, repr=False)

    @cached_property
    def events(self):
        """One row per candidate event (pandas DataFrame; built on first use)."""
        import pandas as pd

        return pd.DataFrame(dict(self.columns), copy=False)

    @property
    def ctcs(self):
        """The events that passed the gate (pandas DataFrame)."""
        return self.events[self.events["is_ctc"]]

    @property
    def n_events(self) -> int:
        """Number of candidate events (rows of :attr:`events`)."""
        return len(self.columns["event_id"])

    @property
    def ctc_count(self) -> int:
        return int(np.count_nonzero(self.columns["is_ctc"]))

    @property
    def her2_counts(self) -> dict[str, int]:
        """Number of CTCs per HER2 bin, keyed "0", "1+", "2+", "3+"."""
        scores = self.columns["her2_score"][self.columns["is_ctc"]]
        return {b: int(np.count_nonzero(scores == b)) for b in HER2_BINS}

    @property
    def her2_percent(self) -> dict[str, float | None]:
        """Percentage of CTCs per HER2 bin (None for every bin when there are no CTCs)."""
        total = self.ctc_count
        return {b: (round(100.0 * n / total, 2) if total else None)
                for b, n in self.her2_counts.items()}

    def call(self, rule: str | PositivityRule | Mapping | None = None) -> str:
        """Patient call under ``rule`` (default: the result's rule): positive, negative or
        not_evaluable."""
        return parse_rule(rule if rule is not None else self.rule).call(self.her2_counts)

    @property
    def calls(self) -> dict[str, str]:
        """Calls under every built-in rule, plus the chosen rule if it is a custom one."""
        calls = {name: rule.call(self.her2_counts) for name, rule in RULES.items()}
        calls.setdefault(self.rule.name, self.call())
        return calls

    def summary(self) -> dict:
        """Everything summary.json holds."""
        reasons = self.columns["reject_reason"][~self.columns["is_ctc"]]
        return {
            "cartridge_id": self.cartridge_id,
            "path": self.path,
            "engine": {"name": "ctcimg", "version": __version__},
            "ctc_count": self.ctc_count,
            "her2_counts": self.her2_counts,
            "her2_percent": self.her2_percent,
            "rule": self.rule.name,
            "call": self.call(),
            "calls": self.calls,
            "n_events": self.n_events,
            "reject_counts": {r: int(np.count_nonzero(reasons == r)) for r in REJECT_REASONS},
            **self.info,
            "parameters": self.parameters,
        }

    def __str__(self) -> str:
        counts, percent = self.her2_counts, self.her2_percent
        bins = "  ".join(
            f"{b}: {counts[b]}" + (f" ({percent[b]:.1f} %)" if percent[b] is not None else "")
            for b in HER2_BINS
        )
        lines = [
            f"cartridge {self.cartridge_id}: {self.info['n_frames']} frames, "
            f"{self.n_events} candidate events",
            f"CTCs      {self.ctc_count}",
            f"HER2      {bins}",
            f"call      {self.call()}  ({self.rule.describe()})",
            "other     " + ", ".join(f"{n}: {c}" for n, c in self.calls.items()
                                    if n != self.rule.name),
        ]
        reviewer = self.info.get("reviewer")
        if reviewer and reviewer.get("reviewer_ctcs") is not None:
            lines.append(
                f"reviewer  {reviewer['reviewer_ctcs']} CTCs assigned in the XML; "
                f"{reviewer['matched']} found by ctcimg"
            )
        return "\n".join(lines)

    def to_dir(self, out_dir: str | os.PathLike) -> Path:
        """Write events.csv, thumbnails.npz (if any) and summary.json (last) into ``out_dir``.

        Each file is written atomically, and summary.json only after the others, so a
        folder with a summary.json holds a complete result.
        """
        from ctcimg.io.atomic import write_atomic, write_text_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY_FILE).unlink(missing_ok=True)
        thumbnails_written = None
        if self.thumbnails is not None:
            from concurrent.futures import ThreadPoolExecutor

            arrays = {
                "thumbnails": self.thumbnails,
                "event_id": self.thumbnail_events,
                "channels": np.array(CHANNELS),
                "display_max": np.array([THUMBNAIL_DISPLAY_MAX[c] for c in CHANNELS]),
            }
            # uncompressed: deflating took 0.14 s a cartridge to halve 6 MB beside 1 GB of
            # images; written (and synced) in a thread while the CSV text is formatted
            pool = ThreadPoolExecutor(max_workers=1)
            thumbnails_written = pool.submit(write_atomic, out / THUMBNAILS_FILE,
                                             lambda stream: np.savez(stream, **arrays))
            pool.shutdown(wait=False)
        try:
            write_text_atomic(out / EVENTS_FILE, _csv_text(self.columns))
        finally:
            if thumbnails_written is not None:
                thumbnails_written.result()
        write_text_atomic(out / SUMMARY_FILE, json.dumps(self.summary(), indent=2) + "\n")
        return out


def _csv_text(columns: Mapping[str, np.ndarray]) -> str:
    """The CSV text of a table given as column arrays: byte for byte what
    ``pandas.DataFrame(columns).to_csv(index=False, float_format="%.6g")`` writes, several
    times faster.

    pandas formats every float through several layers of Python per value (0.43 s for
    the 10^4 × 47 events of a cartridge); here each float column is one list
    comprehension, and the rows are joined with ``str.join`` — the csv module (which
    quotes) only when a text field holds a character that needs quoting.
    """
    texts = []
    needs_quoting = False
    for values in columns.values():
        values = np.asarray(values)
        if values.dtype.kind == "f":
            texts.append(["" if v != v else f"{v:.6g}" for v in values.tolist()])
        elif values.dtype.kind in "OUS":  # text: None is an empty field, as csv writes it
            texts.append(["" if v is None else str(v) for v in values.tolist()])
            needs_quoting = needs_quoting or _needs_quoting(set(texts[-1]))
        else:
            texts.append(list(map(str, values.tolist())))
    if not needs_quoting and not _needs_quoting(columns):
        rows = "\n".join(map(",".join, zip(*texts, strict=True)))
        return ",".join(columns) + "\n" + (rows + "\n" if rows else "")
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*texts, strict=True))
    return text.getvalue()


def _needs_quoting(fields) -> bool:
    """Whether the csv module would quote any of ``fields`` (QUOTE_MINIMAL)."""
    return any(char in field for field in fields for char in ',"\r\n')


def score_cartridge(
    cartridge,
    *,
    channels=None,
    pixel_size_um: float | None = None,
    her2_profile: str | os.PathLike | Her2Profile | None = None,
    rule: str | PositivityRule | Mapping = DEFAULT_RULE,
    segment_params=None,
    gate_params: GateParams | None = None,
    thumbnails: bool = True,
    on_frame: Callable[[int], None] | None = None,
) -> CartridgeResult:
    """Score a cartridge: find the CTCs, bin their HER2, call the patient.

    Parameters
    ----------
    cartridge
        A cartridge folder (path) or an open :class:`~ctcimg.io.cellsearch.Cartridge`.
    channels, pixel_size_um
        Passed to :func:`ctcimg.read_cartridge` when ``cartridge`` is a path.
    her2_profile
        HER2 threshold profile, or a path to its JSON; default :data:`ctcimg.her2.DEFAULT_PROFILE`.
    rule
        Rule for the headline call: "liu" (default), "pestrin", "riethdorf" or a custom rule.
    segment_params, gate_params
        Segmentation and gate parameters (defaults documented in their classes).
    thumbnails
        Cut 48 × 48 px thumbnails of CTCs and rejected CK+ candidates while scoring.
    on_frame
        Called with the number of frames done after each frame (for progress bars).

    Returns
    -------
    CartridgeResult

    Examples
    --------
    >>> result = score_cartridge("fixtures/demo/SIM000001.1.1")  # doctest: +SKIP
    >>> result.ctc_count, result.her2_counts, result.call("liu")  # doctest: +SKIP
    """

    from ctcimg.io.cellsearch import Cartridge, read_cartridge
    from ctcimg.segment import FEATURE_COLUMNS, SegmentParams, segment_frame

    if not isinstance(cartridge, Cartridge):
        cartridge = read_cartridge(cartridge, channels=channels, pixel_size_um=pixel_size_um)
    profile = load_profile(her2_profile)
    chosen_rule = parse_rule(rule)
    segment_params = segment_params or SegmentParams()
    gate_params = gate_params or GateParams()
    pixel = cartridge.pixel_size_um

    columns: dict[str, list[np.ndarray]] = {name: [] for name in
                                            [*FEATURE_COLUMNS, "in_cartridge_edge"]}
    frame_numbers: list[np.ndarray] = []
    verdicts: list[tuple[np.ndarray, np.ndarray]] = []
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
        verdicts.append((is_ctc, reason))
        frame_numbers.append(np.full(len(is_ctc), cartridge.frame_numbers[index], np.int32))
        if thumbnails:
            # no thumbnails for leukocytes (ck_negative) nor for unmeasured band/sheet objects
            wanted = is_ctc | ((reason != "ck_negative") & np.isfinite(features["her2_mean"]))
            for row in np.flatnonzero(wanted):
                if not is_ctc[row]:
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
    events = {"event_id": np.arange(1, len(frames) + 1, dtype=np.int64), "frame": frames}
    for name, values in features.items():
        events[name] = values
        if name == "y_px":
            events["x_um"] = features["x_px"] * pixel
            events["y_um"] = features["y_px"] * pixel
    is_ctc = joined([v[0] for v in verdicts], bool)
    events["is_ctc"] = is_ctc
    events["reject_reason"] = joined([v[1] for v in verdicts], object)
    signal = her2_signal(events)
    events["her2_signal"] = signal
    reference = leukocyte_reference(signal, _reference_leukocytes(events, gate_params))
    events["her2_signal_referenced"] = signal - (np.nan if reference.median is None
                                                 else reference.median)
    if profile.reference == "leukocytes" and reference.median is None:
        raise InputError(f"only {reference.n} leukocytes found; the HER2 profile "
                         f"{profile.name!r} is referenced to the sample's leukocytes and needs "
                         f"at least {MIN_REFERENCE_LEUKOCYTES}", cartridge.path)
    binned = events[profile.signal_column]
    labels = np.array(HER2_BINS, dtype=object)[profile.score(np.nan_to_num(binned))]
    events["her2_score"] = np.where(is_ctc, labels, "")

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
        "input_checksums": cartridge.checksums(),
        "input_stats": cartridge.file_stats(),
    }
    return CartridgeResult(
        cartridge_id=cartridge.id,
        path=str(cartridge.path),
        columns=events,
        rule=chosen_rule,
        her2_profile=profile,
        parameters=scoring_parameters(profile, chosen_rule, thumbnails, segment_params,
                                      gate_params),
        info=info,
        thumbnails=thumbnail_array,
        thumbnail_events=thumbnail_ids,
    )


def her2_signal(features) -> np.ndarray:
    """Per-event HER2 signal: background-corrected FITC mean minus the local ring background.

    Where the ring is empty (an event surrounded by others) the frame background alone is used.
    """
    mean = np.asarray(features["her2_mean"], float)
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


def _reviewer_agreement(cartridge, events: Mapping[str, np.ndarray]) -> dict:
    """How ctcimg's CTCs match the reviewer-assigned events of the XML (within 8 µm)."""
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
    return {
        "reviewer_ctcs": len(assigned),
        "ctcimg_ctcs": int(np.count_nonzero(is_ctc)),
        "matched": matched,
        "match_distance_um": REVIEWER_MATCH_UM,
    }


def scoring_parameters(her2_profile: Her2Profile, rule: PositivityRule, thumbnails: bool,
                       segment_params=None, gate_params: GateParams | None = None) -> dict:
    """Every parameter that shapes a result, as recorded in summary.json (``parameters``).

    A resumed batch compares this with a stored summary to decide whether to rescore.
    """
    from dataclasses import asdict

    from ctcimg.segment import SegmentParams

    return {
        "segment": asdict(segment_params or SegmentParams()),
        "gate": (gate_params or GateParams()).to_dict(),
        "her2_profile": her2_profile.to_dict(),
        "rule": rule.to_dict(),
        "thumbnails": bool(thumbnails),
    }
