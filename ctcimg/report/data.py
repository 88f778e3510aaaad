"""Load a scored result folder (summary.json, events.csv, thumbnails.npz) for the report.

Everything the review report shows comes from these three files, read by
:meth:`ctcimg.results.CartridgeResult.from_dir`; the cartridge itself is never read again.
Problems are raised as :class:`~ctcimg.errors.InputError` naming the file, before
anything is written.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctcimg.channels import CHANNELS, PIXEL_SIZE_UM
from ctcimg.errors import InputError
from ctcimg.results import EVENTS_FILE, THUMBNAILS_FILE, CartridgeResult


@dataclass(frozen=True)
class ScoredResult:
    """A result folder as the report sees it.

    Attributes
    ----------
    folder : Path
    summary : dict
        summary.json as written by :meth:`ctcimg.results.CartridgeResult.to_dir`.
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
        return float(self.summary.get("pixel_size_um") or PIXEL_SIZE_UM)


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
        The folder or one of the files is missing or unreadable, was written under another
        result schema, or thumbnails were not cut (scored with ``--no-thumbnails``).
    """
    folder = Path(result_dir)
    result = CartridgeResult.from_dir(folder)
    if result.thumbnails is None:
        raise InputError(f"no {THUMBNAILS_FILE} (scored with --no-thumbnails; rescore without "
                         "--no-thumbnails to get a review report)", folder)
    digest = hashlib.sha1((folder / EVENTS_FILE).read_bytes()).hexdigest()[:12]
    return ScoredResult(folder=folder, summary=result.summary(), events=result.events,
                        thumbnails=result.thumbnails, thumbnail_events=result.thumbnail_events,
                        channels=CHANNELS, events_digest=digest)
