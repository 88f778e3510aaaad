"""The result folder of a scored cartridge: its files, their fields, writing and reading.

A result folder holds

- ``events.csv``: one row per candidate event, the columns of :func:`event_dtypes`;
- ``thumbnails.npz``: the arrays of :data:`THUMBNAIL_ARRAYS` (absent when scored without
  thumbnails);
- ``summary.json``: the keys of :data:`SUMMARY_KEYS`, written last, so a folder with a
  summary.json is complete.

:meth:`CartridgeResult.to_dir` writes a folder and :meth:`CartridgeResult.from_dir` reads
it back (writing what it read gives the same bytes). summary.json records
:data:`RESULT_SCHEMA`; a folder with another schema is refused with a message saying to
rescore. Everything that reads a result folder (the review report, a resumed batch)
reads it here.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from ctcimg import __version__
from ctcimg.channels import CHANNELS, HER2_BINS
from ctcimg.config import ScoringConfig
from ctcimg.errors import InputError
from ctcimg.gate import REJECT_REASONS
from ctcimg.io.tables import read_csv_table
from ctcimg.rules import RULES, PositivityRule, parse_rule

#: Version of the result folder's layout and fields; bumped when a file's fields change
#: meaning, so that a folder written under another layout is rescored, not misread.
RESULT_SCHEMA = 4

EVENTS_FILE = "events.csv"
SUMMARY_FILE = "summary.json"
THUMBNAILS_FILE = "thumbnails.npz"

#: Side of a thumbnail, pixels.
THUMBNAIL_PX = 48
#: 12-bit intensity (above the crop's background) shown as white in thumbnails, per channel.
THUMBNAIL_DISPLAY_MAX = {"DAPI": 1500.0, "CK": 1500.0, "CD45": 600.0, "HER2": 600.0}

#: Arrays of thumbnails.npz.
THUMBNAIL_ARRAYS: dict[str, str] = {
    "thumbnails": "uint8 (n, 4, 48, 48): crops centred on each event, channel order "
                  "`channels`; 0 is the crop's 10th percentile, 255 its display_max above it",
    "event_id": "int64 (n,): the event_id (events.csv) of each crop",
    "channels": "str (4,): channel order of the crops (DAPI, CK, CD45, HER2)",
    "display_max": "float64 (4,): 12-bit intensity above background shown as 255, per channel",
}

#: Keys of summary.json, in order, with their meaning.
SUMMARY_KEYS: dict[str, str] = {
    "cartridge_id": "the cartridge folder's name",
    "path": "the cartridge folder that was scored",
    "engine": "name and version of the engine that scored it",
    "result_schema": "version of this folder's layout (RESULT_SCHEMA)",
    "ctc_count": "events that passed the gate",
    "her2_counts": "CTCs per HER2 bin",
    "her2_percent": "percentage of CTCs per HER2 bin (null without CTCs)",
    "rule": "name of the rule of the headline call",
    "call": "the headline call: positive, negative or not_evaluable",
    "calls": "the call under every built-in rule (and the chosen one)",
    "n_events": "candidate events (rows of events.csv)",
    "reject_counts": "rejected events per reject reason",
    "n_frames": "frames scored",
    "frame_width_px": "frame width, pixels",
    "frame_height_px": "frame height, pixels",
    "pixel_size_um": "pixel size used, µm",
    "pixel_size_source": "where the pixel size came from (xml, ome, argument, default)",
    "layout": "the cartridge's folder layout",
    "page_channels": "channel of each stored TIFF page",
    "grid": "rows and columns of the frame grid (null when unknown)",
    "reviewer": "agreement with the reviewer events of the metadata",
    "her2_reference": "HER2 signal of the sample's leukocytes (n, median, spread)",
    "out_of_focus_frames": "frames more out of focus than the gate's defocus_blur_px2, each "
                           "with its blur (frame_blur_px2) and CTCs (segmented again where "
                           "the out-of-focus limits differ); worth a reviewer's look",
    "gate_model": "the learned gate model's sha256 and label source (null: threshold gate)",
    "input_checksums": "xxh3-128 of every input file",
    "input_stats": "size and modification time of every input file",
    "config": "the ScoringConfig it was scored with (ctcimg score --config takes this file)",
}
#: summary.json keys computed from the events and the config rather than stored.
_COMPUTED_KEYS = ("cartridge_id", "path", "engine", "result_schema", "ctc_count", "her2_counts",
                  "her2_percent", "rule", "call", "calls", "n_events", "reject_counts", "config")


def list_out_of_focus_frames(frames: list[dict]) -> str:
    """``out_of_focus_frames`` of a summary as text: ``"10 (1 CTC), 15 (2 CTCs)"``."""
    return ", ".join(f"{int(f['frame'])} ({int(f['ctcs'])} CTC{'s' * (int(f['ctcs']) != 1)})"
                     for f in frames)


@cache
def event_dtypes() -> dict[str, np.dtype]:
    """The columns of events.csv, in order, with their dtype (object: text)."""
    from ctcimg.segment import FEATURE_DTYPES

    float64 = np.dtype(np.float64)
    columns = {"event_id": np.dtype(np.int64), "frame": np.dtype(np.int32)}
    for name, dtype in FEATURE_DTYPES.items():
        columns[name] = dtype
        if name == "y_px":
            columns["x_um"] = columns["y_um"] = float64
    columns.update({
        "in_cartridge_edge": np.dtype(bool),
        "frame_blur_px2": float64,
        "ck_extent_um": float64,
        "is_ctc": np.dtype(bool),
        "reject_reason": np.dtype(object),
        "ctc_probability": float64,
        "her2_signal": float64,
        "her2_signal_referenced": float64,
        "her2_score": np.dtype(object),
        "reviewer_assigned": np.dtype(object),
    })
    return columns


@dataclass(frozen=True)
class CartridgeResult:
    """The outcome of scoring one cartridge.

    Attributes
    ----------
    cartridge_id : str
    path : str
        The cartridge folder that was scored.
    columns : dict of str to ndarray
        The events table as one array per column, in column order (:func:`event_dtypes`;
        the README describes every column); :attr:`events` is the same as a DataFrame.
    config : ScoringConfig
        Every parameter that shaped the result (segmentation, gate, profile, rule).
    info : dict
        Frames, frame size, pixel size, channels, input checksums, reviewer agreement
        (the summary.json keys from ``n_frames`` to ``input_stats``).
    thumbnails : ndarray or None
        uint8 (n, 4, 48, 48), channel order DAPI, CK, CD45, HER2, for ``thumbnail_events``.
    thumbnail_events : ndarray or None
        ``event_id`` of each thumbnail.
    """

    cartridge_id: str
    path: str
    columns: Mapping[str, np.ndarray] = field(repr=False)
    config: ScoringConfig
    info: dict
    thumbnails: np.ndarray | None = field(default=None, repr=False)
    thumbnail_events: np.ndarray | None = field(default=None, repr=False)

    @cached_property
    def events(self):
        """One row per candidate event (pandas DataFrame; built on first use)."""
        import pandas as pd

        return pd.DataFrame(dict(self.columns), copy=False)

    @property
    def rule(self) -> PositivityRule:
        """The rule chosen for the headline call; :meth:`call` takes any other."""
        return self.config.rule

    @property
    def her2_profile(self):
        """The HER2 profile the CTCs were binned with."""
        return self.config.her2_profile

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
        """Everything summary.json holds (:data:`SUMMARY_KEYS`)."""
        reasons = self.columns["reject_reason"][~self.columns["is_ctc"]]
        return {
            "cartridge_id": self.cartridge_id,
            "path": self.path,
            "engine": {"name": "ctcimg", "version": __version__},
            "result_schema": RESULT_SCHEMA,
            "ctc_count": self.ctc_count,
            "her2_counts": self.her2_counts,
            "her2_percent": self.her2_percent,
            "rule": self.rule.name,
            "call": self.call(),
            "calls": self.calls,
            "n_events": self.n_events,
            "reject_counts": {r: int(np.count_nonzero(reasons == r)) for r in REJECT_REASONS},
            **self.info,
            "config": self.config.to_dict(),
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
        blurred = self.info.get("out_of_focus_frames") or []
        if blurred:
            lines.append(f"focus     {len(blurred)} frame{'s' * (len(blurred) != 1)} out of "
                         f"focus: {list_out_of_focus_frames(blurred)}; review their events")
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
        from ctcimg.io.atomic import write_atomic, write_bytes_atomic, write_json_atomic

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
            write_bytes_atomic(out / EVENTS_FILE, _csv_bytes(self.columns))
        finally:
            if thumbnails_written is not None:
                thumbnails_written.result()
        write_json_atomic(out / SUMMARY_FILE, self.summary())  # strict JSON: NaN -> null
        return out

    @classmethod
    def from_dir(cls, result_dir: str | os.PathLike) -> CartridgeResult:
        """Read a result folder written by :meth:`to_dir` (``ctcimg score``).

        Raises
        ------
        InputError
            The folder or a file is missing or unreadable, lacks a column or key, or was
            written under another :data:`RESULT_SCHEMA` (rescore the cartridge).
        """
        folder = Path(result_dir)
        summary = read_summary(folder)
        try:
            config = ScoringConfig.from_dict(summary["config"])
        except InputError as err:
            raise InputError(f"config: {err.problem}", folder / SUMMARY_FILE) from None
        columns = read_events(folder)
        thumbnails = read_thumbnails(folder)
        if thumbnails is None and config.thumbnails:
            raise InputError(f"no {THUMBNAILS_FILE} although scored with thumbnails: an "
                             "incomplete result folder (rescore the cartridge)", folder)
        return cls(
            cartridge_id=str(summary["cartridge_id"]),
            path=str(summary["path"]),
            columns=columns,
            config=config,
            info={k: v for k, v in summary.items() if k not in _COMPUTED_KEYS},
            thumbnails=None if thumbnails is None else thumbnails[0],
            thumbnail_events=None if thumbnails is None else thumbnails[1],
        )


def _csv_text(columns: Mapping[str, np.ndarray]) -> str:
    """The CSV text of a table given as column arrays: byte for byte what
    ``pandas.DataFrame(columns).to_csv(index=False, float_format="%.6g")`` writes."""
    return _csv_bytes(columns).decode("utf-8")


def _csv_bytes(columns: Mapping[str, np.ndarray]) -> bytes:
    """:func:`_csv_text` as UTF-8 bytes, formatted by the kernels of
    :mod:`ctcimg.kernels.text` (pandas took 0.43 s, Python's own formatting 0.16 s for
    the 10^4 × 59 fields of a cartridge's events); through the csv module when a text
    field or a column name needs quoting."""
    from ctcimg.kernels import text as kernels

    header = ",".join(columns) + "\n"
    parts = [_column_fields(np.asarray(values)) for values in columns.values()]
    if _needs_quoting(columns) or any(part is None for part in parts):
        return _quoted_csv_text(columns).encode("utf-8")
    n = len(parts[0][1]) if parts else 0
    row_ends = np.zeros(n, dtype=np.int64)
    for _, lengths in parts:
        row_ends += lengths + 1  # the field and its separator
    total = int(row_ends.sum())
    row_ends[1:] = np.cumsum(row_ends)[:-1]
    row_ends[:1] = 0
    body = np.empty(total, dtype=np.uint8)
    for index, (fields, lengths) in enumerate(parts):
        kernels.place_fields(body, row_ends, fields, lengths,
                             ord("\n") if index == len(parts) - 1 else ord(","))
    return header.encode("utf-8") + body.tobytes()


def _column_fields(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Every field of one column as UTF-8 bytes: a (n, width) uint8 matrix and each
    field's length; None when a text field needs quoting."""
    from ctcimg.kernels import text as kernels

    n = len(values)
    if values.dtype.kind == "f":
        values = values.astype(np.float64, copy=False)
        fields = np.empty((n, kernels.GENERAL_WIDTH), dtype=np.uint8)
        lengths = np.empty(n, dtype=np.int64)
        unsure = np.empty(n, dtype=bool)
        kernels.format_general(np.ascontiguousarray(values), kernels.EXACT_POWERS, fields,
                               lengths, unsure)
        for row in np.flatnonzero(unsure).tolist():  # rounding too close to call: Python's
            field = f"{values[row]:.6g}".encode("ascii")
            fields[row, :len(field)] = np.frombuffer(field, dtype=np.uint8)
            lengths[row] = len(field)
        return fields, lengths
    if values.dtype.kind in "iu" and (values.dtype.kind == "i" or values.dtype.itemsize < 8):
        fields = np.empty((n, kernels.INTEGER_WIDTH), dtype=np.uint8)
        lengths = np.empty(n, dtype=np.int64)
        kernels.format_integers(np.ascontiguousarray(values, dtype=np.int64), fields, lengths)
        return fields, lengths
    if values.dtype.kind == "b":
        texts, codes = ["False", "True"], values.astype(np.intp)
    else:  # text (None is an empty field, as csv writes it), or anything else by str()
        items = values.tolist()
        distinct = list(dict.fromkeys(items))
        if values.dtype.kind in "OU" and all(type(v) is str for v in distinct):
            texts = distinct  # each distinct value once: 10^4 str() calls avoided
        else:
            items = ["" if v is None else str(v) for v in items] \
                if values.dtype.kind in "OUS" else list(map(str, items))
            texts = list(dict.fromkeys(items))
        code = {text: index for index, text in enumerate(texts)}
        codes = np.fromiter(map(code.__getitem__, items), dtype=np.intp, count=n)
        if _needs_quoting(texts):
            return None
    encoded = [t.encode("utf-8") for t in texts]
    matrix = np.zeros((len(encoded), max([1, *map(len, encoded)])), dtype=np.uint8)
    for row, field in enumerate(encoded):
        matrix[row, :len(field)] = np.frombuffer(field, dtype=np.uint8)
    return matrix[codes], np.array([len(f) for f in encoded], dtype=np.int64)[codes]


def _quoted_csv_text(columns: Mapping[str, np.ndarray]) -> str:
    """:func:`_csv_text` through the csv module (which quotes), for tables that need it."""
    import csv
    import io

    texts = []
    for values in columns.values():
        values = np.asarray(values)
        if values.dtype.kind == "f":
            texts.append(["" if v != v else f"{v:.6g}" for v in values.tolist()])
        elif values.dtype.kind in "OUS":  # text: None is an empty field, as csv writes it
            texts.append(["" if v is None else str(v) for v in values.tolist()])
        else:
            texts.append(list(map(str, values.tolist())))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*texts, strict=True))
    return text.getvalue()


