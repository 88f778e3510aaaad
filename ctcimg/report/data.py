"""Load a scored result folder (summary.json, events.csv, thumbnails.npz) for the report.

Everything the review report shows comes from these three files; the cartridge itself is
never read again. Problems are raised as :class:`~ctcimg.errors.InputError` naming the
file, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctcimg.channels import CHANNELS
from ctcimg.errors import InputError
from ctcimg.score import EVENTS_FILE, SUMMARY_FILE, THUMBNAILS_FILE

#: events.csv columns the report needs.
REQUIRED_COLUMNS = ("event_id", "frame", "x_px", "y_px", "is_ctc", "reject_reason",
                    "her2_signal", "her2_score")


@dataclass(frozen=True)
class ScoredResult:
    """A result folder as the report sees it.

    Attributes
    ----------
    folder : Path
    summary : dict
        summary.json as written by :meth:`ctcimg.score.CartridgeResult.to_dir`.
    events : pandas.DataFrame
        events.csv; ``is_ctc`` as bool, ``reject_reason`` and ``her2_score`` as str.
    thumbnails : ndarray
        uint8 (n, 4, h, w) in the channel order of ``channels``.
    thumbnail_events : ndarray
        ``event_id`` of each thumbnail.
    channels : tuple of str
    events_digest : str
        Short SHA-1 of events.csv: ties saved review state to exactly this result.
    """

    folder: Path
    summary: dict
    events: object
    thumbnails: np.ndarray = field(repr=False)
    thumbnail_events: np.ndarray = field(repr=False)
    channels: tuple[str, ...]
    events_digest: str

    @property
    def cartridge_id(self) -> str:
        return str(self.summary.get("cartridge_id", self.folder.name))

    @property
    def pixel_size_um(self) -> float:
        return float(self.summary.get("pixel_size_um") or 0.64)


def load_result(result_dir: str | os.PathLike) -> ScoredResult:
    """Read and check a result folder written by ``ctcimg score``.

    Parameters
    ----------
    result_dir
        Folder holding summary.json, events.csv and thumbnails.npz.

    Returns
    -------
    ScoredResult

    Raises
    ------
    InputError
        The folder or one of the files is missing or unreadable, or thumbnails were not cut
        (scored with ``--no-thumbnails``).
    """
    import pandas as pd

    folder = Path(result_dir)
    if not folder.is_dir():
        raise InputError("no such result folder" if not folder.exists() else
                         "not a folder; expected a result folder from 'ctcimg score'", folder)
    summary_path = folder / SUMMARY_FILE
    if not summary_path.is_file():
        raise InputError(f"no {SUMMARY_FILE}: not a (complete) result folder from "
                         "'ctcimg score'", folder)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read ({err})", summary_path) from None
    if not isinstance(summary, dict) or "cartridge_id" not in summary:
        raise InputError("not a ctcimg summary (no cartridge_id)", summary_path)

    events_path = folder / EVENTS_FILE
    if not events_path.is_file():
        raise InputError(f"no {EVENTS_FILE} beside {SUMMARY_FILE}", folder)
    raw = events_path.read_bytes()
    try:
        events = pd.read_csv(events_path, dtype={"reject_reason": str, "her2_score": str},
                             keep_default_na=False,
                             na_values={"her2_signal": ["", "nan"],
                                        "ctc_probability": ["", "nan"]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV ({str(err).strip().splitlines()[0]})",
                         events_path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", events_path)
    events["is_ctc"] = events["is_ctc"].astype(str).str.strip().str.lower().isin(["true", "1"])

    thumbs_path = folder / THUMBNAILS_FILE
    if not thumbs_path.is_file():
        how = ("scored with --no-thumbnails; " if summary.get("parameters", {})
               .get("thumbnails") is False else "")
        raise InputError(f"no {THUMBNAILS_FILE} ({how}rescore without --no-thumbnails to "
                         "get a review report)", folder)
    try:
        with np.load(thumbs_path, allow_pickle=False) as npz:
            thumbnails = np.asarray(npz["thumbnails"])
            thumbnail_events = np.asarray(npz["event_id"], dtype=np.int64)
            channels = tuple(str(c) for c in npz["channels"]) if "channels" in npz \
                else CHANNELS
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"cannot read thumbnails ({err})", thumbs_path) from None
    if (thumbnails.ndim != 4 or thumbnails.dtype != np.uint8
            or len(thumbnails) != len(thumbnail_events)
            or thumbnails.shape[1] != len(channels)):
        raise InputError(f"unexpected thumbnail array {thumbnails.dtype} {thumbnails.shape} "
                         f"for {len(thumbnail_events)} event ids", thumbs_path)
    if set(channels) != set(CHANNELS):
        raise InputError(f"thumbnail channels {list(channels)}, expected {list(CHANNELS)}",
                         thumbs_path)
    return ScoredResult(folder=folder, summary=summary, events=events, thumbnails=thumbnails,
                        thumbnail_events=thumbnail_events, channels=channels,
                        events_digest=hashlib.sha1(raw).hexdigest()[:12])
