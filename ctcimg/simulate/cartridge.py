"""Writing one simulated cartridge: frame TIFFs, the export's metadata, truth and previews.

The frames are rendered one at a time (:func:`ctcimg.simulate.render.render_frame`) and
written as CellTracks TIFFs (:func:`ctcimg.io.tiff.write_celltracks_frame`); the metadata
goes through the writer of the chosen layout, which sits beside that layout's reader:
:func:`ctcimg.io.celltracks.write_celltracks_metadata` (the XML) or
:func:`ctcimg.io.celltracks_xp.write_xp_metadata` (the ``.dlm`` files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ctcimg.channels import (
    CELLSEARCH_PAGE_ORDER,
    CHANNELS,
    FRAME_HEIGHT,
    FRAME_WIDTH,
)
from ctcimg.io.celltracks_xp import XP_PAGE_ORDER
from ctcimg.io.metadata import ReviewerEvent
from ctcimg.simulate.confounders import _confounder_plan, sample_conditions
from ctcimg.simulate.plan import _plan
from ctcimg.simulate.preview import _collect_crops, _write_previews
from ctcimg.simulate.render import render_frame
from ctcimg.simulate.reviewer import PRESENTED_KINDS, REVIEWERS, _reviewer_confirms
from ctcimg.simulate.spec import CartridgeSpec, _make_spec
from ctcimg.simulate.truth import SimulatedObject, _write_truth

_PAGE_INDEX = tuple(CHANNELS.index(name) for name in CELLSEARCH_PAGE_ORDER)
_XP_PAGE_INDEX = tuple(CHANNELS.index(name) for name in XP_PAGE_ORDER)


@dataclass(frozen=True)
class SimulatedCartridge:
    """What :func:`simulate_cartridge` wrote.

    Attributes
    ----------
    path
        The cartridge folder (``out_dir/<id>``).
    truth
        The truth folder (``out_dir/truth/<id>``).
    id
        Cartridge id.
    n_frames
        Frames written.
    counts
        Objects written per kind, plus ``her2_0`` … ``her2_3`` CTC counts per level.
    spec
        The spec; ``render_frame(spec, n)`` regenerates frame ``n`` exactly.
    sample
        With confounders: the per-sample draws ``background_scale`` and
        ``her2_nonspecific`` (12-bit units); empty without.
    """

    path: Path
    truth: Path
    id: str
    n_frames: int
    counts: dict[str, int] = field(default_factory=dict)
    spec: CartridgeSpec | None = None
    sample: dict[str, float] = field(default_factory=dict)


def simulate_cartridge(
    out_dir: str | os.PathLike,
    cartridge_id: str | None = None,
    *,
    n_frames: int = 175,
    n_ctc: int = 20,
    her2_mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    seed: int = 0,
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    bits: int = 16,
    encoding: str = "stretch",
    compression: str | None = None,
    leukocytes_per_frame: int | tuple[int, int] = (30, 80),
    decoys: bool | float = True,
    preview: bool = False,
    confounders: float = 0.0,
    reviewer: str = "default",
    layout: str = "cellsearch",
) -> SimulatedCartridge:
    """Write one synthetic CellSearch cartridge and its ground truth.

    Writes ``out_dir/<id>/<id before first dot>.xml``, one 4-page TIFF per frame in
    ``out_dir/<id>/processed/<id>_<NNN>.tif`` (pages DAPI, FITC/HER2, PE/CK, APC/CD45),
    and the truth in ``out_dir/truth/<id>/`` (``objects.csv``, ``cartridge.json`` and,
    with ``preview``, ``preview_frame.png`` and ``preview_cells.png``). With
    ``layout="celltracks_xp"`` the cartridge is a CellTracks XP export instead: the six
    ``.dlm`` files in ``out_dir/<id>/`` and the TIFFs in ``out_dir/<id>/images/`` with pages
    FITC, APC, PE, DAPI (:mod:`ctcimg.io.celltracks_xp`); pixels and truth are the same.

    Parameters
    ----------
    out_dir
        Folder receiving the cartridge folder and ``truth/``.
    cartridge_id
        CellSearch-style id; default ``SIM<seed:06d>.1.1``.
    n_frames
        Frames (175 = the 5 × 35 CellSearch grid; other counts get a near-square grid).
    n_ctc
        Exact number of true CTCs.
    her2_mix
        Fractions of CTCs at HER2 0, 1+, 2+, 3+ (normalised; split by largest remainder).
    seed
        Random seed; the same seed gives byte-identical files.
    frame_shape
        (height, width) of a frame in pixels.
    bits, encoding, compression
        Passed to :func:`ctcimg.io.tiff.write_celltracks_frame`.
    leukocytes_per_frame
        Leukocytes per full-size frame, an int or an inclusive (low, high) range;
        scaled down for smaller frames.
    decoys
        Add CK debris, CK+CD45+ doubles, specks, bare nuclei and nucleus-beside blobs
        (``True``); a number multiplies their rates :data:`~ctcimg.simulate.DECOY_RATE`;
        ``False`` = none.
    preview
        Also write preview PNGs to the truth folder.
    confounders
        Rate multiplier of the confounder model (:mod:`ctcimg.simulate.confounders`):
        0 = none (the default, byte-identical to the simulator without it), 1 = "messy",
        2 = harder.
    reviewer
        The lab's reviewer definition for the XML's events (a key of
        :data:`~ctcimg.simulate.REVIEWERS`); other than "default", the XML lists every
        presented candidate
        (:data:`~ctcimg.simulate.PRESENTED_KINDS`) with ``assigned`` by that definition.
    layout
        ``"cellsearch"`` (the CellTracks XML layout, default) or ``"celltracks_xp"``. An XP
        export records no grid: its reader takes it from the frame count, so a count outside
        :data:`ctcimg.channels.GRID_BY_FRAME_COUNT` is read with an unknown grid, and 140
        frames run serpentine from the bottom row (the edge bands are placed accordingly).

    Returns
    -------
    SimulatedCartridge
    """
    from ctcimg.io import celltracks_xp
    from ctcimg.io.celltracks import write_celltracks_metadata
    from ctcimg.io.tiff import write_celltracks_frame

    spec = _make_spec(cartridge_id, n_frames, n_ctc, her2_mix, seed, frame_shape,
                      leukocytes_per_frame, decoys, confounders, layout)
    if reviewer not in REVIEWERS:
        raise ValueError(f"unknown reviewer {reviewer!r}; known: {', '.join(REVIEWERS)}")
    xp = layout == "celltracks_xp"
    out_dir = Path(out_dir)
    cart = out_dir / spec.cartridge_id
    truth = out_dir / "truth" / spec.cartridge_id
    images = cart / (celltracks_xp.IMAGE_FOLDER if xp else "processed")
    images.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    plan = _plan(spec)
    # with confounders, the frame with the most CTCs among leukocytes, else the most CTCs
    contexts = _confounder_plan(spec).contexts if spec.confounders > 0 else None
    preview_frame = max(range(1, spec.n_frames + 1), key=lambda f: (
        sum(bool(c) for c in contexts[f - 1]) if contexts else 0,
        sum(len(g) for g in plan.ctc_levels[f - 1]), -f))
    crops: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: [], 3: []}
    frame_pixels = frame_objects = None
    all_objects: list[SimulatedObject] = []
    digits = max(3, len(str(spec.n_frames)))
    for f in range(1, spec.n_frames + 1):
        pixels, objects = render_frame(spec, f)
        write_celltracks_frame(
            images / f"{spec.cartridge_id}_{f:0{digits}d}.tif",
            pixels[list(_XP_PAGE_INDEX if xp else _PAGE_INDEX)], bits=bits, encoding=encoding,
            compression=compression,
        )
        all_objects.extend(objects)
        if preview:
            _collect_crops(pixels, objects, crops)
            if f == preview_frame:
                frame_pixels, frame_objects = pixels, objects
    if reviewer == "default":
        presented = [o for o in all_objects if o.presented]
    else:
        all_objects = [replace(o, reviewer_assigned=_reviewer_confirms(reviewer, o))
                       for o in all_objects]
        presented = [o for o in all_objects if o.presented
                     or (o.kind in PRESENTED_KINDS and o.context != "stuck")]
    counts = _write_truth(truth, spec, all_objects, bits, encoding, compression, reviewer)
    events = [ReviewerEvent(i + 1, o.frame, (o.bbox[0] + o.bbox[2]) / 2,
                            (o.bbox[1] + o.bbox[3]) / 2, o.bbox, o.reviewer_assigned, 1)
              for i, o in enumerate(presented)]
    if xp:
        celltracks_xp.write_xp_metadata(cart, spec.cartridge_id, spec.n_frames, events)
    else:
        write_celltracks_metadata(cart, spec.n_frames, spec.grid, spec.frame_shape,
                                  spec.pixel_size_um, events)
    if preview and frame_pixels is not None:
        _write_previews(truth, spec, preview_frame, frame_pixels, frame_objects, crops)
    return SimulatedCartridge(cart, truth, spec.cartridge_id, spec.n_frames, counts, spec,
                              sample_conditions(spec))