def _needs_quoting(fields) -> bool:
    """Whether the csv module would quote any of ``fields`` (QUOTE_MINIMAL)."""
    return any(char in field for field in fields for char in ',"\r\n')


def read_summary(result_dir: str | os.PathLike) -> dict:
    """summary.json of a result folder, checked: complete, this :data:`RESULT_SCHEMA`, and
    holding every key of :data:`SUMMARY_KEYS`.

    Raises
    ------
    InputError
        Naming the folder or file and the problem.
    """
    folder = Path(result_dir)
    if not folder.is_dir():
        raise InputError("no such result folder" if not folder.exists() else
                         "not a folder; expected a result folder from 'ctcimg score'", folder)
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise InputError(f"no {SUMMARY_FILE}: not a (complete) result folder from "
                         "'ctcimg score'", folder)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read ({err})", path) from None
    if not isinstance(summary, dict) or "cartridge_id" not in summary:
        raise InputError("not a ctcimg summary (no cartridge_id)", path)
    schema = summary.get("result_schema")
    if schema != RESULT_SCHEMA:
        engine = summary.get("engine")
        version = engine.get("version", "?") if isinstance(engine, dict) else "?"
        written = (f"result schema {schema}" if schema is not None
                   else "no result schema (before ctcimg recorded one)")
        raise InputError(f"written by ctcimg {version} with {written}; ctcimg {__version__} "
                         f"reads result schema {RESULT_SCHEMA}: rescore the cartridge", path)
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise InputError(f"missing key(s) {', '.join(missing)}", path)
    return summary


def read_events(result_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """events.csv of a result folder as column arrays with the dtypes of
    :func:`event_dtypes` (text columns as object arrays of str; extra columns as pandas
    reads them)."""

    folder = Path(result_dir)
    path = folder / EVENTS_FILE
    if not path.is_file():
        raise InputError(f"no {EVENTS_FILE} beside {SUMMARY_FILE}", folder)
    dtypes = event_dtypes()
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            header = next(csv.reader(stream), [])
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read ({err})", path) from None
    missing = [name for name in dtypes if name not in header]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", path)
    floats = [name for name, dtype in dtypes.items() if dtype.kind == "f"]
    table = read_csv_table(path, dtype={n: (str if d.kind == "O" else d)
                                        for n, d in dtypes.items()},
                           keep_default_na=False, na_values={n: [""] for n in floats})
    return {name: (table[name].to_numpy(dtype=object) if dtypes.get(name) == np.dtype(object)
                   else table[name].to_numpy())
            for name in table.columns}


def read_thumbnails(result_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """(thumbnails, event ids) from thumbnails.npz, or None when the folder has none.

    Raises InputError when the file is unreadable or its arrays are not those that
    :meth:`CartridgeResult.to_dir` writes.
    """
    path = Path(result_dir) / THUMBNAILS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: np.asarray(npz[name]) for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"cannot read thumbnails ({err})", path) from None
    if sorted(arrays) != sorted(THUMBNAIL_ARRAYS):
        raise InputError(f"arrays {sorted(arrays)}, expected {list(THUMBNAIL_ARRAYS)}", path)
    thumbnails, event_ids = arrays["thumbnails"], arrays["event_id"]
    channels = [str(c) for c in arrays["channels"]]
    display_max = arrays["display_max"].tolist()
    if (thumbnails.ndim != 4 or thumbnails.dtype != np.uint8 or event_ids.dtype != np.int64
            or len(thumbnails) != len(event_ids)
            or thumbnails.shape[1:] != (len(CHANNELS), THUMBNAIL_PX, THUMBNAIL_PX)):
        raise InputError(f"unexpected thumbnail array {thumbnails.dtype} {thumbnails.shape} "
                         f"for {len(event_ids)} event ids ({event_ids.dtype})", path)
    if channels != list(CHANNELS):
        raise InputError(f"thumbnail channels {channels}, expected {list(CHANNELS)}", path)
    if display_max != [THUMBNAIL_DISPLAY_MAX[c] for c in CHANNELS]:
        raise InputError(f"thumbnails scaled to display_max {display_max}, expected "
                         f"{[THUMBNAIL_DISPLAY_MAX[c] for c in CHANNELS]}", path)
    return thumbnails, event_ids
